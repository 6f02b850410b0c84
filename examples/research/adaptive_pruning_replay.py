#!/usr/bin/env python
"""Replay an adaptive pruning policy on `candidate_pruning_probe.py` outputs, without generating again.

    python examples/research/adaptive_pruning_replay.py outputs/arms/margin/*/candidates.json --early 6 --late 12 \\
        --margins 0,0.05,0.1,0.2,0.4,inf

Policy M(m): after `--early` patches, a text keeps its best candidate at once when the runner-up's prefix score
(`transcript_prefix_ctc_loss`, lower is better) is worse by at least m; otherwise it waits for `--late` patches, as
the fixed policy does. m = inf is the fixed policy; m = 0 always prunes early. A text whose candidate finished before
a pruning point is ranked whole there, as in generation. Streaming can play a text pruned early after
max(early, 7) patches instead of `late` (its first chunk needs 5 patches plus 2 of look-ahead).

For each margin and each probe file (and pooled): the share of texts pruned early, words recognised and capped errors
against the fixed policy (paired sums over cases, ± their standard error).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def choice(record: dict, early: int, late: int, margin: float) -> tuple[int, bool]:
    """(kept candidate, pruned early?) under M(margin)."""
    scores = record["prefix_scores"].get(f"N={early}")
    if scores is not None and margin != math.inf:
        ranked = sorted(scores)
        if ranked[1] - ranked[0] >= margin:
            return record["choices"][f"N={early}"], True
    return record["choices"][f"N={late}"], False


def paired_sum(diffs: list[float]) -> tuple[float, float]:
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    return sum(diffs), sd * math.sqrt(n)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probes", nargs="+", help="candidates.json files of candidate_pruning_probe.py")
    parser.add_argument("--early", type=int, default=6)
    parser.add_argument("--late", type=int, default=12)
    parser.add_argument("--margins", default="0,0.05,0.1,0.2,0.4,inf")
    parser.add_argument(
        "--margin-quantiles",
        default=None,
        help="instead of --margins: these quantiles of the pooled runner-up margins after --early patches (plus 0 and "
        "inf), so the grid follows the scores' scale without looking at the words",
    )
    args = parser.parse_args(argv)
    sets = {Path(p).parent.name: json.loads(Path(p).read_text())["cases"] for p in args.probes}
    sets["pooled"] = [r for records in list(sets.values()) for r in records]
    if args.margin_quantiles:
        gaps = sorted(
            sorted(scores)[1] - sorted(scores)[0]
            for r in sets["pooled"]
            if (scores := r["prefix_scores"].get(f"N={args.early}")) is not None
        )
        quantiles = [float(q) for q in args.margin_quantiles.split(",")]
        margins = [0.0, *(gaps[min(len(gaps) - 1, int(q * len(gaps)))] for q in quantiles), math.inf]
        print(f"runner-up margins after {args.early} patches ({len(gaps)} texts): quantiles {quantiles} -> "
              f"{[round(m, 4) for m in margins[1:-1]]}")  # fmt: skip
    else:
        margins = [float(m) for m in args.margins.split(",")]
    print(f"M(m): prune after {args.early} patches when the runner-up is worse by >= m, else after {args.late}")
    print("| set | m | pruned early | words vs fixed | capped errors vs fixed |")
    print("|---|---|---|---|---|")
    for name, records in sets.items():
        for margin in margins:
            fixed = [r["choices"][f"N={args.late}"] for r in records]
            picks = [choice(r, args.early, args.late, margin) for r in records]
            hits = [
                r["candidates"][p]["hits"] - r["candidates"][f]["hits"]
                for r, (p, _), f in zip(records, picks, fixed, strict=True)
            ]
            errors = [
                r["candidates"][p]["capped_errors"] - r["candidates"][f]["capped_errors"]
                for r, (p, _), f in zip(records, picks, fixed, strict=True)
            ]
            early = sum(e for _, e in picks)
            h, hs = paired_sum(hits)
            e, es = paired_sum(errors)
            print(f"| {name} | {margin:g} | {early}/{len(records)} | {h:+.0f} ± {hs:.0f} | {e:+.0f} ± {es:.0f} |")


if __name__ == "__main__":
    main()
