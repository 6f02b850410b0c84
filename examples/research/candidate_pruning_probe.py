"""Where to prune best-of-K candidates: which candidate would pruning after N patches keep, and what would it cost?

For every case the pipeline samples K candidates in one batch, without pruning, with the evaluation's per-case seed
(exactly what `evaluate.py --num-candidates K` samples), and records every row's patches. For each pruning point N it
then replays the choice that `candidate_prune_after_patches=N` makes: the candidate whose first N patches have the
lowest `transcript_prefix_ctc_loss` (or, where a candidate finished within N patches, the whole-candidate ranking).
Pruning draws its noise for the full batch, so the kept candidate's patches are those of the unpruned run (to float
rounding). Each candidate is transcribed by Whisper once, so every choice is scored without generating again.

    python examples/research/candidate_pruning_probe.py --cases data/eval/validation24/cases.jsonl \
        --prune-after 4,8,12,16,24 --threads 1 --out outputs/eval/pruning-probe-validation24

Writes OUT/candidates.json (per case: every candidate's patches, transcript, word counts; each choice and the
candidates' prefix scores at each N, for replaying other policies) and
OUT/summary.md: per choice, agreement with whole ranking, words recognised, capped errors and the patches decoded
(all K rows up to N, then the kept one) against whole best-of-K.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/

from eval_lib.asr import WhisperASR  # noqa: E402
from eval_lib.cases import load_cases  # noqa: E402
from eval_lib.metrics import word_stats  # noqa: E402
from eval_lib.systems import case_seed, load_pipeline  # noqa: E402

from modeling_ditar.candidate_pruning import choose_candidates, losing_candidates  # noqa: E402
from modeling_ditar.generation_ditar import repeat_for_candidates  # noqa: E402
from modeling_ditar.prompt_audio import fit_prompts  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", required=True, help="cases.jsonl (prompt audio + text, target text)")
    p.add_argument("--num-candidates", type=int, default=4, help="K candidates per case (>= 2)")
    p.add_argument("--prune-after", default="4,8,12,16,24", help="comma-separated pruning points N (patches)")
    p.add_argument("--pipeline", default=None, help="saved pipeline folder (default: the embedded default)")
    p.add_argument("--max-cases", type=int, default=None, help="only the first N cases")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (per case: case_seed(seed, case id))")
    p.add_argument("--threads", type=int, default=1, help="torch and Whisper CPU threads")
    p.add_argument("--asr-redecode-loops", action="store_true", help="as evaluate.py")
    p.add_argument("--out", required=True, help="output folder")
    return p.parse_args(argv)


def sample_candidates(pipe, case, k: int, seed: int):
    """The K candidates of one case ([T_i, D] normalised features), whether each stopped, and the model inputs of the
    K rows, sampled as `pipe(..., num_candidates=K)` samples them without pruning."""
    model = pipe.model
    steps = []
    generator = torch.Generator().manual_seed(case_seed(seed, case.id))
    pipe(
        case.target_text,
        prompt_audio=case.prompt_audio,
        prompt_text=case.prompt_text,
        generator=generator,
        num_candidates=k,
        candidate_prune_after_patches=0,
        output_type="features",
        callback_on_patch_end=lambda _pipe, _index, step: steps.append(step),
    )
    patches = torch.stack([s.patch for s in steps], dim=1)  # [K, N, P, D]
    counts = torch.stack([s.active for s in steps], dim=1).sum(1)  # [K]
    rows = [patches[row, : int(counts[row])].flatten(0, 1) for row in range(k)]
    prompt_audio, prompt_text, rate = fit_prompts(pipe, case.prompt_audio, case.prompt_text, None)  # as pipe() does
    inputs, _ = repeat_for_candidates(pipe.encode_inputs([case.target_text], prompt_audio, prompt_text, rate), None, k)
    finished_at = counts.tolist()  # a row finishes after its last patch
    return model, rows, steps[-1].stopped.tolist(), inputs, finished_at


def pruned_choice(model, inputs, rows, finished_at, k: int, n: int) -> tuple[int, list[float] | None]:
    """The row `candidate_prune_after_patches=n` keeps for this case, and the candidates' prefix scores after n
    patches (None where a candidate finished within n patches and whole ranking decides)."""
    if min(finished_at) <= n:  # a candidate finished within n patches: whole ranking
        return choose_candidates(model, inputs, rows, k)[0], None
    patch = model.config.patch_size
    with torch.no_grad():
        scores = model.score_candidates(inputs, [r[: n * patch] for r in rows], prefix=True)
    dropped = losing_candidates(scores, torch.zeros(k, dtype=torch.bool), k)
    return int((~dropped).nonzero()[0]), [float(x) for x in scores.reshape(-1)]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    points = [int(x) for x in args.prune_after.split(",") if x.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = load_cases(args.cases)[: args.max_cases]
    pipe = load_pipeline(args.pipeline)
    asr = WhisperASR(cpu_threads=args.threads, redecode_loops=args.asr_redecode_loops)
    k = args.num_candidates
    records = []
    start = time.time()
    for number, case in enumerate(cases):
        model, rows, stopped, inputs, finished_at = sample_candidates(pipe, case, k, args.seed)
        prefix_scores = {}
        with torch.no_grad():
            choices = {"whole": choose_candidates(model, inputs, rows, k)[0]}
            for n in points:
                choices[f"N={n}"], prefix_scores[f"N={n}"] = pruned_choice(model, inputs, rows, finished_at, k, n)
        candidates = []
        for row in rows:
            audio = pipe._streaming_vocoder().decode(model.denormalize_features(row.float()))
            text = asr.transcribe(audio.numpy(), pipe.sample_rate)
            stats = word_stats(case.target_text, text)
            candidates.append(
                {
                    "patches": int(row.shape[0] // model.config.patch_size),
                    "transcript": text,
                    **stats.to_dict(),
                    "capped_errors": stats.capped_errors,
                }
            )
        records.append(
            {"id": case.id, "choices": choices, "prefix_scores": prefix_scores, "stopped": stopped,
             "candidates": candidates}
        )  # fmt: skip
        print(f"[{number + 1}/{len(cases)}] {case.id} {choices} ({time.time() - start:.0f} s)", flush=True)
    (out / "candidates.json").write_text(json.dumps({"args": vars(args), "cases": records}, indent=1))
    (out / "summary.md").write_text(summarize(records, points, k))
    print((out / "summary.md").read_text())
    return 0


def summarize(records: list[dict], points: list[int], k: int) -> str:
    words = sum(r["candidates"][0]["ref_words"] for r in records)
    lines = [
        f"{len(records)} cases, K = {k}, {words} reference words",
        "",
        "| choice | same as whole ranking | words recognised | capped errors | patches decoded (vs whole) | "
        "change vs whole: words, capped errors (± s.e.) |",
        "|---|---|---|---|---|---|",
    ]
    whole = [r["choices"]["whole"] for r in records]
    full_cost = sum(sum(c["patches"] for c in r["candidates"]) for r in records)
    for name in ["whole", "first candidate", *[f"N={n}" for n in points]]:
        picks = [0] * len(records) if name == "first candidate" else [r["choices"][name] for r in records]
        hits = np.array([r["candidates"][p]["hits"] for r, p in zip(records, picks, strict=True)])
        errors = np.array([r["candidates"][p]["capped_errors"] for r, p in zip(records, picks, strict=True)])
        base_hits = np.array([r["candidates"][p]["hits"] for r, p in zip(records, whole, strict=True)])
        base_errors = np.array([r["candidates"][p]["capped_errors"] for r, p in zip(records, whole, strict=True)])
        if name == "first candidate":
            cost = sum(r["candidates"][0]["patches"] for r in records)
        elif name == "whole":
            cost = full_cost
        else:
            n = int(name[2:])
            cost = sum(
                sum(min(c["patches"], n) for c in r["candidates"]) + max(r["candidates"][p]["patches"] - n, 0)
                for r, p in zip(records, picks, strict=True)
            )
        same = sum(p == w for p, w in zip(picks, whole, strict=True))
        dh, de = hits - base_hits, errors - base_errors
        spread = np.sqrt(len(records)) * max(dh.std(ddof=1), 0) if len(records) > 1 else 0.0
        spread_e = np.sqrt(len(records)) * max(de.std(ddof=1), 0) if len(records) > 1 else 0.0
        lines.append(
            f"| {name} | {same}/{len(records)} | {hits.sum()}/{words} | {errors.sum()} | {cost} "
            f"({cost / full_cost:.2f}) | {dh.sum():+d} ± {spread:.0f}, {de.sum():+d} ± {spread_e:.0f} |"
        )
    lines += [
        "",
        "Patches decoded: all K rows until N, then the kept row (whole: every row to its end; first candidate: one "
        "row, a lower bound for one-candidate sampling). ± is the standard error of the paired sum over cases.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
