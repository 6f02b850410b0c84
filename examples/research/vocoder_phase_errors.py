#!/usr/bin/env python
"""How coherent is a vocoder's phase? Resynthesise recordings through the pipeline's features with the pipeline's own
vocoder and with trained vocoder folders, and compare the STFT of each output waveform with the recording's at the
vocoder's framing (n_fft 1280, hop 320 for the default features):

    python examples/research/vocoder_phase_errors.py --cases data/eval/vocval16/cases.jsonl --num-cases 6 \\
        --vocoder direct=runs/vocoder-cpu-phase/vocoder --vocoder recurrent=runs/vocoder-cpu-recurrent/vocoder \\
        --variant 'random phase={"n_iter": 0}'

`--variant NAME=JSON` adds a Griffin-Lim vocoder built from the pipeline's (`GriffinLimVocoder.from_config(config,
**JSON)`): `{"n_iter": 0}` is a random phase passed once through the inverse STFT, the floor a learned phase must beat.

Per vocoder: the anti-wrapped group-delay error (GD: the phase difference between neighbouring bins) and
instantaneous-frequency error (IAF: between neighbouring frames), each averaged over all bins and weighted by the
recording's magnitude (the bins that are heard; chance is pi / 2 = 1.57 for both), and the mean squared log-magnitude
error. The waveform's STFT is what is heard, so this scores a predicted phase after the inverse STFT has reconciled
overlapping frames, not the predicted frames themselves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_lib.cases import load_cases  # noqa: E402
from vocoder_training.losses import SpectrumLoss, anti_wrapped  # noqa: E402

from modeling_ditar import DiTARPipeline, GriffinLimVocoder  # noqa: E402
from modeling_ditar.audio_utils import load_audio  # noqa: E402
from modeling_ditar.vocoder_vocos import VocosVocoder  # noqa: E402


def phase_errors(output: torch.Tensor, recording: torch.Tensor, spectrum: SpectrumLoss) -> dict[str, float]:
    """GD and IAF errors (plain and magnitude-weighted means) and the log-magnitude MSE of `output` against
    `recording` (both `[1, S]`)."""
    length = min(output.shape[-1], recording.shape[-1])
    made, true = spectrum.target(output[:, :length]), spectrum.target(recording[:, :length])
    phase_made, phase_true, weight = made.angle(), true.angle(), true.abs()
    scores = {}
    for name, dim in (("gd", -2), ("iaf", -1)):
        error = anti_wrapped(phase_made.diff(dim=dim) - phase_true.diff(dim=dim))
        w = weight[..., : error.shape[-2], : error.shape[-1]]
        scores[name] = float(error.mean())
        scores[f"{name}_weighted"] = float((error * w).sum() / w.sum())
    floor = spectrum.floor
    scores["log_magnitude_mse"] = float(
        (made.abs().clamp(min=floor).log() - true.abs().clamp(min=floor).log()).square().mean()
    )
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", required=True)
    parser.add_argument("--num-cases", type=int, default=None)
    parser.add_argument("--pipeline", default=None, help="pipeline folder (default: the embedded default)")
    parser.add_argument(
        "--vocoder", action="append", default=[], help="NAME=DIR of a trained VocosVocoder (repeatable)"
    )
    parser.add_argument("--variant", action="append", default=[], help="NAME=JSON Griffin-Lim settings (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = DiTARPipeline.from_pretrained(args.pipeline) if args.pipeline else DiTARPipeline.from_pretrained()
    extractor = pipe.processor.feature_extractor
    vocoders = {"the pipeline's vocoder": pipe.vocoder}
    for name, _, folder in (text.partition("=") for text in args.vocoder):
        vocoders[name] = VocosVocoder.from_pretrained(folder).eval()
        vocoders[name].check_feature_extractor(extractor)
    for name, _, settings in (text.partition("=") for text in args.variant):
        vocoders[name] = GriffinLimVocoder.from_config(pipe.vocoder.config, **json.loads(settings or "{}"))
    spectrum = SpectrumLoss(extractor.n_fft, extractor.hop_length, extractor.win_length)
    cases = [case for case in load_cases(args.cases) if case.has_ground_truth][: args.num_cases]
    totals: dict[str, dict[str, float]] = {name: {} for name in vocoders}
    for case in cases:
        audio, _ = load_audio(case.target_audio, sampling_rate=extractor.sampling_rate)
        recording = torch.as_tensor(audio, dtype=torch.float32)[None]
        features = extractor.compute_log_mel(recording)
        for name, vocoder in vocoders.items():
            with torch.no_grad():
                output = vocoder(features)
            for key, value in phase_errors(output, recording, spectrum).items():
                totals[name][key] = totals[name].get(key, 0.0) + value / len(cases)
    print(f"{len(cases)} cases; anti-wrapped errors in radians (chance pi / 2 = 1.57)")
    print("| vocoder | GD | GD (weighted) | IAF | IAF (weighted) | log-magnitude MSE |")
    print("|---|---|---|---|---|---|")
    for name, s in totals.items():
        keys = ("gd", "gd_weighted", "iaf", "iaf_weighted", "log_magnitude_mse")
        print(f"| {name} | " + " | ".join(f"{s[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
