"""What the best-of-K judge probes share: ranks, and the table of what each selection keeps against the CTC head.

Each probe reads the candidates `candidate_ranking_probe.py --save-candidates` wrote (Whisper's counts and
Resemblyzer's SIM per candidate: they measure, they never choose) and names, per case, the candidate each of its
selections keeps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def ranks(values: list[float]) -> list[int]:
    """Rank of each value, 0 for the smallest (ties keep their order)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0] * len(values)
    for rank, i in enumerate(order):
        out[i] = rank
    return out


def rank_sum_pick(first: list[float], second: list[float]) -> int:
    """The candidate with the lowest sum of its ranks under two scores (lower = better), ties to the first score."""
    a, b = ranks(first), ranks(second)
    return min(range(len(first)), key=lambda i: (a[i] + b[i], a[i]))


def oracle_pick(candidates: list[dict]) -> int:
    """The candidate with the fewest Whisper errors (the most any judge of these candidates could keep)."""
    return min(range(len(candidates)), key=lambda i: (candidates[i]["errors"], -candidates[i]["hits"]))


def selection_table(records: list[dict], picks: Callable[[list[dict]], dict[str, int]]) -> str:
    """Words recognised, WER and SIM of what each selection keeps, each paired per case against the selection named
    "CTC head" (SE of the sum of the word differences, SE of the mean SIM difference)."""
    chosen: dict[str, list[dict]] = {}
    for record in records:
        for name, index in picks(record["candidates"]).items():
            chosen.setdefault(name, []).append(record["candidates"][index])
    ref = sum(c["ref_words"] for c in chosen["CTC head"])
    base_hits = np.array([c["hits"] for c in chosen["CTC head"]], dtype=float)
    base_sim = np.array([c["sim"] for c in chosen["CTC head"]], dtype=float)
    lines = [
        "| selection | words recognised | WER | SIM (prompt) | words vs CTC head (± SE of the sum) | SIM vs CTC head |",
        "|---|---|---|---|---|---|",
    ]
    for name, cands in chosen.items():
        hits = np.array([c["hits"] for c in cands], dtype=float)
        sims = np.array([c["sim"] for c in cands], dtype=float)
        errors = sum(c["errors"] for c in cands)
        dh, ds = hits - base_hits, sims - base_sim
        se_words, se_sim = dh.std(ddof=1) * math.sqrt(len(dh)), ds.std(ddof=1) / math.sqrt(len(ds))
        lines.append(
            f"| {name} | {hits.sum():.0f}/{ref} ({hits.sum() / ref:.1%}) | {errors / ref:.1%} | {sims.mean():.3f} | "
            f"{dh.sum():+.0f} ± {se_words:.0f} | {ds.mean():+.4f} ± {se_sim:.4f} |"
        )
    return "\n".join(lines) + "\n"
