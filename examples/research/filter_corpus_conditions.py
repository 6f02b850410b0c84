#!/usr/bin/env python
"""Copy a corpus without the utterances recorded under some acoustic conditions.

    python examples/research/filter_corpus_conditions.py data/cpu_natural_corpus data/cpu_natural_corpus_clean \\
        --drop room,noise,phone

`examples/build_corpus.py` (and the natural-voice packs it merges) writes each utterance's condition into its `voice`
column (`... | room rt60=... | noise color=... snr_db=... | phone ... | level ...`). This keeps the rows whose voice
names none of the dropped conditions (with --keep-fraction, also a drawn share of the speakers that do), in every
split, and copies the corpus's other files (feature extractor, feature statistics, summary) unchanged, so a config can
point at the copy instead of the original. Used to test whether the conditions themselves change what a model learns,
at the same speakers, sentences and features.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/
from corpus.natural import conditions_in, parse_condition_names  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="a corpus folder of examples/build_corpus.py")
    parser.add_argument("out", help="the folder to write (must not exist)")
    parser.add_argument("--drop", default="room,noise,phone", help="comma-separated conditions to leave out")
    parser.add_argument(
        "--keep-fraction",
        type=float,
        default=0.0,
        help="keep this share of the dropped conditions' speakers (drawn by speaker id with --seed): a lower rate of "
        "the conditions instead of none",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args(argv)
    from datasets import load_from_disk

    source, out = Path(args.corpus), Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; remove it or choose another --out folder")
    try:
        conditions = set(parse_condition_names(args.drop, "--drop"))
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if not 0.0 <= args.keep_fraction <= 1.0:
        raise SystemExit(f"--keep-fraction {args.keep_fraction}: choose a share between 0 and 1")
    corpus = load_from_disk(str(source))

    def keep(voice: str, speaker: str) -> bool:  # a speaker's utterances share its condition: keep or drop them all
        if not conditions_in(voice) & conditions:
            return True
        digest = hashlib.sha256(f"{args.seed}:{speaker}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < args.keep_fraction

    kept = corpus.filter(keep, input_columns=["voice", "speaker_id"], num_proc=args.num_proc)
    kept.save_to_disk(str(out))
    for item in source.iterdir():  # everything but the splits and the dataset's own index
        if item.name not in corpus and item.name != "dataset_dict.json":
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
    names = ", ".join(sorted(conditions))
    share = f"{args.keep_fraction:.0%} of their speakers kept"
    for split in corpus:
        print(f"{split}: kept {kept[split].num_rows} of {corpus[split].num_rows} rows ({names}: {share})")


if __name__ == "__main__":
    main()
