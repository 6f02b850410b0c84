#!/usr/bin/env python
"""Paired comparison of two `examples/evaluate.py` runs of the model row on the same cases: B minus A per case.

    python examples/research/paired_eval.py outputs/eval/A/results.json outputs/eval/B/results.json [--row resynth]

Prints the sums over cases of the differences in words recognised and in capped errors (each case's errors capped at
its number of words) with the standard error of the paired sum, the mean SIM(prompt) difference with its standard
error, the mean DNSMOS P.808 and OVRL differences (when both runs have them, `--dnsmos`), the ratio of summed compute
seconds (B / A; only meaningful when both ran under the same load) and B's stops. `--row` pairs another row than
`model` (e.g. `resynth`, for two vocoders).

A case that failed counts as evaluate.py's table counts it: as silence (its row holds the word counts of an empty
transcript, every reference word missed); it has no SIM, DNSMOS, compute time or stop, so those pair over the cases
that have them, and the line says how many failed in each run. Runs of different cases files are refused; runs of
different cases of one file (e.g. one with --max-cases) pair on the cases both have, and the line says so.
"""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_results import asr_difference  # noqa: E402
from eval_lib.report import text_normalizer_of  # noqa: E402


def rows_of(results: dict, row: str = "model") -> dict:
    """Case id -> the case's `row` row of a results.json, failed cases included: evaluate.py stored a failed case's
    word counts as those of silence (eval_lib.runner), which is how its table counts it."""
    return {c["id"]: c["rows"][row] for c in results["cases"] if row in c["rows"]}


def paired(a: dict, b: dict, ids: list, value) -> tuple[float, float, float, float]:
    """(sum, standard error of the sum, mean, standard error of the mean) of value(b) - value(a) over ids."""
    diffs = [value(b[i]) - value(a[i]) for i in ids]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    return sum(diffs), sd * math.sqrt(len(diffs)), mean, sd / math.sqrt(len(diffs))


def check_same_cases(paths: list[str], results: list[dict]) -> None:
    """Refuse two runs of different cases files: their case ids can coincide (ids such as split-number-speaker
    repeat across seeds) while the texts and voices behind them differ, so their per-case differences mean nothing."""
    metas = [r.get("meta") or {} for r in results]
    digests = [meta.get("cases_sha256") for meta in metas]
    if None not in digests and digests[0] != digests[1]:
        files = " and ".join(
            f"{meta.get('cases_file') or 'a cases file'} (sha256 {d[:12]})"
            for meta, d in zip(metas, digests, strict=True)
        )
        raise SystemExit(
            f"error: {paths[0]} and {paths[1]} were scored on different cases files, {files}: their cases do not "
            "pair; evaluate both on one cases file"
        )
    texts = [{c["id"]: c.get("target_text") for c in r["cases"]} for r in results]
    for case_id in sorted(texts[0].keys() & texts[1].keys()):
        a, b = texts[0][case_id], texts[1][case_id]
        if a is not None and b is not None and a != b:
            raise SystemExit(
                f"error: {paths[0]} and {paths[1]} were scored on different cases: case {case_id} asks for {a!r} in "
                f"the first and {b!r} in the second; evaluate both on one cases file"
            )


def warn_of_other_instruments(results: list[dict]) -> None:
    """One reading scored under two text normalisers or two recognisers gives two different word counts."""
    metas = [r.get("meta") for r in results]
    normalizers = [text_normalizer_of(meta) for meta in metas]
    if normalizers[0] != normalizers[1]:
        print(
            f"warning: A's WER was measured with text normaliser {normalizers[0]}, B's with {normalizers[1]}: their "
            "words and errors do not compare; evaluate them again with one --text-normalizer",
            file=sys.stderr,
        )
    asr = asr_difference([(arm, (meta or {}).get("asr")) for arm, meta in zip("AB", metas, strict=True)])
    if asr:
        print(
            f"warning: A's and B's words were recognised with different ASR settings ({asr}): their words and "
            "errors do not compare; evaluate them again with one --asr-model, --asr-temperature-fallback and "
            "--asr-redecode-loops",
            file=sys.stderr,
        )


