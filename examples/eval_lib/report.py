"""Markdown rendering of the results (the paper-style table plus per-case details)."""

from __future__ import annotations

DASH = "–"

COLUMNS = (
    "system",
    "cases",
    "WER",
    "WER (capped)",
    "words recognised",
    "SIM (prompt)",
    "SIM (GT)",
    "stop rate",
    "duration ratio",
    "mean duration",
    "RTF",
)


def _pct(value) -> str:
    return DASH if value is None else f"{100 * value:.1f}%"


def _num(value, digits: int = 3) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def recognised_cell(row: dict) -> str:
    """ "hits/reference words (percent)" of a results row, or a dash when it has no reference words."""
    return DASH if not row.get("ref_words") else f"{row['hits']}/{row['ref_words']} ({_pct(row['recognised'])})"


# the columns that average a subset of their row's cases (those that have the value), by their results key
COUNTED_COLUMNS = ("sim_prompt", "sim_gt", "stop_rate", "duration_ratio", "mean_seconds", "rtf")


def column_count(row: dict, key: str) -> int | None:
    """How many cases column `key` of a results row averages, where that is not all of the row's cases (None where it
    is, where the column is empty, or for results written before the counts were recorded)."""
    n = row.get(f"{key}_n", row["cases"])
    return n if row.get(key) is not None and n != row["cases"] else None


def _counted(text: str, row: dict, key: str) -> str:
    n = column_count(row, key)
    return text if n is None else f"{text} (n={n})"


def table_row(row: dict) -> list[str]:
    cases = str(row["cases"]) + (f" ({row['failed']} failed)" if row.get("failed") else "")
    return [
        row["name"],
        cases,
        _pct(row.get("wer")),
        _pct(row.get("wer_capped")),
        recognised_cell(row),
        _counted(_num(row.get("sim_prompt")), row, "sim_prompt"),
        _counted(_num(row.get("sim_gt")), row, "sim_gt"),
        _counted(_pct(row.get("stop_rate")), row, "stop_rate"),
        _counted(_num(row.get("duration_ratio"), 2), row, "duration_ratio"),
        _counted(DASH if row.get("mean_seconds") is None else f"{row['mean_seconds']:.2f} s", row, "mean_seconds"),
        _counted(_num(row.get("rtf")), row, "rtf"),
    ]


def case_count_notes(results: dict) -> list[str]:
    """Notes for under the table when its numbers are not all over the same cases: rows scored on different cases
    (only cases with target audio have the ground-truth rows), and columns that average fewer cases than their row."""
    covered: dict[str, set] = {row["key"]: set() for row in results["rows"]}
    for case in results.get("cases", []):
        for key in case.get("rows", {}):
            covered.setdefault(key, set()).add(case["id"])
    groups: dict[frozenset, list[str]] = {}
    for row in results["rows"]:
        groups.setdefault(frozenset(covered[row["key"]]), []).append(row["name"])
    notes = []
    if len(groups) > 1:
        parts = "; ".join(
            f"{', '.join(names)}: {len(ids)} case{'' if len(ids) == 1 else 's'}" for ids, names in groups.items()
        )
        notes.append(
            f"**The rows were scored on different cases** ({parts}): the ground-truth, resynthesised and "
            "teacher-forced rows score only the cases with target audio, so their numbers and the others' are not "
            "over the same texts and voices; compare them case by case (per-case table), or on a cases file where "
            "every case has target audio."
        )
    if any(column_count(row, key) is not None for row in results["rows"] for key in COUNTED_COLUMNS):
        notes.append(
            "(n=K): that column averages K of its row's cases, those that have its value: SIM (GT) and the duration "
            "ratio need target audio, a clip too short to embed has no SIM, and a failed case has no duration, stop or "
            "RTF."
        )
    return notes


def text_normalizer_of(meta: dict | None) -> str:
    """The text normaliser a results.json's WER was measured with, as one label. Results written before
    evaluate.py had `--text-normalizer` all used "basic"; a Whisper one names its spelling map's digest, as another
    map is another instrument."""
    described = (meta or {}).get("text_normalizer") or {"name": "basic"}
    label = described.get("name", "basic")
    if described.get("spelling_map_sha256"):
        label += f" (spelling map {described['spelling_map_sha256'][:12]})"
    return label


WER_NORMALIZATION = {
    "basic": "after lowercasing and stripping punctuation (text normaliser basic: spellings, contractions, numbers "
    'and symbols compared as written, so "harbour" heard as "harbor" or "I\'m" as "I am" counts as an error)',
    "whisper": "after Whisper's English text normaliser (text normaliser whisper: contractions expanded, numbers, "
    "currency and percentages as digits and symbols, British spellings as American, fillers dropped)",
}


