#!/usr/bin/env python
"""How sharp is the speech a corpus teaches, by source and acoustic condition?

    python examples/research/corpus_sharpness_probe.py data/cpu_natural_corpus --max-rows 1500

The same three numbers as `feature_smoothness_probe.py` (delta: mean absolute frame-to-frame change; spread: per-bin
standard deviation over time; contour: standard deviation of the frame mean), on a random sample of a corpus's
training features, normalised with a pipeline's feature statistics as the model reads them. Rows are grouped by
source (espeak-ng or natural) and by the conditions `examples/build_corpus.py` wrote into their `voice` column (room,
noise, phone; level changes count as clean). A model learns the sharpness of what it is trained on: set the groups
next to the probe's numbers for generated speech.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/
from corpus.natural import conditions_in  # noqa: E402
from feature_smoothness_probe import sharpness  # noqa: E402


def group_of(voice: str, source: str) -> tuple[str, str]:
    named = conditions_in(voice)
    conditions = [name for name in ("room", "noise", "phone") if name in named]
    return ("espeak" if source == "espeak" else "natural"), "+".join(conditions) or "clean"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="a corpus folder of examples/build_corpus.py built with --features")
    parser.add_argument("--pipeline", default="modeling_ditar/default", help="whose feature statistics normalise")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-rows", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from datasets import load_from_disk

    from modeling_ditar import DiTARPipeline

    model = DiTARPipeline.from_pretrained(args.pipeline).model
    rows = load_from_disk(args.corpus)[args.split].select_columns(["voice", "source", "features"])
    order = np.random.default_rng(args.seed).permutation(len(rows))[: args.max_rows]
    groups = collections.defaultdict(list)
    for index in order:
        row = rows[int(index)]
        source, condition = group_of(row["voice"], row["source"])
        values = sharpness(model.normalize_features(torch.tensor(row["features"]).float()))
        for key in (f"{source}, {condition}", f"{source}, all", "all"):
            groups[key].append(values)
    print("| rows | n | delta | spread | contour |")
    print("|---|---|---|---|---|")
    for key, values in sorted(groups.items()):
        a = np.array(values)
        sem = a[:, 0].std() / len(a) ** 0.5
        print(f"| {key} | {len(a)} | {a[:, 0].mean():.3f} ± {sem:.3f} | {a[:, 1].mean():.3f} | {a[:, 2].mean():.3f} |")


if __name__ == "__main__":
    main()
