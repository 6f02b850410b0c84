#!/usr/bin/env python
"""Put several `examples/evaluate.py` results side by side, with the training behind each model row.

    python examples/compare_results.py --out compare.md --title "Before and after fine-tuning" \
        "before=eval/default" "after=eval/finetuned@runs/finetuned"

Each entry is LABEL=EVAL_DIR[@RUN_DIR[:STEP]]: EVAL_DIR holds results.json; RUN_DIR (optional) is the train.py output
folder (STEP: read its logs only up to that step, for a model saved part-way through a run that was continued later),
from which the steps, wall time, the last logged diffusion loss and the last right-vs-wrong-transcript penalty (and,
when logged, the same in prompt + target rows) are read.
The ground-truth row (gt) is shown once per cases file and ASR settings, the resynthesised one (resynth) once per
cases file, ASR settings and resynthesis settings (each pipeline resynthesises through its own vocoder and features),
each named by the entries it belongs to where there are several. RTF is left out on purpose:
these evaluations often share the CPU with training, which makes their timings meaningless (see docs/inference.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_lib.report import DASH, _num, _pct, recognised_cell, text_normalizer_of  # noqa: E402

COLUMNS = (
    "system",
    "training",
    "train diffusion loss",
    "wrong-text penalty",
    "cases",
    "WER",
    "WER (capped)",
    "words recognised",
    "SIM (prompt)",
    "SIM (GT)",
    "stop rate",
    "duration ratio",
)


def parse_entry(text: str) -> tuple[str, Path, Path | None, int | None]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=EVAL_DIR[@RUN_DIR[:STEP]]")
    label, rest = text.rsplit("=", 1)
    eval_dir, _, run_dir = rest.partition("@")
    step = None
    head, colon, tail = run_dir.rpartition(":")
    if colon and tail.isdigit():
        run_dir, step = head, int(tail)
    return label, Path(eval_dir), Path(run_dir) if run_dir else None, step


def training_summary(run_dir: Path | None, up_to_step: int | None = None) -> dict:
    """Steps, minutes, mean diffusion loss of the last 4 log lines, last text-use penalty of a train.py run (of its
    log up to `up_to_step`, for a model saved part-way through a run that was continued)."""
    if run_dir is None:
        return {}
    out: dict = {}
    log = run_dir / "log.csv"
    if log.is_file():
        rows = list(csv.DictReader(log.open()))
        if up_to_step is not None:
            rows = [r for r in rows if int(r["step"]) <= up_to_step]
        if rows:
            tail = rows[-4:]
            out["steps"] = int(rows[-1]["step"])
            if rows[-1].get("elapsed_s"):
                out["minutes"] = float(rows[-1]["elapsed_s"]) / 60
            losses = [float(r["diffusion_loss"]) for r in tail if r.get("diffusion_loss")]
            if losses:
                out["diffusion_loss"] = sum(losses) / len(losses)
    text_use = run_dir / "text_use.csv"
    if text_use.is_file():
        lines = [line.split(",") for line in text_use.read_text().splitlines() if line and line[0].isdigit()]
        if up_to_step is not None:
            lines = [line for line in lines if int(line[0]) <= up_to_step]
        if lines:
            out["penalty"] = float(lines[-1][3])
            out["penalty_step"] = int(lines[-1][0])
            if len(lines[-1]) >= 7:  # train.py also logs the gap in prompt + target rows
                out["continuation_penalty"] = float(lines[-1][6])
    return out


# how rows other than the model's own are named next to an entry's label
ROW_SUFFIX = {"tf": "teacher-forced"}


def table_row(label: str, row: dict, train: dict) -> list[str]:
    training = (
        DASH
        if "steps" not in train
        else f"{train['steps']} steps" + (f", {train['minutes']:.0f} min" if "minutes" in train else "")
    )
    penalty = DASH if "penalty" not in train else f"{100 * train['penalty']:+.1f}% (step {train['penalty_step']})"
    if "continuation_penalty" in train:
        penalty += f"; prompt + target {100 * train['continuation_penalty']:+.1f}%"
    return [
        label,
        training,
        _num(train.get("diffusion_loss")),
        penalty,
        str(row["cases"]) + (f" ({row['failed']} failed)" if row.get("failed") else ""),
        _pct(row.get("wer")),
        _pct(row.get("wer_capped")),
        recognised_cell(row),
        _num(row.get("sim_prompt")),
        _num(row.get("sim_gt")),
        _pct(row.get("stop_rate")),
        _num(row.get("duration_ratio"), 2),
    ]


# ASR settings that do not change what is recognised (how many CPU threads decoded it)
ASR_IRRELEVANT = ("cpu_threads",)


def _asr_value(value) -> str:
    if value is None:
        return "none"
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)


def asr_difference(entries: list[tuple[str, dict | None]]) -> str | None:
    """How the ASR settings (results.json's meta.asr) of labelled entries differ, as "KEY VALUE, ...: LABELS; ..."
    over the settings that differ, or None where they all agree. Entries without recorded settings are left out."""
    known = [(label, settings) for label, settings in entries if settings]
    keys = sorted({key for _, settings in known for key in settings} - set(ASR_IRRELEVANT))
    differing = [key for key in keys if len({_asr_value(settings.get(key)) for _, settings in known}) > 1]
    if not differing:
        return None
    groups: dict[str, list[str]] = {}
    for label, settings in known:
        described = ", ".join(f"{key} {_asr_value(settings.get(key))}" for key in differing)
        groups.setdefault(described, []).append(label)
    return "; ".join(f"{described}: {', '.join(labels)}" for described, labels in groups.items())


def _asr_key(meta: dict) -> str:
    settings = {k: v for k, v in (meta.get("asr") or {}).items() if k not in ASR_IRRELEVANT}
    return json.dumps(settings, sort_keys=True)


def reference_group(row: dict, meta: dict) -> tuple:
    """What a ground-truth row's numbers depend on: the cases, the recogniser and text normaliser that scored them and,
    for the resynthesis, the pipeline's vocoder and features (its settings) - rows alike in all of these are one."""
    group = (row["key"], meta.get("cases_sha256"), _asr_key(meta), text_normalizer_of(meta))
    if row["key"] == "resynth":
        group += (json.dumps(row.get("settings") or {}, sort_keys=True, default=str),)
    return group


def model_sims(results: dict) -> dict[str, float]:
    """Case id -> SIM(prompt) of the model row."""
    sims = {}
    for case in results.get("cases", []):
        row = case.get("rows", {}).get("model")
        if row is not None and row.get("sim_prompt") is not None:
            sims[case["id"]] = row["sim_prompt"]
    return sims


def paired_sim_line(label: str, base_label: str, base: dict[str, float], other: dict[str, float]) -> str | None:
    """Mean per-case SIM change on the cases both systems share, with its standard error and how many went up."""
    shared = sorted(base.keys() & other.keys())
    if len(shared) < 2:
        return None
    diffs = [other[k] - base[k] for k in shared]
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5
    ups = sum(d > 0 for d in diffs)
    return (
        f"- {label} vs {base_label}: SIM (prompt) {mean:+.3f} ± {se:.3f} (standard error, {len(shared)} paired "
        f"cases; higher in {ups} of {len(shared)})"
    )


def read_results(label: str, eval_dir: Path, run_dir: Path | None) -> dict:
    path = eval_dir / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run examples/evaluate.py --out {eval_dir} first")
    if run_dir is not None and not run_dir.is_dir():
        raise SystemExit(f"{label}: the run folder {run_dir} does not exist (LABEL=EVAL_DIR@RUN_DIR)")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SystemExit(f"{path}: not a results.json of examples/evaluate.py ({error})") from None
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise SystemExit(f"{path}: not a results.json of examples/evaluate.py (no 'rows' list)")
    return results


def reference_name(row: dict, labels: list[str], references: dict[tuple, list[str]]) -> str:
    """A ground-truth row's name; where the table has several of its kind, with the entries it belongs to and, for a
    resynthesis, what resynthesised it."""
    if sum(group[0] == row["key"] for group in references) == 1:
        return row["name"]
    source = (row.get("settings") or {}).get("source") if row["key"] == "resynth" else None
    return f"{row['name']}: {', '.join(labels)}" + (f" ({source})" if source else "")


def compare(entries: list[tuple[str, Path, Path | None, int | None]], title: str, intro: str = "") -> str:
    """entries: (label, eval_dir, run_dir or None, step or None) as parse_entry gives them."""
    lines = [f"# {title}", "", *([intro, ""] if intro else [])]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    commands = []
    paired: list[tuple[str, dict[str, float]]] = []
    case_files: dict[str | None, list[str]] = {}
    case_ids: list[tuple[str, frozenset]] = []  # (label, the case ids its results cover)
    normalizers: dict[str, list[str]] = {}  # text normaliser of the WER -> labels
    loaded = [
        (label, run_dir, up_to_step, read_results(label, eval_dir, run_dir))
        for label, eval_dir, run_dir, up_to_step in entries
    ]
    references: dict[tuple, list[str]] = {}  # reference_group -> the labels of the entries that have that row
    for label, _, _, results in loaded:
        for row in results["rows"]:
            if row["key"] in ("gt", "resynth"):
                references.setdefault(reference_group(row, results.get("meta", {})), []).append(label)
    reference_shown: set[tuple] = set()
    for label, run_dir, up_to_step, results in loaded:
        meta = results.get("meta", {})
        cases_file = meta.get("cases_sha256")
        case_files.setdefault(cases_file, []).append(label)
        normalizers.setdefault(text_normalizer_of(meta), []).append(label)
        commands.append(meta.get("command", ""))
        case_ids.append((label, frozenset(case.get("id") for case in results.get("cases", []))))
        paired.append((label, model_sims(results)))
        for row in results["rows"]:
            if row["key"] in ("gt", "resynth"):  # once per what its numbers depend on (reference_group)
                group = reference_group(row, meta)
                if group in reference_shown:
                    continue
                reference_shown.add(group)
                cells = table_row(reference_name(row, references[group], references), row, {})
            else:  # the model row under the entry's label; its teacher-forced row (--rows tf) says so
                name = label if row["key"] == "model" else f"{label}, {ROW_SUFFIX.get(row['key'], row['key'])}"
                cells = table_row(name, row, training_summary(run_dir, up_to_step))
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if len(case_files) > 1:  # different cases: the rows do not compare, and no case pairs with another
        groups = "; ".join(", ".join(labels) for labels in case_files.values())
        warning = f"**The entries were scored on different cases files ({groups}): their rows do not compare.**"
        print(f"warning: {warning.strip('*')}", file=sys.stderr)
        lines[2:2] = [warning, ""]
    elif len({ids for _, ids in case_ids}) > 1:  # one cases file, but e.g. one run with --max-cases: other cases
        counts = ", ".join(f"{label}: {len(ids)} case{'' if len(ids) == 1 else 's'}" for label, ids in case_ids)
        warning = (
            f"**The entries were scored on different cases of one cases file ({counts}): their rows do not compare.**"
        )
        print(f"warning: {warning.strip('*')}", file=sys.stderr)
        lines[2:2] = [warning, ""]
    asr = asr_difference([(label, results.get("meta", {}).get("asr")) for label, _, _, results in loaded])
    if asr:  # one reading heard by two recognisers (or one decoding two ways) gives two WERs
        warning = (
            f"**The entries' WERs were measured with different ASR settings ({asr}): their WER columns do not "
            "compare; evaluate them again with one `--asr-model`, `--asr-temperature-fallback` and "
            "`--asr-redecode-loops`.**"
        )
        print(f"warning: {warning.strip('*')}", file=sys.stderr)
        lines[2:2] = [warning, ""]
    if len(normalizers) > 1:  # one reading scored under two normalisers gives two WERs
        groups = "; ".join(f"{name}: {', '.join(labels)}" for name, labels in normalizers.items())
        warning = (
            f"**The entries' WERs were measured with different text normalisers ({groups}): their WER columns do not "
            "compare; evaluate them again with one `--text-normalizer`.**"
        )
        print(f"warning: {warning.strip('*')}", file=sys.stderr)
        lines[2:2] = [warning, ""]
    lines += [
        "",
        "Training: optimizer steps and wall minutes of the run; train diffusion loss: mean of its last four "
        "logged values; wrong-text penalty: x0 error at t = 1 with a wrong transcript vs the right one on "
        "validation utterances (EMA weights; how much the model uses the text), single utterances and, where "
        "logged, prompt + target rows scored on the target. The other columns are "
        "examples/evaluate.py's (see its results.md).",
        "",
    ]
    lines_paired = []
    if len(case_files) == 1:  # cases pair only within one cases file
        lines_paired = [paired_sim_line(label, paired[0][0], paired[0][1], sims) for label, sims in paired[1:]]
    if any(lines_paired):
        lines += ["Paired per case:", "", *[line for line in lines_paired if line], ""]
    lines += ["Commands:", ""]
    lines += [f"- `{c}`" for c in commands if c]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entries", nargs="+", type=parse_entry, help="LABEL=EVAL_DIR[@RUN_DIR[:STEP]]")
    parser.add_argument("--out", help="markdown file to write (default: print only)")
    parser.add_argument("--title", default="DiTAR evaluation comparison")
    parser.add_argument("--intro", default="", help="a paragraph under the title (what was compared, and how)")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).is_dir():
        parser.error(f"--out {args.out} is a folder: give a markdown file name such as {Path(args.out) / 'compare.md'}")
    text = compare(args.entries, args.title, args.intro)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
