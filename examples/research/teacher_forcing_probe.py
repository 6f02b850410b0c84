#!/usr/bin/env python
"""How much a DiTAR model's per-patch prediction uses the text: teacher-forced patches scored against the real ones in
the normalised feature space, no ASR involved.

    # the embedded default, then a pipeline folder
    python examples/research/teacher_forcing_probe.py --cases data/eval/validation12/cases.jsonl
    python examples/research/teacher_forcing_probe.py --cases data/eval/validation12/cases.jsonl \\
        --pipeline runs/x/pipeline

For every case with target audio, each target patch is sampled from the real prefix (`eval_lib/teacher_forcing.py`),
deterministically (temperature 0, or --temperature), and its mean squared error to the real patch is averaged over all
patches. Rows:
  * two baselines that know nothing of the text: the previous real patch repeated, and the prompt's mean frame;
  * guidance scales 0 (LocDiT unconditional: history only), 1 (conditional, no guidance), 2 and 4;
  * guidance 1 and 2 with a wrong target text (one fixed unrelated sentence, or with --wrong-text other-case the next
    case's target text; the prompt transcript stays right).
A model that uses the text has a clearly lower error with the right text than with the wrong one; g = 1 against g = 0
shows what the backbone output adds to the history at all. `--steps 1` scores the x0 estimate at t = 1 (the posterior
mean, what examples/training_eval.py's penalty measures) instead of a sample. With a CTC head, the greedy CTC token
error rate of the backbone outputs it was trained on is printed too (how well the backbone can name the tokens at all,
without forecasting them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/
from eval_lib import load_cases, load_pipeline  # noqa: E402
from eval_lib.metrics import edit_distance  # noqa: E402
from eval_lib.systems import read_audio  # noqa: E402
from eval_lib.teacher_forcing import real_frames, sample_teacher_forced, teacher_forced_prefix  # noqa: E402

WRONG_TEXT = "The quick brown fox jumps over the lazy dog while seven wizards quietly hex a jovial bog."


def ctc_greedy(model, hidden: torch.Tensor) -> list[int]:
    classes = model.config.text_config.vocab_size + 1
    best = model.ctc_head(hidden).view(-1, classes).argmax(-1).tolist()
    tokens, last = [], None
    for b in best:
        if b != last and b != classes - 1:
            tokens.append(b)
        last = b
    return tokens


@torch.no_grad()
def probe(
    pipe, cases, steps: int, temperature: float = 0.0, wrong_text: str = "fixed"
) -> tuple[dict[str, float], float | None, int]:
    model = pipe.model
    patch = model.config.patch_size
    errors: dict[str, list[float]] = {}
    ctc_errors = ctc_tokens = 0
    used = 0
    others = [c for c in cases if c.target_audio is not None]
    if wrong_text == "other-case" and len(others) < 2:
        raise ValueError("--wrong-text other-case needs at least 2 cases with target_audio.")
    for case in cases:
        if case.target_audio is None:
            continue
        used += 1
        inputs = pipe.encode_inputs([case.target_text], case.prompt_audio, case.prompt_text, None)
        wrong_sentence = (
            WRONG_TEXT if wrong_text == "fixed" else others[(others.index(case) + 1) % len(others)].target_text
        )
        wrong = pipe.encode_inputs([wrong_sentence], case.prompt_audio, case.prompt_text, None)
        prompt = inputs["prompt_features"][0, : int(inputs["prompt_attention_mask"][0].sum())]
        audio, rate = read_audio(case.target_audio)
        target = real_frames(pipe, audio, rate)
        num = target.shape[0] // patch
        real = target[: num * patch].reshape(num, patch, -1).float()
        last_prompt = prompt[(prompt.shape[0] // patch - 1) * patch : prompt.shape[0] // patch * patch]
        rows = {
            "previous real patch repeated": torch.cat([last_prompt[None], real[:-1]]),
            "prompt mean frame": prompt.mean(0).expand_as(real),
        }
        right_prefix = teacher_forced_prefix(
            model, inputs["input_ids"], inputs["attention_mask"], prompt, target, inputs.get("speech_position_rate")
        )
        wrong_prefix = teacher_forced_prefix(
            model, wrong["input_ids"], wrong["attention_mask"], prompt, target, wrong.get("speech_position_rate")
        )
        settings = [(right_prefix, g, "") for g in (0.0, 1.0, 2.0, 4.0)]
        settings += [(wrong_prefix, g, ", wrong text") for g in (1.0, 2.0)]
        for prefix, g, label in settings:
            rows[f"teacher-forced, g={g:g}{label}"] = sample_teacher_forced(
                model, pipe.scheduler, prefix, steps, g, temperature, generator=torch.Generator().manual_seed(0)
            )
        for name, patches in rows.items():
            errors.setdefault(name, []).append(((patches.float() - real) ** 2).mean().item())
        if model.ctc_head is not None:
            hidden = right_prefix.hidden  # [1+N, H]
            hidden = hidden[:-1] if model.config.ctc_position == "prediction" else hidden[1:]
            reference = inputs["input_ids"][0].tolist()
            ctc_errors += edit_distance(ctc_greedy(model, hidden), reference)
            ctc_tokens += len(reference)
    means = {name: sum(v) / len(v) for name, v in errors.items()}
    return means, (ctc_errors / ctc_tokens if ctc_tokens else None), used


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", required=True, help="cases JSONL of examples/evaluate.py (needs target_audio)")
    parser.add_argument("--pipeline", help="pipeline folder or training output folder (default: the embedded model)")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps per patch")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0: deterministic from zeros (default); 1: from Gaussian noise (seed 0 per case)",
    )
    parser.add_argument(
        "--wrong-text",
        choices=["fixed", "other-case"],
        default="fixed",
        help="the wrong transcript: one fixed unrelated sentence, or the next case's target text",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # model.forward draws diffusion-loss noise; the probe reads only its hidden states
    cases = load_cases(args.cases)
    means, ctc, used = probe(load_pipeline(args.pipeline), cases, args.steps, args.temperature, args.wrong_text)
    if used == 0:
        raise SystemExit(f"{args.cases}: no case has target_audio; the probe needs the real target speech.")
    print(
        f"{used} cases, {args.pipeline or 'embedded default'}; mean squared error to the real patches "
        f"(normalised features, temperature {args.temperature:g}, wrong text: {args.wrong_text}):"
    )
    print("| prediction | MSE |\n|---|---|")
    for name, value in means.items():
        print(f"| {name} | {value:.3f} |")
    if ctc is not None:
        print(f"CTC greedy token error rate of the backbone outputs the head reads: {ctc:.1%}")
    return means, ctc


if __name__ == "__main__":
    main()
