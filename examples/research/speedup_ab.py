#!/usr/bin/env python
"""Interleaved A/B timing of one generation speed-up switch (`GenerationSpeedups` field) of the shipped default.

    python examples/research/speedup_ab.py --switch fast_backbone --rounds 8
    python examples/research/speedup_ab.py --switch fast_backbone --setting num_candidates=1

Calls alternate between the switch off and on, in one process, on the same text and seed, so the slow drift of a shared
virtual machine (±10-30% between benchmark runs here) falls on both sides alike. Prints the best and median wall time
per side, their ratio, the paired median of the per-round differences, and whether both sides gave the same audio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from modeling_ditar import DiTARPipeline

TEXTS = {
    "short": "The quick brown fox jumps over the lazy dog near the river bank.",
    "long": "The quick brown fox jumps over the lazy dog near the river bank. A second sentence makes the speech a "
    "little longer, so that the backbone's cache grows as it would in a paragraph.",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switch", required=True, help="a GenerationSpeedups field, e.g. fast_backbone")
    parser.add_argument("--text", choices=sorted(TEXTS), default="long")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="pipeline folder (default: the embedded default)")
    parser.add_argument("--setting", action="append", default=[], help="generation setting KEY=JSON, repeatable")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = DiTARPipeline.from_pretrained(args.model) if args.model else DiTARPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    speedups = pipe.model.generation_speedups
    if not hasattr(speedups, args.switch) or not isinstance(getattr(speedups, args.switch), bool):
        raise SystemExit(f"--switch must name a boolean GenerationSpeedups field, got {args.switch!r}")
    settings = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.setting)}
    text = TEXTS[args.text]
    times: dict[bool, list[float]] = {False: [], True: []}
    audio: dict[bool, torch.Tensor] = {}
    for round_index in range(args.rounds + 1):  # round 0 warms both sides up and is not counted
        for value in (False, True) if round_index % 2 else (True, False):
            setattr(speedups, args.switch, value)
            start = time.perf_counter()
            out = pipe(text, generator=torch.manual_seed(0), **settings)
            if round_index:
                times[value].append(time.perf_counter() - start)
            audio[value] = torch.as_tensor(out.audios[0])
    seconds = audio[True].shape[-1] / pipe.sample_rate
    print(f"{args.switch}: {args.rounds} rounds, {seconds:.2f} s of speech, settings {settings or 'shipped'}")
    for value in (False, True):
        best, median = min(times[value]), statistics.median(times[value])
        print(f"  {args.switch}={value!s:5s}: best {best:.3f} s (RTF {best / seconds:.3f}), median {median:.3f} s")
    differences = [on - off for on, off in zip(times[True], times[False], strict=True)]
    print(
        f"  on/off: best {min(times[True]) / min(times[False]):.3f}, median "
        f"{statistics.median(times[True]) / statistics.median(times[False]):.3f}; paired median difference "
        f"{statistics.median(differences) * 1000:+.0f} ms per call"
    )
    same = audio[True].shape == audio[False].shape and torch.equal(audio[True], audio[False])
    print(f"  same audio: {same}")


if __name__ == "__main__":
    main()
