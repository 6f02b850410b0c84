#!/usr/bin/env python
"""Deepen a pipeline's LocDiT without changing what it computes: new blocks appended before the final norm, their
attention and feed-forward output projections zeroed, so each starts as the identity of the residual stream.

    python examples/research/grow_locdit.py modeling_ditar/default /tmp/default-locdit5 --layers 5

A capacity test for continued training (`init_from: /tmp/default-locdit5`): the grown LocDiT predicts exactly what
the original does (checked on random inputs before saving), then learns with the extra blocks. The candidate LocDiT (a
distilled student of the old shape) is left out; the new model samples its candidates with its own LocDiT, as every
model trained from the default does.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from modeling_ditar import DiTARForConditionalGeneration, DiTARPipeline


def grow_locdit(model: DiTARForConditionalGeneration, layers: int) -> DiTARForConditionalGeneration:
    """A copy of `model` (without a candidate LocDiT) whose LocDiT has `layers` blocks; the new ones add zero."""
    old_layers = model.config.locdit_num_layers
    if layers <= old_layers:
        raise SystemExit(f"--layers {layers}: the LocDiT has {old_layers} blocks already; give more")
    config = model.config.to_dict()
    config.update(locdit_num_layers=layers, candidate_locdit=False)
    config = type(model.config).from_dict(config)
    torch.manual_seed(0)
    grown = DiTARForConditionalGeneration(config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("candidate_locdit.")}
    missing, unexpected = grown.load_state_dict(state, strict=False)
    new_prefixes = tuple(f"locdit.transformer.blocks.{i}." for i in range(old_layers, layers))
    if unexpected or any(not name.startswith(new_prefixes) for name in missing):
        raise SystemExit(f"shapes differ beyond the new blocks: missing {missing[:4]}, unexpected {unexpected[:4]}")
    with torch.no_grad():
        for block in grown.locdit.transformer.blocks[old_layers:]:
            for projection in (block.attn1.to_out[0], block.ff.net[2]):
                projection.weight.zero_()
                projection.bias.zero_()
    grown.generation_config = copy.deepcopy(model.generation_config)
    grown.generation_config.candidate_num_inference_steps = None  # no candidate LocDiT any more
    return grown.to(model.dtype).eval()


def check_same_prediction(old: DiTARForConditionalGeneration, new: DiTARForConditionalGeneration) -> float:
    """Largest difference of the two LocDiTs' velocities on random inputs (0 for an exact identity growth)."""
    c = old.config
    generator = torch.Generator().manual_seed(0)
    items, frames = 8, c.patch_size
    noisy = torch.randn(items, frames, c.feature_dim, generator=generator)
    history = torch.randn(items, c.num_history_patches * frames, c.feature_dim, generator=generator)
    cond = torch.randn(items, old.language_model.config.hidden_size, generator=generator)
    t = torch.rand(items, generator=generator)
    with torch.no_grad():
        a = old.locdit(noisy.to(old.dtype), t, cond.to(old.dtype), history.to(old.dtype))
        b = new.locdit(noisy.to(new.dtype), t, cond.to(new.dtype), history.to(new.dtype))
    return float((a.float() - b.float()).abs().max())


def grow_and_save(argv, description: str, part: str, grow, check, module: str, **load_kwargs) -> None:
    """The command line of a growth script: load BASE (float32 products for the check; the saved folder keeps the base's
    own matmul setting), grow its model to --layers with `grow(model, layers)`, refuse to save unless `check(old,
    new)` finds the same prediction, save to OUT and say what changed in the submodule `module`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="a pipeline folder")
    parser.add_argument("out", type=Path, help="where to save the grown pipeline")
    parser.add_argument("--layers", type=int, required=True, help=f"{part} layers of the grown model")
    args = parser.parse_args(argv)
    pipe = DiTARPipeline.from_pretrained(args.base, matmul_dtype="float32", **load_kwargs)
    grown = grow(pipe.model, args.layers)
    difference = check(pipe.model, grown)
    if difference > 1e-5:
        raise SystemExit(f"the grown {part} predicts differently (max difference {difference:.2e}); nothing saved")
    before = sum(p.numel() for p in pipe.model.get_submodule(module).parameters())
    after = sum(p.numel() for p in grown.get_submodule(module).parameters())
    pipe.register_modules(model=grown)
    pipe.register_to_config(matmul_dtype=DiTARPipeline.load_config(args.base).get("matmul_dtype"))
    pipe.save_pretrained(args.out)
    print(
        f"wrote {args.out}: {part} {args.layers} layers, {before / 1e6:.2f}M -> {after / 1e6:.2f}M parameters; "
        f"same prediction (max difference {difference:.1e})"
    )


def main(argv=None) -> None:
    grow_and_save(argv, __doc__, "LocDiT", grow_locdit, check_same_prediction, "locdit", candidate_locdit=False)


if __name__ == "__main__":
    main()
