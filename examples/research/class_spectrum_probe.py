"""Would matching the prompt's spectrum per class of sound (not only on average) raise SIM further?

Global prompt spectrum matching moves the speech's average log-mel spectrum towards the prompt's. Vowels and fricatives
differ in colour, so this probe splits the speech frames of the prompt and of a saved candidate into K soft classes by
spectral tilt (the mean of bins 40-79 minus the mean of bins 0-29; class centres at the prompt's speech quantiles) and
moves each class's mean towards the prompt's same class, after removing the part the global matching already did. An
upper bound on the idea: the candidate's class means use the whole utterance (not causal). The candidates are the
default's (already matched globally) from `candidate_ranking_probe.py --save-candidates`, seed 0; Whisper's words and
Resemblyzer's SIM are paired against them.

    python examples/research/class_spectrum_probe.py outputs/eval/candidates-natval48 --classes 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/

from eval_lib.asr import WhisperASR  # noqa: E402
from eval_lib.cases import load_cases  # noqa: E402
from eval_lib.metrics import cosine, word_stats  # noqa: E402
from eval_lib.speaker import ResemblyzerEncoder  # noqa: E402
from eval_lib.systems import load_pipeline, read_audio  # noqa: E402
from eval_lib.teacher_forcing import real_frames  # noqa: E402

STRENGTHS = (0.5, 1.0)


def tilt(frames: torch.Tensor) -> torch.Tensor:
    return frames[:, 40:].mean(1) - frames[:, :30].mean(1)


def memberships(tilts: torch.Tensor, centres: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.softmax(-((tilts[:, None] - centres[None]) ** 2) / (2 * scale**2), dim=1)


def class_correction(prompt: torch.Tensor, generated: torch.Tensor, classes: int) -> torch.Tensor:
    """The per-frame shift [T, D] that moves each class of the generated frames ([T, D], de-normalised) to the
    prompt's same class, less the shift common to all classes."""
    from modeling_ditar.spectrum_matching import PromptSpectrumMatch

    weigh = PromptSpectrumMatch(prompt.float(), 0.5).speech_weight
    wp, wg = weigh(prompt.float()).double(), weigh(generated.float()).double()
    tp, tg = tilt(prompt), tilt(generated)
    speech = tp[wp > 0.5] if int((wp > 0.5).sum()) > classes else tp
    quantiles = torch.linspace(0.5 / classes, 1 - 0.5 / classes, classes, dtype=torch.float64)
    centres, scale = torch.quantile(speech, quantiles), speech.std().clamp_min(1e-3) / classes
    mp = memberships(tp, centres, scale) * wp[:, None]
    mg = memberships(tg, centres, scale) * wg[:, None]
    mean_p = (mp.T @ prompt) / mp.sum(0)[:, None].clamp_min(1e-6)
    mean_g = (mg.T @ generated) / mg.sum(0)[:, None].clamp_min(1e-6)
    usable = ((mp.sum(0) > 5) & (mg.sum(0) > 5)).double()[:, None]  # a class with few frames on either side: no shift
    delta = (mean_p - mean_g) * usable
    delta = delta - (delta * mg.sum(0)[:, None]).sum(0) / mg.sum(0).sum()  # the global part is already matched
    return (memberships(tg, centres, scale) @ delta) * wg[:, None]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("probe", help="the folder candidate_ranking_probe.py --save-candidates wrote")
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from modeling_ditar.streaming import StreamingVocoder

    folder = Path(args.probe)
    data = json.loads((folder / "candidates.json").read_text())
    cases = {case.id: case for case in load_cases(data["meta"]["cases"])}
    pipe = load_pipeline(None)
    asr, speaker = WhisperASR(cpu_threads=args.threads, redecode_loops=True), ResemblyzerEncoder()
    rows = []
    for record in data["cases"]:
        case, cand = cases[record["id"]], record["candidates"][0]
        prompt_wave, prompt_rate = read_audio(case.prompt_audio)
        prompt = pipe.model.denormalize_features(real_frames(pipe, prompt_wave, prompt_rate).float()).double()
        generated = torch.load(folder / "candidates" / f"{record['id']}_{cand['seed']}.pt").double()
        correction = class_correction(prompt, generated, args.classes)
        prompt_embedding = speaker.embed(prompt_wave, prompt_rate)
        row = {"id": record["id"], "unchanged": [cand["hits"], cand["sim"]]}
        for strength in STRENGTHS:
            with torch.no_grad():
                wave = StreamingVocoder(pipe.vocoder).decode((generated + strength * correction).float()).numpy()
            row[str(strength)] = [
                word_stats(case.target_text, asr.transcribe(wave, pipe.sample_rate)).hits,
                cosine(speaker.embed(wave, pipe.sample_rate), prompt_embedding),
            ]
        rows.append(row)
        print(row, flush=True)
    for strength in map(str, STRENGTHS):
        dh = np.array([r[strength][0] - r["unchanged"][0] for r in rows], dtype=float)
        ds = np.array([r[strength][1] - r["unchanged"][1] for r in rows], dtype=float)
        se_words, se_sim = dh.std(ddof=1) * math.sqrt(len(dh)), ds.std(ddof=1) / math.sqrt(len(ds))
        print(
            f"{args.classes} classes, strength {strength}: words {dh.sum():+.0f} ± {se_words:.0f}, "
            f"SIM {ds.mean():+.4f} ± {se_sim:.4f}"
        )


if __name__ == "__main__":
    main()
