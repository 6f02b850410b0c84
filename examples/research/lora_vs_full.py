#!/usr/bin/env python
"""LoRA against full fine-tuning on several voices the shipped default never heard, with the same steps and data.

    python examples/research/lora_vs_full.py --out runs/lora-vs-full \
        --voices flite:awb,flite:rms,flite:slt,flite:kal16,festival:ked_diphone,piper:joe \
        --config "lora=--targets backbone+backbone-mlp+locdit+encoder --rank 8" --config "full=--full" --steps 200

For every voice it
  1. writes a folder of recordings (`--train-clips` + `--holdout` fortunes sentences, wav + same-name .txt), spoken by
     flite, festival, Piper (joe) or Kokoro (a style name), different sentences for every voice;
  2. runs `examples/finetune.py` once per `--config` (name=extra arguments) with the same `--steps`, seed, data and
     held-out clips, without its own evaluation;
  3. builds cases from the held-out clips (prompt one held-out clip, speak another held-out sentence) and scores the
     base pipeline (ground truth and model rows) and every fine-tuned voice with `examples/evaluate.py`.
Then it pairs every case: the SIM gain of each config over the base model, and the difference between the configs'
gains, with standard errors over all cases, and writes OUT/results.md and OUT/results.json. Every step is skipped
when its output exists, so a re-run resumes.

Fine-tuned voices are never shipped as the default, so evaluation-only voices (flite, festival's kal/slt) may be
fine-tuned on here.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
ROOT = EXAMPLES.parent
sys.path.insert(0, str(EXAMPLES))


def speak(voice: str, text: str, path: Path) -> None:
    """Write `text` spoken by `voice` ("flite:awb", "festival:ked_diphone", "piper:joe", "kokoro:jm_kumo") to `path`."""
    import soundfile as sf

    kind, _, name = voice.partition(":")
    if kind == "flite":
        from make_ood_cases import flite_say

        flite_say(name, text, path)
        return
    from corpus import natural

    if kind == "festival":
        audio, sr = natural.festival_synthesize(text, name)
    elif kind == "piper":
        audio, sr = natural.piper_synthesize(text)
    elif kind == "kokoro":
        audio, sr = natural.kokoro_synthesize(text, {name: 1.0})
    else:
        raise SystemExit(f"voice {voice!r}: use flite:NAME, festival:NAME, piper:joe or kokoro:STYLE")
    sf.write(str(path), audio, sr)


def write_recordings(voice: str, sentences: list[str], folder: Path) -> None:
    if (folder / "done").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(sentences):
        speak(voice, text, folder / f"{i:03d}.wav")
        (folder / f"{i:03d}.txt").write_text(text + "\n")
    (folder / "done").write_text("")


def run(command: list) -> None:
    command = [str(c) for c in command]
    print("+ " + " ".join(shlex.quote(c) for c in command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def model_rows(path: Path) -> dict:
    data = json.loads(path.read_text())
    return {c["id"]: c["rows"] for c in data["cases"]}


def paired(diffs: list[float]) -> tuple[float, float]:
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(1, len(diffs) - 1))
    return mean, sd / math.sqrt(len(diffs))


def summarize(out: Path, voices: list[str], configs: dict[str, str], args) -> str:
    """Paired table over all cases of all voices (OUT/results.md, OUT/results.json)."""
    per_case = []  # (voice, case id, {system: row})
    for voice in voices:
        vdir = out / voice.replace(":", "-")
        base = model_rows(vdir / "eval" / "base" / "results.json")
        tuned = {name: model_rows(vdir / "eval" / name / "results.json") for name in configs}
        for case_id, rows in base.items():
            systems = {"ground truth": rows.get("gt"), "base": rows.get("model")}
            systems.update({name: tuned[name].get(case_id, {}).get("model") for name in configs})
            if all(r is not None and r.get("error") is None for r in systems.values()):
                per_case.append((voice, case_id, systems))
    summaries = json.loads((out / "summaries.json").read_text()) if (out / "summaries.json").is_file() else {}
    names = ["ground truth", "base", *configs]
    lines = [
        "| system | trained parameters | saved | SIM (prompt) | SIM (target) | words recognised | WER (capped) "
        "| stops |",
        "|---|---|---|---|---|---|---|---|",
    ]
    table = {}
    for name in names:
        rows = [systems[name] for _, _, systems in per_case]
        sim = np.mean([r["sim_prompt"] for r in rows])
        sim_gt = [r.get("sim_gt") for r in rows if r.get("sim_gt") is not None]
        hits = sum(r["words"]["hits"] for r in rows)
        ref = sum(r["words"]["ref_words"] for r in rows)
        capped = sum(min(r["words"]["errors"], r["words"]["ref_words"]) for r in rows) / max(1, ref)
        stops = sum(bool(r.get("stopped", True)) for r in rows)
        s = summaries.get(name, {})
        trained = s.get("trained", "")
        if "fraction" in s:
            trained = f"{s['adapter_parameters']:,} ({100 * s['fraction']:.2f}%)"
        saved = f"{s['file_mb']:.2f} MB" if "file_mb" in s else s.get("saved", "")
        sim_gt_text = f"{np.mean(sim_gt):.3f}" if sim_gt else "–"
        lines.append(
            f"| {name} | {trained} | {saved} | {sim:.3f} | {sim_gt_text} | {hits}/{ref} "
            f"({100 * hits / max(1, ref):.1f}%) | {100 * capped:.1f}% | "
            f"{stops if name != 'ground truth' else '–'}/{len(rows)} |"
        )
        table[name] = {"sim_prompt": float(sim), "sim_gt": float(np.mean(sim_gt)) if sim_gt else None, "hits": hits}
    lines += ["", f"Paired over {len(per_case)} cases ({len(voices)} voices), mean ± standard error:", ""]
    gains = {}
    for name in configs:
        d_sim = [s[name]["sim_prompt"] - s["base"]["sim_prompt"] for _, _, s in per_case]
        d_gt = [s[name]["sim_gt"] - s["base"]["sim_gt"] for _, _, s in per_case if s["base"].get("sim_gt") is not None]
        d_hits = [s[name]["words"]["hits"] - s["base"]["words"]["hits"] for _, _, s in per_case]
        gains[name] = d_sim
        m, se = paired(d_sim)
        mg, seg = paired(d_gt) if len(d_gt) > 1 else (float("nan"), float("nan"))
        lines.append(
            f"- {name} vs base: SIM (prompt) {m:+.3f} ± {se:.3f}, SIM (target) {mg:+.3f} ± {seg:.3f}, "
            f"words {sum(d_hits):+d} (higher SIM in {sum(d > 0 for d in d_sim)} of {len(d_sim)})"
        )
    listed = list(configs)
    for i, a in enumerate(listed):
        for b in listed[i + 1 :]:
            d = [x - y for x, y in zip(gains[a], gains[b], strict=True)]
            m, se = paired(d)
            d_hits = [s[a]["words"]["hits"] - s[b]["words"]["hits"] for _, _, s in per_case]
            lines.append(
                f"- {a} vs {b}: SIM (prompt) {m:+.3f} ± {se:.3f}, words {sum(d_hits):+d} "
                f"(higher SIM in {sum(x > 0 for x in d)} of {len(d)})"
            )
    lines += ["", "Per voice, SIM (prompt) gain over base:", ""]
    lines += ["| voice | cases | " + " | ".join(configs) + " |", "|---|---|" + "---|" * len(configs)]
    for voice in voices:
        cases = [s for v, _, s in per_case if v == voice]
        if cases:
            gains_v = [np.mean([s[n]["sim_prompt"] - s["base"]["sim_prompt"] for s in cases]) for n in configs]
            lines.append(f"| {voice} | {len(cases)} | " + " | ".join(f"{g:+.3f}" for g in gains_v) + " |")
    lines += ["", "Configs (extra arguments of examples/finetune.py):", ""]
    lines += [f"- {name}: `--max-steps {args.steps} {extra}`" for name, extra in configs.items()]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"table": table, "cases": len(per_case)}, indent=2))
    return text


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--voices", required=True, help="comma-separated: flite:awb,festival:ked_diphone,piper:joe,...")
    p.add_argument("--config", action="append", required=True, help="name=extra finetune.py arguments (repeat)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--train-clips", type=int, default=40)
    p.add_argument("--holdout", type=int, default=8)
    p.add_argument("--sentence-seed", type=int, default=11, help="shuffle of the fortunes sentences")
    p.add_argument("--base", default=str(ROOT / "modeling_ditar" / "default"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--summary-only", action="store_true", help="only (re)write the table from finished runs")
    args = p.parse_args(argv)

    out = Path(args.out)
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    configs = dict(c.split("=", 1) for c in args.config)
    if args.summary_only:
        return print(summarize(out, voices, configs, args)) or ""

    from corpus.sentences import load_sentences

    per_voice = args.train_clips + args.holdout
    sentences = load_sentences(seed=args.sentence_seed)
    if len(sentences) < per_voice * len(voices):
        raise SystemExit(f"{len(sentences)} sentences for {len(voices)} voices x {per_voice}")
    evaluate = [sys.executable, EXAMPLES / "evaluate.py", "--threads", args.threads]
    summaries = json.loads((out / "summaries.json").read_text()) if (out / "summaries.json").is_file() else {}
    for v, voice in enumerate(voices):
        vdir = out / voice.replace(":", "-")
        recordings = vdir / "recordings"
        write_recordings(voice, sentences[v * per_voice : (v + 1) * per_voice], recordings)
        for name, extra in configs.items():
            run_dir = vdir / name
            if not (run_dir / "voice" / "model_index.json").is_file():
                run(
                    [sys.executable, EXAMPLES / "finetune.py", recordings, "--out", run_dir, "--base", args.base]
                    + ["--max-steps", args.steps, "--holdout", args.holdout, "--eval", "none"]
                    + ["--threads", args.threads]
                    + shlex.split(extra)
                )
            adapter = run_dir / "adapter_summary.json"
            if adapter.is_file():
                summaries[name] = json.loads(adapter.read_text())
            elif "--full" in extra:
                summaries[name] = {"trained": "every weight (100%)", "saved": "the whole model"}
        cases = vdir / "cases.jsonl"
        first = vdir / next(iter(configs))
        if not cases.is_file():
            run(
                evaluate[:2]
                + ["--make-cases-from", first / "data", "--split", "validation"]
                + ["--num-cases", args.holdout, "--out", cases]
            )
        for name, rows, pipeline in [("base", "gt,model", args.base)] + [
            (n, "model", vdir / n / "voice") for n in configs
        ]:
            target = vdir / "eval" / name
            if not (target / "results.json").is_file():
                run(
                    evaluate
                    + ["--cases", cases, "--rows", rows, "--pipeline", pipeline, "--label", name]
                    + ["--out", target]
                )
        (out / "summaries.json").write_text(json.dumps(summaries, indent=2))
    text = summarize(out, voices, configs, args)
    print(text)
    return text


if __name__ == "__main__":
    main()
