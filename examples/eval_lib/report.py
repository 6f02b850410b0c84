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


def table_row(row: dict) -> list[str]:
    cases = str(row["cases"]) + (f" ({row['failed']} failed)" if row.get("failed") else "")
    sim = _num(row.get("sim_prompt"))
    if row.get("sim_prompt") is not None and row.get("sim_prompt_n", row["cases"]) != row["cases"]:
        sim += f" (n={row['sim_prompt_n']})"
    return [
        row["name"],
        cases,
        _pct(row.get("wer")),
        _pct(row.get("wer_capped")),
        recognised_cell(row),
        sim,
        _num(row.get("sim_gt")),
        _pct(row.get("stop_rate")),
        _num(row.get("duration_ratio"), 2),
        DASH if row.get("mean_seconds") is None else f"{row['mean_seconds']:.2f} s",
        _num(row.get("rtf")),
    ]


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
    if any("dnsmos_ovrl" in r for r in results["rows"]):
        out += [
            "Naturalness and artefacts (DNSMOS, mean over the scored clips):",
            "",
            render_quality_table(results["rows"]),
            "",
        ]
    out += [
        "WER: corpus-level (errors / reference words) after lowercasing and stripping punctuation; "
        "WER (capped): each utterance's errors capped at its reference length (Whisper hallucinates on babble); "
        "words recognised: ASR hits / reference words. SIM: Resemblyzer cosine to the prompt audio (prompt) and to "
        "the ground-truth target (GT). Duration ratio: output / ground-truth seconds, mean over cases. RTF: compute "
        "seconds / output audio seconds (model: the whole pipeline call; resynthesis: features + vocoder).",
        "",
    ]
    if per_case:
        out += ["## Per case", "", render_case_table(results), ""]
    return "\n".join(out)