def _normalizer_line(meta: dict) -> str:
    described = meta.get("text_normalizer") or {"name": "basic"}
    if described.get("name") == "whisper":
        return (
            f"- WER text normaliser: whisper ({described.get('engine', '?')}, spelling map "
            f"`{described.get('spelling_map', '?')}`, {described.get('spelling_map_entries', '?')} entries)"
        )
    return f"- WER text normaliser: {described.get('name', 'basic')} (lowercase, punctuation stripped)"


def render_quality_table(rows: list[dict]) -> str:
    """DNSMOS P.808 and P.835 SIG/BAK/OVRL per row (rows scored with `--dnsmos`)."""
    lines = ["| row | clips | P.808 | SIG | BAK | OVRL |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [_num(r.get(f"dnsmos_{k}"), 2) for k in ("p808", "sig", "bak", "ovrl")]
        lines.append(f"| {r['name']} | {r.get('dnsmos_n', 0)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in table_row(r)) + " |" for r in rows]
    return "\n".join(lines)


def render_case_table(results: dict, max_chars: int = 90) -> str:
    lines = [
        "| case | system | WER | hits | SIM (prompt) | seconds | stopped | transcript |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in results["cases"]:
        for key, row in case["rows"].items():
            words = row["words"]
            hyp = row.get("hypothesis") or ""
            hyp = hyp if len(hyp) <= max_chars else hyp[: max_chars - 1] + "…"
            if row.get("error"):
                hyp = f"ERROR {row['error']}"[:max_chars]
            stopped = DASH if row.get("stopped") is None else str(row["stopped"])
            lines.append(
                "| "
                + " | ".join(
                    x.replace("|", "\\|")
                    for x in [
                        case["id"],
                        key,
                        _pct(words.get("wer")),
                        f"{words['hits']}/{words['ref_words']}",
                        _num(row.get("sim_prompt")),
                        f"{row.get('seconds', 0.0):.2f}",
                        stopped,
                        hyp,
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def render_markdown(results: dict, per_case: bool = True) -> str:
    """The whole report: what was run, the results table, notes, and (optionally) one line per case and system."""
    meta = results.get("meta", {})
    out = ["# DiTAR zero-shot evaluation", ""]
    if meta:
        out += [
            f"- command: `{meta.get('command', '')}`",
            f"- cases: `{meta.get('cases_file', '')}` ({meta.get('num_cases', '?')} cases)",
            f"- ASR: {meta.get('asr', {}).get('engine', '?')} ({meta.get('asr', {}).get('model_dir', '')}); "
            f"speaker similarity: {meta.get('speaker', {}).get('engine', '?')}",
            _normalizer_line(meta),
            f"- date: {meta.get('date', '')}, threads: {meta.get('threads', '?')}, "
            f"wall time: {meta.get('wall_seconds', 0):.1f} s",
            "",
        ]
        model = next((r for r in results["rows"] if r["key"] == "model"), None)
        if model is not None:
            s = model["settings"]
            out += [
                f"- {model['name']}: `{s.get('source', '')}`, steps {s.get('num_inference_steps')}, "
                f"guidance {s.get('guidance_scale')}, temperature {s.get('temperature')}, "
                f"candidates {s.get('num_candidates')}, prompt spectrum match {s.get('prompt_spectrum_match', 0.0)}, "
                f"seed {s.get('seed')}",
                "",
            ]
    out += [render_table(results["rows"]), ""]
    for note in case_count_notes(results):
        out += [note, ""]
    if any("dnsmos_ovrl" in r for r in results["rows"]):
        out += [
            "Naturalness and artefacts (DNSMOS, mean over the scored clips):",
            "",
            render_quality_table(results["rows"]),
            "",
        ]
    normalizer = (meta.get("text_normalizer") or {}).get("name", "basic")
    out += [
        f"WER: corpus-level (errors / reference words) {WER_NORMALIZATION.get(normalizer, normalizer)}; "
        "WER (capped): each utterance's errors capped at its reference length (Whisper hallucinates on babble); "
        "words recognised: ASR hits / reference words. SIM: Resemblyzer cosine to the prompt audio (prompt) and to "
        "the ground-truth target (GT). Duration ratio: output / ground-truth seconds, mean over cases. RTF: compute "
        "seconds / output audio seconds (model: the whole pipeline call; resynthesis: features + vocoder).",
        "",
    ]
    if per_case:
        out += ["## Per case", "", render_case_table(results), ""]
    return "\n".join(out)
