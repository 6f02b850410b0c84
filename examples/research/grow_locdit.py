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


def save_grown(pipe: DiTARPipeline, grown: DiTARForConditionalGeneration, base: str, out: Path) -> None:
    """Save `pipe` with `grown` as its model, keeping the base folder's matmul setting (the check ran in float32)."""
    pipe.register_modules(model=grown)
    pipe.register_to_config(matmul_dtype=DiTARPipeline.load_config(base).get("matmul_dtype"))
    pipe.save_pretrained(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="a pipeline folder")
    parser.add_argument("out", type=Path, help="where to save the grown pipeline")
    parser.add_argument("--layers", type=int, required=True, help="LocDiT blocks of the grown model")
    args = parser.parse_args(argv)
    # float32 products for the check: the pipeline's own setting (kept in the saved folder) may multiply in bfloat16
    pipe = DiTARPipeline.from_pretrained(args.base, candidate_locdit=False, matmul_dtype="float32")
    grown = grow_locdit(pipe.model, args.layers)
    difference = check_same_prediction(pipe.model, grown)
    if difference > 1e-5:
        raise SystemExit(f"the grown LocDiT predicts differently (max difference {difference:.2e}); nothing saved")
    before = sum(p.numel() for p in pipe.model.locdit.parameters())
    after = sum(p.numel() for p in grown.locdit.parameters())
    save_grown(pipe, grown, args.base, args.out)
    print(
        f"wrote {args.out}: LocDiT {pipe.model.config.locdit_num_layers} blocks, {before / 1e6:.2f}M -> "
        f"{after / 1e6:.2f}M parameters; same prediction (max difference {difference:.1e})"
    )


if __name__ == "__main__":
    main()
