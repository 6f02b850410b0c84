"""How well does the model's own CTC head pick the best of K sampled candidates?

For every case, K candidates are sampled one by one with the evaluation's per-case seeds `case_seed(k, case id)` (k = 0
is exactly the sample `evaluate.py --seed 0` scores), each is scored by `transcript_ctc_loss` as best-of-K sampling in
the pipeline scores it, and each is transcribed by Whisper and compared with the prompt by Resemblyzer. Whisper only
measures here; it never chooses. The summary compares, over all cases:

* seed 0 alone and the mean of the K single seeds (what plain sampling gives on average);
* the candidate the CTC head ranks first among the first k, for k = 2..K (what `num_candidates=k` would keep);
* the oracle: the candidate with the fewest Whisper errors (the most any ranking of these candidates could get).

    python examples/research/candidate_ranking_probe.py --cases data/eval/newvoices48/cases.jsonl --num-candidates 4 \
        --threads 2 --out outputs/eval/candidates-newvoices48

Writes OUT/candidates.json (every candidate's score, transcript, word counts and SIM) and OUT/summary.md; with
`--save-candidates` also every candidate's waveform and features, OUT/candidates/<case id>_<k>.wav and .pt (the
de-normalised features the pipeline returned), for judges scored afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/

from eval_lib.asr import WhisperASR  # noqa: E402
from eval_lib.cases import load_cases  # noqa: E402
from eval_lib.metrics import cosine, word_stats  # noqa: E402
from eval_lib.speaker import ResemblyzerEncoder  # noqa: E402
from eval_lib.systems import case_seed, load_pipeline, read_audio  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", required=True, help="cases.jsonl (prompt audio + text, target text)")
    p.add_argument("--num-candidates", type=int, default=4, help="K candidates per case (>= 2)")
    p.add_argument("--pipeline", default=None, help="pipeline folder (default: the embedded default)")
    p.add_argument("--max-cases", type=int, default=None, help="only the first N cases")
    p.add_argument("--asr-redecode-loops", action="store_true", help="as in evaluate.py")
    p.add_argument("--threads", type=int, default=1, help="torch and Whisper CPU threads")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--save-candidates",
        action="store_true",
        help="also write every candidate's waveform and features to OUT/candidates/<case id>_<k>.wav and .pt (for "
        "judges scored afterwards)",
    )
    args = p.parse_args(argv)
    if args.num_candidates < 2:
        p.error("--num-candidates must be >= 2 (there is nothing to rank with one)")
    return args


def sample_candidates(pipe, case, num_candidates: int) -> list[dict]:
    """K single-candidate samples of one case with their ranking scores (normalised features kept for scoring)."""
    import torch

    inputs = pipe.encode_inputs([case.target_text], case.prompt_audio, case.prompt_text, None)
    model = pipe.model
    candidates = []
    for k in range(num_candidates):
        generator = torch.Generator().manual_seed(case_seed(k, case.id))
        out = pipe(
            case.target_text,
            prompt_audio=case.prompt_audio,
            prompt_text=case.prompt_text,
            output_type="features",
            generator=generator,
            num_candidates=1,
        )
        features = torch.as_tensor(np.asarray(out.audios[0][: out.audio_lengths[0]]), dtype=torch.float32)
        with torch.no_grad():
            score = float(pipe.model.score_candidates(inputs, [model.normalize_features(features)])[0])
        candidates.append({"seed": k, "features": features, "ctc": score, "stopped": bool(out.stopped[0])})
    return candidates


def summarize(records: list[dict], num_candidates: int) -> tuple[dict, str]:
    def total(pick) -> dict:
        chosen = [pick(r["candidates"]) for r in records]
        ref = sum(c["ref_words"] for c in chosen)
        hits = sum(c["hits"] for c in chosen)
        errors = sum(c["errors"] for c in chosen)
        capped = sum(min(c["errors"], c["ref_words"]) for c in chosen)
        sims = [c["sim"] for c in chosen if c["sim"] is not None]
        return {
            "hits": hits,
            "ref_words": ref,
            "errors": errors,
            "wer": errors / ref,
            "wer_capped": capped / ref,
            "sim": float(np.mean(sims)) if sims else None,
            "per_case_hits": [c["hits"] for c in chosen],
        }

    rows = {"seed 0": total(lambda cs: cs[0])}
    singles = [total(lambda cs, k=k: cs[k]) for k in range(num_candidates)]
    rows["single seed, mean of K"] = {
        key: float(np.mean([s[key] for s in singles])) for key in ("hits", "errors", "wer", "wer_capped", "sim")
    } | {"ref_words": singles[0]["ref_words"]}
    for k in range(2, num_candidates + 1):
        rows[f"CTC best of {k}"] = total(lambda cs, k=k: min(cs[:k], key=lambda c: c["ctc"]))
    rows[f"oracle best of {num_candidates}"] = total(lambda cs: min(cs, key=lambda c: (c["errors"], -c["hits"])))

    lines = ["| selection | words recognised | WER | WER (capped) | SIM (prompt) |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        sim = "–" if row["sim"] is None else f"{row['sim']:.3f}"
        lines.append(
            f"| {name} | {row['hits']:.1f}/{row['ref_words']} ({row['hits'] / row['ref_words']:.1%}) | "
            f"{row['wer']:.1%} | {row['wer_capped']:.1%} | {sim} |"
        )
    best = rows[f"CTC best of {num_candidates}"]["per_case_hits"]
    base = rows["seed 0"]["per_case_hits"]
    diff = np.asarray(best) - np.asarray(base)
    lines.append("")
    lines.append(
        f"CTC best of {num_candidates} vs seed 0, words recognised per case: {diff.sum():+d} "
        f"(± {diff.std(ddof=1) * np.sqrt(len(diff)):.0f} standard error of the sum; more in "
        f"{int((diff > 0).sum())} cases, fewer in {int((diff < 0).sum())})."
    )
    for row in rows.values():
        row.pop("per_case_hits", None)
    return rows, "\n".join(lines) + "\n"


def run(argv=None, asr=None, speaker_encoder=None) -> tuple[dict, list[dict]]:
    """The probe; `asr` / `speaker_encoder` replace Whisper / Resemblyzer (tests pass stubs). Returns (summary rows,
    per-case records)."""
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(args.pipeline)
    if pipe.model.ctc_head is None:
        raise SystemExit("this pipeline's model has no CTC head (ctc_loss_weight = 0): there is nothing to rank with")
    pipe.set_progress_bar_config(disable=True)
    asr = asr or WhisperASR(cpu_threads=args.threads, redecode_loops=args.asr_redecode_loops)
    speaker = speaker_encoder or ResemblyzerEncoder()
    from modeling_ditar.streaming import StreamingVocoder

    cases = load_cases(args.cases)[: args.max_cases]
    records, start = [], time.perf_counter()
    for index, case in enumerate(cases, 1):
        prompt_audio, prompt_rate = read_audio(case.prompt_audio)
        prompt_embedding = speaker.embed(prompt_audio, prompt_rate)
        candidates = []
        for cand in sample_candidates(pipe, case, args.num_candidates):
            features = cand.pop("features")
            with torch.no_grad():
                wave = StreamingVocoder(pipe.vocoder).decode(features).numpy().astype(np.float32)
            if args.save_candidates:
                import soundfile as sf

                (out / "candidates").mkdir(exist_ok=True)
                sf.write(out / "candidates" / f"{case.id}_{cand['seed']}.wav", wave, pipe.sample_rate)
                torch.save(features, out / "candidates" / f"{case.id}_{cand['seed']}.pt")
            hypothesis = asr.transcribe(wave, pipe.sample_rate)
            embedding = speaker.embed(wave, pipe.sample_rate)
            sim = None if embedding is None or prompt_embedding is None else cosine(embedding, prompt_embedding)
            candidates.append(
                cand
                | {"hypothesis": hypothesis, "sim": sim, "seconds": len(wave) / pipe.sample_rate}
                | word_stats(case.target_text, hypothesis).to_dict()
            )
        records.append({"id": case.id, "target_text": case.target_text, "candidates": candidates})
        ranked = min(range(len(candidates)), key=lambda k: candidates[k]["ctc"])
        print(
            f"[{index}/{len(cases)}] {case.id} hits {[c['hits'] for c in candidates]} of "
            f"{candidates[0]['ref_words']}, CTC picks seed {ranked} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    rows, table = summarize(records, args.num_candidates)
    meta = {
        "command": " ".join(["python", *sys.argv]),
        "cases": args.cases,
        "num_cases": len(records),
        "num_candidates": args.num_candidates,
        "pipeline": args.pipeline or "embedded default",
        "asr": asr.describe(),
        "wall_seconds": time.perf_counter() - start,
    }
    (out / "candidates.json").write_text(json.dumps({"meta": meta, "summary": rows, "cases": records}, indent=1))
    (out / "summary.md").write_text(
        f"# Candidate ranking, {len(records)} cases, K = {args.num_candidates}\n\n`{meta['command']}`\n\n{table}"
    )
    print(table)
    return rows, records


def main(argv=None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
