#!/usr/bin/env python
"""Where in an utterance does generated speech lose the prompt's voice? Speaker similarity to the prompt of the first
and second half of each clip, for the ground truth and for the `model` and `tf` (teacher-forced) rows of
`examples/evaluate.py` runs on the same cases.

    python examples/research/sim_by_half.py --cases data/eval/natural/cases.jsonl EVAL_DIR [EVAL_DIR ...]

EVAL_DIR is an evaluate.py output folder with `wavs/model/` (and `wavs/tf/` when it ran `--rows tf,model`). Only cases
with a target recording are used, and only those where every clip has two halves long enough to embed. "Drift beyond
the ground truth" is (first − second half) of a row minus the same for the real recording, per case: the real
speaker's own change over a sentence is taken out. ± is the standard error over cases.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/
from eval_lib.runner import wav_name  # noqa: E402
from eval_lib.speaker import ResemblyzerEncoder  # noqa: E402


def halves(encoder, path: Path):
    audio, rate = sf.read(str(path), dtype="float32")
    half = len(audio) // 2
    return encoder.embed(audio[:half], rate), encoder.embed(audio[half:], rate)


def mean_se(values) -> str:
    values = np.asarray(values)
    return f"{values.mean():+.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, required=True, help="the cases.jsonl the runs evaluated")
    parser.add_argument("runs", type=Path, nargs="+", help="evaluate.py output folders")
    args = parser.parse_args(argv)
    root = args.cases.parent
    cases = [json.loads(line) for line in args.cases.read_text().splitlines() if line.strip()]
    encoder = ResemblyzerEncoder()
    # the prompt's embedding and the real recording's halves are the same for every run: computed once per case
    references = {}
    for case in cases:
        if not case.get("target_audio"):
            continue
        prompt, rate = sf.read(str(root / case["prompt_audio"]), dtype="float32")
        reference = encoder.embed(prompt, rate)
        first, second = halves(encoder, root / case["target_audio"])
        if reference is not None and first is not None and second is not None:
            references[case["id"]] = (reference, (float(first @ reference), float(second @ reference)))
    for run in args.runs:
        rows = ["model"] + (["tf"] if (run / "wavs" / "tf").is_dir() else [])
        sims = []
        for case_id, (reference, gt) in references.items():
            clips = {row: run / "wavs" / row / wav_name(case_id) for row in rows}  # as evaluate.py names them
            if not all(path.is_file() for path in clips.values()):
                continue
            pairs = {name: halves(encoder, path) for name, path in clips.items()}
            if any(a is None or b is None for a, b in pairs.values()):
                continue
            sims.append(
                {"gt": gt, **{name: (float(a @ reference), float(b @ reference)) for name, (a, b) in pairs.items()}}
            )
        print(f"{run} ({len(sims)} cases)")
        for name in ["gt", *rows]:
            first = [s[name][0] for s in sims]
            second = [s[name][1] for s in sims]
            line = f"  {name:5s} first half {np.mean(first):.3f}  second half {np.mean(second):.3f}"
            if name != "gt":
                drift = [(s[name][0] - s[name][1]) - (s["gt"][0] - s["gt"][1]) for s in sims]
                line += f"  drift beyond the ground truth {mean_se(drift)}"
            print(line)
        if "tf" in rows:
            gap = [s["tf"][0] - s["model"][0] for s in sims]
            print(f"  teacher-forced minus free-running, first half: {mean_se(gap)}")


if __name__ == "__main__":
    main()
