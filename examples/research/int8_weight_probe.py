#!/usr/bin/env python
"""Would int8 weights (bfloat16 activations) make the default's per-patch products cheaper than bfloat16 ones?

    python examples/research/int8_weight_probe.py --rounds 7 [--threads 2]

The backbone's one-token steps are bound by memory traffic (every weight is read once per patch), so a weight stored in
8 bits reads half the bytes of bfloat16. torch's `_weight_int8pack_mm` multiplies bfloat16 activations by int8 weights
with one float scale per output channel (weight-only quantisation: the activations are not quantised, unlike
`torch.ao`'s dynamic int8, which rounds them too). This probe swaps the `forward` of the chosen linears of the embedded
default for that product, leaving everything else as the shipped setting computes it (bfloat16 matmuls, float32 rest),
and reports, interleaved with the unchanged default as in `first_audio_ab.py`:

- the time to the first streamed chunk and the RTF of 10 s of speech (forced length, best of 4 as shipped);
- how far one call's features move from float32 products, next to how far bfloat16 products move them (same seed).

A probe for deciding what to build: the quality of a variant is only known from the evaluation sets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_lib.systems import DiTARSystem  # noqa: E402
from first_audio_ab import interleaved_timings  # noqa: E402

from modeling_ditar import DiTARPipeline  # noqa: E402
from modeling_ditar.low_precision import LowPrecisionLinear  # noqa: E402

PARTS = {
    "backbone": ("language_model",),
    "all": ("language_model", "aggregation_encoder", "locdit", "candidate_locdit"),
}


def int8_forward(linear: LowPrecisionLinear):
    """A forward for `linear` that multiplies bfloat16 activations by its weight rounded to int8 per output channel."""
    weight = linear.weight.detach().float()
    scales = weight.abs().amax(dim=1).clamp_min(1e-8) / 127.0
    packed = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
    scales = scales.to(torch.bfloat16)
    bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)

    def forward(input: torch.Tensor) -> torch.Tensor:
        rows = input.reshape(-1, input.shape[-1]).to(torch.bfloat16)
        out = torch._weight_int8pack_mm(rows, packed, scales)
        if bias is not None:
            out = out + bias
        return out.reshape(*input.shape[:-1], out.shape[-1]).to(input.dtype)

    return forward


def load(part: str | None, matmul_dtype: str = "bfloat16") -> DiTARPipeline:
    pipe = DiTARPipeline.from_pretrained()
    pipe.model.set_matmul_dtype(matmul_dtype)
    pipe.set_progress_bar_config(disable=True)
    if part:
        for prefix in PARTS[part]:
            module = getattr(pipe.model, prefix, None)
            for linear in [] if module is None else module.modules():
                if isinstance(linear, LowPrecisionLinear):
                    linear.forward = int8_forward(linear)  # the fast paths call `linear.forward`
    return pipe


def forced(pipe: DiTARPipeline) -> DiTARSystem:
    with torch.no_grad():  # the benchmark's forced length: the same speech from every variant
        pipe.model.stop_head.weight.zero_()
        pipe.model.stop_head.bias.fill_(-30.0)
    return DiTARSystem(pipe, source="default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    reference = DiTARPipeline.from_pretrained()
    reference.model.set_matmul_dtype("float32")
    reference.set_progress_bar_config(disable=True)

    def features(pipe: DiTARPipeline) -> torch.Tensor:
        out = pipe(text, output_type="features", generator=torch.manual_seed(0), num_candidates=1, max_new_patches=40)
        return torch.as_tensor(out.audios[0][: out.audio_lengths[0]])

    base = features(reference)
    variants = {"bfloat16 matmuls (shipped)": None, "int8 backbone": "backbone", "int8 everywhere": "all"}
    pipes = {name: load(part) for name, part in variants.items()}
    print("features of one call (seed 0, one candidate, forced to 40 patches' cap), against float32 products:")
    for name, pipe in pipes.items():
        moved = features(pipe)
        frames = min(len(moved), len(base))
        error = (moved[:frames] - base[:frames]).abs().mean().item()
        print(f"  {name}: mean |difference| {error:.4f} over {frames} frames (lengths {len(moved)} / {len(base)})")

    names = list(pipes)
    first, whole = interleaved_timings([forced(pipes[name]) for name in names], args.rounds, args.seconds)
    print(f"{args.rounds} rounds, {args.seconds:g} s of speech, {args.threads} thread(s), best of 4 as shipped:")
    for i, name in enumerate(names):
        print(
            f"  {name}: first audio best {min(first[i]) * 1000:.0f} ms, median "
            f"{statistics.median(first[i]) * 1000:.0f} ms; RTF best {min(whole[i]):.3f}, median "
            f"{statistics.median(whole[i]):.3f}"
        )


if __name__ == "__main__":
    main()
