#!/usr/bin/env python
"""Paired comparison of two `examples/evaluate.py` runs of the model row on the same cases: B minus A per case.

    python examples/research/paired_eval.py outputs/eval/A/results.json outputs/eval/B/results.json

Prints the sums over cases of the differences in words recognised and in capped errors (each case's errors capped at
its number of words) with the standard error of the paired sum, the mean SIM(prompt) difference with its standard
error, the ratio of summed compute seconds (B / A; only meaningful when both ran under the same load) and B's stops.
"""

import json
import math
import sys


def load(path: str) -> dict:
    data = json.load(open(path))
    return {c["id"]: c["rows"]["model"] for c in data["cases"] if c["rows"].get("model", {}).get("error") is None}


def paired(a: dict, b: dict, ids: list, value) -> tuple[float, float, float, float]:
    """(sum, standard error of the sum, mean, standard error of the mean) of value(b) - value(a) over ids."""
    diffs = [value(b[i]) - value(a[i]) for i in ids]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    return sum(diffs), sd * math.sqrt(len(diffs)), mean, sd / math.sqrt(len(diffs))


def main(argv: list[str]) -> str:
    if len(argv) != 2:
        raise SystemExit("usage: paired_eval.py A/results.json B/results.json")
    a, b = load(argv[0]), load(argv[1])
    ids = sorted(set(a) & set(b))
    if len(ids) < 2:
        raise SystemExit(f"only {len(ids)} case(s) in both runs: nothing to pair")
    hits = paired(a, b, ids, lambda r: r["words"]["hits"])
    errors = paired(a, b, ids, lambda r: min(r["words"]["errors"], r["words"]["ref_words"]))
    sim = paired(a, b, ids, lambda r: r["sim_prompt"])
    compute = sum(b[i]["compute_seconds"] for i in ids) / sum(a[i]["compute_seconds"] for i in ids)
    stopped = sum(bool(b[i]["stopped"]) for i in ids)
    return (
        f"{len(ids)} cases: words {hits[0]:+.0f} ± {hits[1]:.0f}, capped errors {errors[0]:+.0f} ± {errors[1]:.0f}, "
        f"SIM {sim[2]:+.3f} ± {sim[3]:.3f}, compute {compute:.2f}x, stopped {stopped}/{len(ids)}"
    )


if __name__ == "__main__":
    print(main(sys.argv[1:]))
