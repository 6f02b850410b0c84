#!/usr/bin/env python
"""Rebuild only the validation and test splits of a synthetic corpus, exactly as `build_corpus.py` plans them for the
full corpus (same sentences, voices and speeds), without synthesising the train split.

    python examples/research/build_eval_splits.py --out data/eval_corpus --num-train-speakers 400 \
        --utts-per-speaker 25 --sampling-rate 16000 --num-proc 2

Every argument is `build_corpus.py`'s; the plan is made for all splits (so the random streams match the full corpus)
and the train split is emptied before synthesis. Then build cases with `evaluate.py --make-cases-from`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import build_corpus  # noqa: E402

plan_all_splits = build_corpus.plan_synthetic


def plan_without_train(args, sentences, bank):
    plan = plan_all_splits(args, sentences, bank)
    plan["train"] = []
    return plan


if __name__ == "__main__":
    build_corpus.plan_synthetic = plan_without_train
    build_corpus.main()
