#!/usr/bin/env python
"""Spot check of the shipped default's speed on one sentence, batch 1, 2 threads: RTF (best of 3 calls) and the time
to the first streamed chunk (best of 2), for the default sampling, cheaper and dearer settings, LocDiT alone in
bfloat16, and all weights in bfloat16.

    python examples/research/speed_spot_check.py [--threads 1]

Quick and rough: one sentence and no load control. For the real comparison use examples/benchmark.py.
"""

import argparse
import time

import torch

from modeling_ditar import DiTARPipeline

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."
SETTINGS = {
    "default (best of 4, pruned after 12; 4 steps)": {},
    "one candidate": {"num_candidates": 1},
    "default, 10 steps": {"num_inference_steps": 10},
    "one candidate, 10 steps": {"num_candidates": 1, "num_inference_steps": 10},
}


def spot_check(pipe: DiTARPipeline, label: str, **settings) -> str:
    calls = []
    for _ in range(3):
        start = time.perf_counter()
        out = pipe(TEXT, generator=torch.manual_seed(0), **settings)
        calls.append(time.perf_counter() - start)
    seconds = out.audios[0].shape[-1] / pipe.vocoder.sampling_rate
    firsts = []
    for _ in range(2):
        start = time.perf_counter()
        stream = pipe.stream(TEXT, generator=torch.manual_seed(0), **settings)
        next(iter(stream))
        firsts.append(time.perf_counter() - start)
        for _chunk in stream:  # finish the stream before the next call
            pass
    return (
        f"{label}: RTF {min(calls) / seconds:.3f} ({min(calls):.2f} s for {seconds:.2f} s), "
        f"first streamed audio {min(firsts):.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(parser.parse_args().threads)
    pipeline = DiTARPipeline.from_pretrained("modeling_ditar/default")
    pipeline.set_progress_bar_config(disable=True)
    for name, kwargs in SETTINGS.items():
        print(spot_check(pipeline, name, **kwargs), flush=True)
    pipeline.model.locdit.to(torch.bfloat16)  # `ditar synthesize --locdit-dtype bfloat16`
    for name in list(SETTINGS)[:2]:
        print(spot_check(pipeline, f"{name}, LocDiT in bfloat16", **SETTINGS[name]), flush=True)
    pipeline.model.to(torch.bfloat16)  # fast only where the CPU multiplies bfloat16 natively (AVX512-BF16, AMX)
    for name in list(SETTINGS)[:2]:
        print(spot_check(pipeline, f"{name}, bfloat16 weights", **SETTINGS[name]), flush=True)
