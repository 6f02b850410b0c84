#!/usr/bin/env python
"""How sharp is the speech a pipeline generates, next to the real recordings of the same cases?

    python examples/research/feature_smoothness_probe.py --cases data/eval/natval48/cases.jsonl --max-cases 12 \\
        default=modeling_ditar/default ctl=outputs/arms/cpu-ctl

For each case with target audio, each pipeline generates the target text from the case's prompt (its generation
config, seed = case index) and returns features; the real target recording goes through the same feature extractor.
All features are normalised with the model's feature statistics, then three numbers are averaged over the cases:
  * delta: mean absolute frame-to-frame change (low = smeared transitions between sounds);
  * spread: per-bin standard deviation over time, averaged over bins;
  * contour: standard deviation over time of the frame's mean (the loudness contour).
A model that has lost its place in the text tends to produce smeared, averaged speech, which shows as a low delta.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/
from eval_lib import load_cases  # noqa: E402
from eval_lib.systems import read_audio  # noqa: E402
from eval_lib.teacher_forcing import real_frames  # noqa: E402


def sharpness(z: torch.Tensor) -> tuple[float, float, float]:
    """(delta, spread, contour) of normalised features [T, D]."""
    delta = (z[1:] - z[:-1]).abs().mean().item()
    return delta, z.std(0).mean().item(), z.mean(1).std().item()


@torch.no_grad()
def probe(pipe, cases) -> tuple[np.ndarray, np.ndarray]:
    generated, real = [], []
    for index, case in enumerate(cases):
        if case.target_audio is None:
            continue
        prompt, prompt_rate = read_audio(case.prompt_audio)
        out = pipe(
            case.target_text,
            prompt_audio=prompt,
            prompt_text=case.prompt_text,
            sampling_rate=prompt_rate,
            output_type="features",
            generator=torch.Generator().manual_seed(index),
        )
        features = torch.as_tensor(np.asarray(out.audios[0][: out.audio_lengths[0]])).float()  # [T, D], de-normalised
        generated.append(sharpness(pipe.model.normalize_features(features)))
        real.append(sharpness(real_frames(pipe, *read_audio(case.target_audio)).float()))  # as a prompt is read
    return np.array(generated).mean(0), np.array(real).mean(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", required=True, help="cases JSONL of examples/evaluate.py (needs target_audio)")
    parser.add_argument("--max-cases", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("pipelines", nargs="+", help="NAME=PIPELINE_FOLDER")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from modeling_ditar import DiTARPipeline

    cases = load_cases(args.cases)[: args.max_cases]
    print("| pipeline | generated delta | spread | contour | real delta | spread | contour |")
    print("|---|---|---|---|---|---|---|")
    for item in args.pipelines:
        name, _, folder = item.partition("=")
        generated, real = probe(DiTARPipeline.from_pretrained(folder), cases)
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in (*generated, *real)) + " |", flush=True)


if __name__ == "__main__":
    main()
