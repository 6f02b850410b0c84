#!/usr/bin/env python
"""Synthesis on a busy machine: wall and CPU time per call under torch thread settings and OpenMP wait policies.

    python examples/thread_load.py                      # all settings, idle and with one core kept busy
    python examples/thread_load.py --calls 3 --settings "2,default" "2,OMP_WAIT_POLICY=PASSIVE" "1,default"

Each setting runs in a fresh process (the OpenMP runtime reads its environment once, when torch loads it): the embedded
default pipeline speaks one sentence (`--candidates`, default one; fixed seed and length) `--calls` times after a
warm-up call, and the process reports the median wall time and the CPU time (user + system, all its threads) per call.
"busy" runs the same while another process spins on one core (a pure Python loop, like any other program wanting a
core).

torch's CPU wheels use GNU OpenMP (libgomp): its worker threads spin-wait between parallel regions (OMP_WAIT_POLICY,
GOMP_SPINCOUNT); KMP_BLOCKTIME belongs to Intel's OpenMP runtime and is listed only to show that it does nothing here.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

DEFAULT_SETTINGS = [
    "2,default",
    "2,OMP_WAIT_POLICY=PASSIVE",
    "2,KMP_BLOCKTIME=0",
    "1,default",
]
TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


def child(threads: int, calls: int, patches: int, candidates: int) -> None:
    import torch

    from modeling_ditar import DiTARPipeline

    torch.set_num_threads(threads)
    pipe = DiTARPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    options = dict(num_candidates=candidates, max_new_patches=patches, output_type="features")

    def call():
        pipe(TEXT, generator=torch.Generator().manual_seed(0), **options)

    call()  # warm-up
    walls, cpus = [], []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(json.dumps({"wall": statistics.median(walls), "cpu": statistics.median(cpus)}))


def spin(stop) -> None:
    while not stop.is_set():
        sum(range(1000))


def run(setting: str, busy: bool, calls: int, patches: int, candidates: int = 1) -> dict:
    threads, _, env_text = setting.partition(",")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")}
    if env_text and env_text != "default":
        for item in env_text.split(";"):
            key, _, value = item.partition("=")
            env[key] = value
    stop = multiprocessing.Event()
    burner = multiprocessing.Process(target=spin, args=(stop,), daemon=True) if busy else None
    if burner is not None:
        burner.start()
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", threads, str(calls), str(patches), str(candidates)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if burner is not None:
            stop.set()
            burner.join()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help='"THREADS,ENV=VALUE;ENV=VALUE"')
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--patches", type=int, default=40, help="patches per call (fixed length)")
    parser.add_argument(
        "--candidates", type=int, default=1, help="num_candidates (the shipped default: 4, pruned after 12 patches)"
    )
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} cores; {args.calls} calls of {args.patches} patches, {args.candidates} candidate(s), per "
        "setting; medians per call"
    )
    print(f"{'threads, environment':<34}{'idle wall':>10}{'idle cpu':>10}{'busy wall':>11}{'busy cpu':>10}")
    for setting in args.settings:
        idle = run(setting, False, args.calls, args.patches, args.candidates)
        busy = run(setting, True, args.calls, args.patches, args.candidates)
        print(
            f"{setting:<34}{idle['wall']:>9.2f}s{idle['cpu']:>9.2f}s{busy['wall']:>10.2f}s{busy['cpu']:>9.2f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