def main(argv: list[str]) -> str:
    row = "model"
    if len(argv) == 4 and argv[2] == "--row":
        row, argv = argv[3], argv[:2]
    if len(argv) != 2:
        raise SystemExit("usage: paired_eval.py A/results.json B/results.json [--row ROW]")
    results = [json.loads(Path(path).read_text()) for path in argv]
    check_same_cases(argv, results)
    warn_of_other_instruments(results)
    a, b = rows_of(results[0], row), rows_of(results[1], row)
    ids = sorted(set(a) & set(b))
    if len(ids) < 2:
        raise SystemExit(f"only {len(ids)} case(s) in both runs: nothing to pair")
    overlap = ""
    if len(ids) < max(len(a), len(b)):  # e.g. one run with --max-cases: the others' cases are not in this line
        overlap = f" (only those in both: A has {len(a)}, B {len(b)})"
        print(
            f"note: A has {len(a)} cases with a {row} row, B {len(b)}: only the {len(ids)} cases both have are "
            "paired (was one run made with --max-cases?)",
            file=sys.stderr,
        )
    failed = [sum(bool(run[i].get("error")) for i in ids) for run in (a, b)]
    failures = ""
    if any(failed):
        failures = (
            f" (failed: A {failed[0]}, B {failed[1]}, scored as silence as evaluate.py does: every reference word "
            "missed, no SIM, DNSMOS, compute time or stop)"
        )
    hits = paired(a, b, ids, lambda r: r["words"]["hits"])
    errors = paired(a, b, ids, lambda r: min(r["words"]["errors"], r["words"]["ref_words"]))
    # a clip too short to embed (a row that stopped at once) or a failed case has no SIM: pair SIM over the cases
    # where both have one
    sim_ids = [i for i in ids if a[i].get("sim_prompt") is not None and b[i].get("sim_prompt") is not None]
    sim_cases = "" if len(sim_ids) == len(ids) else f" ({len(sim_ids)} cases with SIM in both)"
    if len(sim_ids) >= 2:
        sim = paired(a, b, sim_ids, lambda r: r["sim_prompt"])
        sim_text = f"SIM {sim[2]:+.3f} ± {sim[3]:.3f}{sim_cases}"
    else:  # e.g. a vocoder whose clips are all too short or silent to embed
        sim_text = f"SIM not paired{sim_cases}"
    quality = ""
    quality_ids = [i for i in ids if a[i].get("dnsmos") and b[i].get("dnsmos")]
    if len(quality_ids) >= 2:
        p808 = paired(a, b, quality_ids, lambda r: r["dnsmos"]["p808"])
        ovrl = paired(a, b, quality_ids, lambda r: r["dnsmos"]["ovrl"])
        quality_cases = "" if len(quality_ids) == len(ids) else f" ({len(quality_ids)} cases with DNSMOS in both)"
        quality = f"DNSMOS P.808 {p808[2]:+.3f} ± {p808[3]:.3f}, OVRL {ovrl[2]:+.3f} ± {ovrl[3]:.3f}{quality_cases}, "
    text = (
        f"{len(ids)} cases{overlap}{failures}: words {hits[0]:+.0f} ± {hits[1]:.0f}, capped errors {errors[0]:+.0f} "
        f"± {errors[1]:.0f}, {sim_text}, {quality}"
    )
    compute_ids = [i for i in ids if a[i].get("compute_seconds") and b[i].get("compute_seconds")]
    if compute_ids:
        compute = sum(b[i]["compute_seconds"] for i in compute_ids) / sum(a[i]["compute_seconds"] for i in compute_ids)
        text += f"compute {compute:.2f}x" + ("" if len(compute_ids) == len(ids) else f" ({len(compute_ids)} cases)")
        text += ", "
    # rows without a stop head (teacher-forced, resynthesised) and failed cases have stopped None: no stop to count
    stop_ids = [i for i in ids if b[i].get("stopped") is not None]
    if stop_ids:
        text += f"stopped {sum(bool(b[i]['stopped']) for i in stop_ids)}/{len(stop_ids)}"
    return text.rstrip(", ")


if __name__ == "__main__":
    print(main(sys.argv[1:]))
