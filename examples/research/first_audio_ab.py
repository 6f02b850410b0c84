#!/usr/bin/env python
"""Interleaved timing of two or more pipeline folders: time to the first streamed chunk and the generation's RTF.

    python examples/research/first_audio_ab.py modeling_ditar/default outputs/ditar-candidate-locdit --rounds 7
    python examples/research/first_audio_ab.py A B --locdit-dtype bfloat16   # every LocDiT of every pipeline in bf16
    python examples/research/first_audio_ab.py modeling_ditar/default@float32 modeling_ditar/default@bfloat16
                                          # FOLDER@DTYPE: that pipeline multiplies in DTYPE (`set_matmul_dtype`)

Each pipeline runs the benchmark's DiTAR system (examples/benchmark_lib: 10 s of text, a 3 s voice prompt, the stop
head silenced and the length forced, so every pipeline makes the same amount of speech; its own candidate policy). The
pipelines take turns in one process, in an order that rotates every round, so the slow drift of a shared machine falls
on all of them alike. Prints, per pipeline, the best and median first audio and RTF over the rounds (round 0 warms up
and is not counted). The RTF times the model's generation of the speech's features from inputs encoded beforehand,
without the vocoder (the benchmark's "RTF"; its "e2e RTF" adds the vocoder).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmark_lib.systems import DiTARSystem  # noqa: E402

from modeling_ditar import DiTARPipeline  # noqa: E402


def load(spec: str, locdit_dtype: str | None) -> DiTARSystem:
    folder, _, matmul_dtype = spec.partition("@")
    pipe = DiTARPipeline.from_pretrained(folder)
    if matmul_dtype:
        pipe.model.set_matmul_dtype(matmul_dtype)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():  # the benchmark's forced length: the same speech from every pipeline
        pipe.model.stop_head.weight.zero_()
        pipe.model.stop_head.bias.fill_(-30.0)
    if locdit_dtype:
        pipe.model.set_locdit_dtype(getattr(torch, locdit_dtype))
    return DiTARSystem(pipe, source=spec)


def interleaved_timings(systems: list, rounds: int, seconds: float) -> tuple[list[list[float]], list[list[float]]]:
    """Per system, the seconds to the first streamed chunk and the RTF of generating `seconds` of speech, over
    `rounds` rounds after a warm-up round; the systems take turns in an order that rotates every round."""
    first: list[list[float]] = [[] for _ in systems]
    whole: list[list[float]] = [[] for _ in systems]
    for round_index in range(rounds + 1):
        shift = round_index % len(systems)
        for i in [*range(shift, len(systems)), *range(shift)]:
            system = systems[i]
            start = time.perf_counter()
            stream = system.stream(seconds)
            next(stream)
            elapsed = time.perf_counter() - start
            stream.close()
            start = time.perf_counter()
            system.generate(seconds, 1, system.units(seconds))
            total = time.perf_counter() - start
            if round_index:
                first[i].append(elapsed)
                whole[i].append(total / seconds)
    return first, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "pipelines",
        nargs="+",
        help="pipeline folders, each optionally FOLDER@float32 or FOLDER@bfloat16 (its matmul dtype)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="speech per call")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--locdit-dtype", choices=["bfloat16", "float32"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    systems = [load(folder, args.locdit_dtype) for folder in args.pipelines]
    first, whole = interleaved_timings(systems, args.rounds, args.seconds)
    print(
        f"{args.rounds} rounds, {args.seconds:g} s of speech, {args.threads} thread(s), "
        f"LocDiT {args.locdit_dtype or 'as loaded'}"
    )
    for i, system in enumerate(systems):
        print(f"  {system.describe()}")
        print(
            f"    first audio: best {min(first[i]) * 1000:.0f} ms, median {statistics.median(first[i]) * 1000:.0f} ms; "
            f"RTF: best {min(whole[i]):.3f}, median {statistics.median(whole[i]):.3f}"
        )


if __name__ == "__main__":
    main()
