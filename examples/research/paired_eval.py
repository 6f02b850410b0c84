#!/usr/bin/env python
"""Paired comparison of two `examples/evaluate.py` runs of the model row on the same cases: B minus A per case.

    python examples/research/paired_eval.py outputs/eval/A/results.json outputs/eval/B/results.json [--row resynth]

Prints the sums over cases of the differences in words recognised and in capped errors (each case's errors capped at
its number of words) with the standard error of the paired sum, the mean SIM(prompt) difference with its standard
error, the mean DNSMOS P.808 and OVRL differences (when both runs have them, `--dnsmos`), the ratio of summed compute
seconds (B / A; only meaningful when both ran under the same load) and B's stops. `--row` pairs another row than
`model` (e.g. `resynth`, for two vocoders).
"""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval_lib.report import text_normalizer_of  # noqa: E402


def load(path: str, row: str = "model") -> dict:
    data = json.load(open(path))
    return {c["id"]: c["rows"][row] for c in data["cases"] if row in c["rows"] and c["rows"][row].get("error") is None}


def paired(a: dict, b: dict, ids: list, value) -> tuple[float, float, float, float]:
    """(sum, standard error of the sum, mean, standard error of the mean) of value(b) - value(a) over ids."""
    diffs = [value(b[i]) - value(a[i]) for i in ids]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    return sum(diffs), sd * math.sqrt(len(diffs)), mean, sd / math.sqrt(len(diffs))


def main(argv: list[str]) -> str:
    row = "model"
    if len(argv) == 4 and argv[2] == "--row":
        row, argv = argv[3], argv[:2]
    if len(argv) != 2:
        raise SystemExit("usage: paired_eval.py A/results.json B/results.json [--row ROW]")
    a, b = load(argv[0], row), load(argv[1], row)
    normalizers = [text_normalizer_of(json.loads(Path(path).read_text()).get("meta")) for path in argv]
    if normalizers[0] != normalizers[1]:  # one reading scored under two normalisers: its words and errors differ
        print(
            f"warning: A's WER was measured with text normaliser {normalizers[0]}, B's with {normalizers[1]}: their "
            "words and errors do not compare; evaluate them again with one --text-normalizer",
            file=sys.stderr,
        )
    ids = sorted(set(a) & set(b))
    if len(ids) < 2:
        raise SystemExit(f"only {len(ids)} case(s) in both runs: nothing to pair")
    hits = paired(a, b, ids, lambda r: r["words"]["hits"])
    errors = paired(a, b, ids, lambda r: min(r["words"]["errors"], r["words"]["ref_words"]))
    # a clip too short to embed (a row that stopped at once) has no SIM: pair SIM over the cases where both have one
    sim_ids = [i for i in ids if a[i].get("sim_prompt") is not None and b[i].get("sim_prompt") is not None]
    sim_cases = "" if len(sim_ids) == len(ids) else f" ({len(sim_ids)} cases with SIM in both)"
    if len(sim_ids) >= 2:
        sim = paired(a, b, sim_ids, lambda r: r["sim_prompt"])
        sim_text = f"SIM {sim[2]:+.3f} ± {sim[3]:.3f}{sim_cases}"
    else:  # e.g. a vocoder whose clips are all too short or silent to embed
        sim_text = f"SIM not paired{sim_cases}"
    quality = ""
    if all(a[i].get("dnsmos") and b[i].get("dnsmos") for i in ids):
        p808 = paired(a, b, ids, lambda r: r["dnsmos"]["p808"])
        ovrl = paired(a, b, ids, lambda r: r["dnsmos"]["ovrl"])
        quality = f"DNSMOS P.808 {p808[2]:+.3f} ± {p808[3]:.3f}, OVRL {ovrl[2]:+.3f} ± {ovrl[3]:.3f}, "
    text = (
        f"{len(ids)} cases: words {hits[0]:+.0f} ± {hits[1]:.0f}, capped errors {errors[0]:+.0f} ± {errors[1]:.0f}, "
        f"{sim_text}, {quality}"
    )
    if all(a[i].get("compute_seconds") and b[i].get("compute_seconds") for i in ids):
        compute = sum(b[i]["compute_seconds"] for i in ids) / sum(a[i]["compute_seconds"] for i in ids)
        text += f"compute {compute:.2f}x, "
    if all("stopped" in b[i] for i in ids):
        text += f"stopped {sum(bool(b[i]['stopped']) for i in ids)}/{len(ids)}"
    return text.rstrip(", ")


if __name__ == "__main__":
    print(main(sys.argv[1:]))
