#!/usr/bin/env python
"""Copy a corpus without the utterances recorded under some acoustic conditions.

    python examples/research/filter_corpus_conditions.py data/cpu_natural_corpus data/cpu_natural_corpus_clean \\
        --drop room,noise,phone

`examples/build_corpus.py` (and the natural-voice packs it merges) writes each utterance's condition into its `voice`
column (`... | room rt60=... | noise color=... snr_db=... | phone ... | level ...`). This keeps the rows whose voice
names none of the dropped conditions, every split, and copies the corpus's other files (feature extractor, feature
statistics, summary) unchanged, so a config can point at the copy instead of the original. Used to test whether the
conditions themselves change what a model learns, at the same speakers, sentences and features.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def has_condition(voice: str, conditions: list[str]) -> bool:
    return any(f"| {name} " in voice for name in conditions)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="a corpus folder of examples/build_corpus.py")
    parser.add_argument("out", help="the folder to write (must not exist)")
    parser.add_argument("--drop", default="room,noise,phone", help="comma-separated conditions to leave out")
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args(argv)
    from datasets import load_from_disk

    source, out = Path(args.corpus), Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; remove it or choose another --out folder")
    conditions = [c.strip() for c in args.drop.split(",") if c.strip()]
    corpus = load_from_disk(str(source))
    kept = corpus.filter(
        lambda voice: not has_condition(voice, conditions), input_columns="voice", num_proc=args.num_proc
    )
    kept.save_to_disk(str(out))
    for item in source.iterdir():  # everything but the splits and the dataset's own index
        if item.name not in corpus and item.name != "dataset_dict.json":
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
    for split in corpus:
        print(f"{split}: kept {kept[split].num_rows} of {corpus[split].num_rows} rows without {', '.join(conditions)}")


if __name__ == "__main__":
    main()
