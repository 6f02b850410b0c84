"""Does the model read a voice prompt better when the prompt's colour is that of its training voices?

Before the model reads it, the prompt's speech frames are moved `--neutralise` of the way from the prompt's long-term
average log-mel spectrum to the training voices' average (speech-weighted like `PromptSpectrumMatch`, over
`--reference-utterances` training utterances of `--reference-corpus`, a corpus written by build_corpus.py). With
`--smooth-coefficients N` only the smooth part of that difference moves (its first N DCT coefficients over the mel bins:
level, tilt, curvature: the recording channel rather than the speaker), and the same part is taken off the generated
speech frames afterwards. The generated speech is then matched to the *original* prompt's spectrum with strength
`--post` (the pipeline's `prompt_spectrum_match`, whose own pass is switched off). Every other argument goes to
examples/evaluate.py (rows: model only); compare with the plain evaluation of the same cases and seed:

    python examples/research/prompt_colour_probe.py --neutralise 0.5 --post 0.5 \\
        --cases data/eval/natval48/cases.jsonl --asr-redecode-loops --threads 1 --dnsmos --out outputs/eval/neut05
    python examples/research/prompt_colour_probe.py --neutralise 1.0 --smooth-coefficients 2 --post 0.5 ...
    python examples/research/paired_eval.py DEFAULT/results.json outputs/eval/neut05/results.json

Results: docs/research/sweeps/prompt_spectrum_matching.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import torch

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neutralise", type=float, required=True, help="how far the prompt moves, 0-1")
    p.add_argument("--post", type=float, required=True, help="matching strength towards the original prompt, 0-1")
    p.add_argument("--smooth-coefficients", type=int, default=None, help="move only this many DCT coefficients")
    p.add_argument("--reference-corpus", default="data/corpus", help="training corpus (build_corpus.py) folder")
    p.add_argument("--reference-utterances", type=int, default=400, help="training utterances averaged (seed 0)")
    args, rest = p.parse_known_args(argv)
    for name in ("neutralise", "post"):
        if not 0 <= getattr(args, name) <= 1:
            raise SystemExit(f"--{name} must be in [0, 1], got {getattr(args, name)}")
    if args.smooth_coefficients is not None and args.smooth_coefficients < 1:
        raise SystemExit(f"--smooth-coefficients must be >= 1, got {args.smooth_coefficients}")
    return args, rest


def reference_spectrum(corpus: str, utterances: int) -> torch.Tensor:
    """The mean over training utterances of each one's speech-weighted average log-mel frame."""
    from datasets import load_from_disk

    from modeling_ditar.spectrum_matching import PromptSpectrumMatch

    if not Path(corpus).is_dir():
        raise SystemExit(f"--reference-corpus {corpus}: no such folder (build one with examples/build_corpus.py)")
    train = load_from_disk(corpus)["train"].select_columns(["features"])
    rows = np.random.default_rng(0).choice(len(train), min(utterances, len(train)), replace=False)
    means = [PromptSpectrumMatch(torch.tensor(np.asarray(train[int(i)]["features"])), 1.0).target for i in rows]
    return torch.stack(means).mean(0)


def smooth_part(difference: torch.Tensor, coefficients: int) -> torch.Tensor:
    """The first `coefficients` DCT-II components of a spectrum over its bins, back in bins."""
    bins = torch.arange(difference.shape[0], dtype=torch.float64)
    basis = torch.stack(
        [torch.cos(math.pi * (bins + 0.5) * c / difference.shape[0]) for c in range(coefficients)]
    )  # [C, bins]
    return ((basis @ difference) / (basis * basis).sum(1)) @ basis


def run(argv: list[str], asr=None, speaker_encoder=None) -> dict:
    from modeling_ditar import DiTARPipeline
    from modeling_ditar.spectrum_matching import PromptSpectrumMatch

    args, rest = parse_args(argv)
    reference = reference_spectrum(args.reference_corpus, args.reference_utterances)
    original = DiTARPipeline._generate_rows

    def generate_rows(self, inputs, sampling, generator, callback_on_patch_end=None, progress=None):
        features = inputs["prompt_features"].clone()
        prompts, shifts = [], []
        for row in range(features.shape[0]):
            frames = int(inputs["prompt_attention_mask"][row].sum())
            prompt = self.model.denormalize_features(features[row, :frames].float()).cpu()
            match = PromptSpectrumMatch(prompt, 1.0)
            difference = reference - match.target
            if args.smooth_coefficients:
                difference = smooth_part(difference, args.smooth_coefficients)
            shift = args.neutralise * difference
            weights = match.speech_weight(prompt)[:, None]
            features[row, :frames] = self.model.normalize_features(prompt.double() + weights * shift).to(features.dtype)
            prompts.append((prompt, match))
            shifts.append(shift if args.smooth_coefficients else None)
        plain = dataclasses.replace(sampling, prompt_spectrum_match=0.0, prompt_spread_match=0.0)
        generated, stopped = original(
            self, {**inputs, "prompt_features": features}, plain, generator, callback_on_patch_end, progress=progress
        )
        out = []
        for (prompt, match), shift, speech in zip(prompts, shifts, generated, strict=True):
            if shift is not None:  # the smooth part goes back on: the channel is the prompt's again
                speech = (speech.double() - match.speech_weight(speech)[:, None] * shift).float()
            out.append(PromptSpectrumMatch(prompt, args.post)(speech))
        return out, stopped

    spec = importlib.util.spec_from_file_location("ditar_evaluate_cli", EXAMPLES / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    DiTARPipeline._generate_rows = generate_rows
    try:
        label = f"prompt colour {args.neutralise:g}/{args.smooth_coefficients or 'all'}, matched {args.post:g}"
        return evaluate.main(
            [*rest, "--rows", "model", *([] if "--label" in rest else ["--label", label])],
            asr=asr,
            speaker_encoder=speaker_encoder,
        )
    finally:
        DiTARPipeline._generate_rows = original


if __name__ == "__main__":
    run(sys.argv[1:])
