#!/usr/bin/env python
"""Per-channel mean and standard deviation of a VAE's latents over a dataset: the feature statistics of a DiTAR model
that works on VAE latents (the paper's 64-dim latents) instead of log-mel.

    python conversion/vae_latent_stats.py --vae path/to/stable-audio-open-1.0/vae --corpus data/corpus \\
        --out data/vae_stats.json
    python conversion/vae_latent_stats.py --vae my_vae --audio-dir wavs/ --out stats.json

--corpus reads a dataset written by examples/build_corpus.py (columns audio, sampling_rate; --split, default train);
--audio-dir every .wav/.flac/.ogg file below a folder. The JSON holds feature_mean, feature_std (one value per latent
channel), num_frames and num_clips; `vae_features.ditar_config_kwargs(vae, stats)` turns it into DiTARConfig fields.
A pretrained VAE comes from the Hub with `AutoencoderOobleck.from_pretrained("stabilityai/stable-audio-open-1.0",
subfolder="vae")` (gated: accept the licence and `hf auth login` first) and can be saved locally with save_pretrained.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ConversionError  # noqa: E402

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, type=Path, help="AutoencoderOobleck folder (save_pretrained)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="dataset folder from examples/build_corpus.py")
    source.add_argument("--audio-dir", type=Path, help="folder of audio files")
    p.add_argument("--split", default="train", help="corpus split")
    p.add_argument("--max-clips", type=int, help="use at most this many clips")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    return p


def clips(args):
    if args.audio_dir is not None:
        files = sorted(p for p in args.audio_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise ConversionError(f"{args.audio_dir}: no .wav/.flac/.ogg files")
        return [str(f) for f in files]
    from datasets import load_from_disk

    data = load_from_disk(str(args.corpus))
    split = data[args.split] if hasattr(data, "keys") else data
    missing = {"audio", "sampling_rate"} - set(split.column_names)
    if missing:
        raise ConversionError(f"{args.corpus}: the {args.split!r} split has no column(s) {sorted(missing)}")
    return (
        {"audio": row["audio"], "sampling_rate": row["sampling_rate"]}
        for row in split.select_columns(["audio", "sampling_rate"])
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out.is_dir():  # --force cannot overwrite a folder with a file
        raise ConversionError(
            f"--out {args.out} is a folder; give the JSON file to write, e.g. {args.out / 'stats.json'}"
        )
    if args.out.exists() and not args.force:
        raise ConversionError(f"{args.out} exists; pass --force to overwrite it")
    if args.max_clips is not None and args.max_clips < 1:
        raise ConversionError(f"--max-clips must be at least 1, got {args.max_clips}; leave it out to use every clip")
    from diffusers import AutoencoderOobleck

    from modeling_ditar.vae_features import compute_latent_statistics

    vae = AutoencoderOobleck.from_pretrained(args.vae).eval()
    source = clips(args)
    if args.max_clips is not None:
        source = itertools.islice(source, args.max_clips)
    try:
        stats = compute_latent_statistics(vae, source)
    except ValueError as err:  # e.g. no clip at all (an empty split)
        raise ConversionError(f"{args.corpus or args.audio_dir}: {err}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats, indent=1) + "\n")
    print(
        f"wrote {args.out}: {len(stats['feature_mean'])} channels over {stats['num_frames']} frames "
        f"of {stats['num_clips']} clips"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
