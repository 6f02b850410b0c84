#!/usr/bin/env python
"""What transcribing voice prompts costs: load time and seconds per prompt of a `PromptTranscriber`.

    python examples/research/whisper_ct2_to_transformers.py outputs/whisper-base-hf     # once, offline
    python examples/research/asr_prompt_speed.py outputs/whisper-base-hf data/eval/natural/cases.jsonl --threads 2

Loads the model as `DiTARPipeline.enable_prompt_transcription(MODEL)` does, transcribes the first `--num` prompts of a
case file once each (timed; the first call is a warm-up and reported apart) and once more (the cache), and prints the
median and range of the seconds per prompt with the prompts' lengths.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import soundfile as sf
import torch

from modeling_ditar import PromptTranscriber


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="speech recognition model: a Hub id or a local folder")
    p.add_argument("cases", help="JSONL case file whose prompt_audio files are transcribed")
    p.add_argument("--num", type=int, default=10, help="prompts to time")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = Path(args.cases).parent
    rows = [json.loads(line) for line in open(args.cases) if line.strip()][: args.num + 1]
    clips = [sf.read(base / r["prompt_audio"], dtype="float32", always_2d=True) for r in rows]
    start = time.perf_counter()
    transcriber = PromptTranscriber(args.model)
    load = time.perf_counter() - start
    times, lengths = [], []
    for index, (audio, rate) in enumerate(clips):
        start = time.perf_counter()
        transcriber(audio.mean(axis=1), rate)
        if index == 0:
            warm_up = time.perf_counter() - start
            continue
        times.append(time.perf_counter() - start)
        lengths.append(len(audio) / rate)
    start = time.perf_counter()
    for audio, rate in clips[1:]:
        transcriber(audio.mean(axis=1), rate)
    cached = (time.perf_counter() - start) / max(1, len(clips) - 1)
    print(
        f"{args.model}, {args.threads} threads: load {load:.2f} s, first call {warm_up:.2f} s; "
        f"{len(times)} prompts of {min(lengths):.1f}-{max(lengths):.1f} s: median {statistics.median(times):.2f} s "
        f"per prompt ({min(times):.2f}-{max(times):.2f}); cached {1000 * cached:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
