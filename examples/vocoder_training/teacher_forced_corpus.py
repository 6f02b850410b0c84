#!/usr/bin/env python
"""A vocoder corpus of the model's own features: every utterance's log-mel frames as a DiTAR pipeline samples them,
teacher-forced, next to the recording they stand for.

A vocoder trained on a recording's log-mel meets other features at synthesis time: the ones LocDiT samples, which
are smoother than any recording's. Training it on the model's features, aligned frame for frame with the recording
("ground-truth-aligned" features, as Tacotron 2 fine-tuned WaveNet on), teaches it the recording behind the features
it will really be given. Teacher forcing gives that alignment: every target patch is sampled by LocDiT from the
backbone's output over the real text and the real patches before it (with another utterance of the same speaker as
the voice prompt, as when a voice is cloned), so patch j of the output stands where patch j of the recording does.

    python examples/vocoder_training/teacher_forced_corpus.py --corpus data/cpu_natural_corpus_clean \\
        --pipeline modeling_ditar/default --out data/vocoder_teacher_forced --max-rows 1500

The output is a `datasets.DatasetDict` (train and, with --validation-rows, validation) with the columns `audio` (the
recording as the processor prepares it, float32), `sampling_rate`, `model_features` (`[T, D]` unnormalised log-mel,
the feature extractor's frames 0..T-1 of `audio`; T a whole number of patches), `text`, `speaker_id` and `source`.
`examples/train_vocoder.py` reads it with `teacher_forced_corpus: PATH` in its config. The corpus's `test` split
(evaluation-only voices) is refused, as by train_vocoder.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval_lib.teacher_forcing import teacher_forced_features  # noqa: E402

from vocoder_training.data import EVALUATION_ONLY_SPLITS  # noqa: E402

COLUMNS = ("audio", "sampling_rate", "text", "speaker_id")


def pick_rows(
    speakers: list[str], sources: list[str], max_rows: int | None, seed: int, source_caps: dict[str, int] | None = None
) -> list[tuple[int, int]]:
    """(target row, prompt row) pairs: a random choice of at most `max_rows` rows whose speaker has at least two
    utterances (and at most `source_caps[source]` rows of a capped source), each with another utterance of its
    speaker as the prompt. A pure function of its arguments."""
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[int]] = {}
    for row, speaker in enumerate(speakers):
        by_speaker.setdefault(speaker, []).append(row)
    usable = sorted(row for rows in by_speaker.values() if len(rows) > 1 for row in rows)
    for source, cap in (source_caps or {}).items():
        of_source = [row for row in usable if sources[row] == source]
        if len(of_source) > cap:
            kept = set(rng.choice(of_source, size=cap, replace=False).tolist())
            usable = [row for row in usable if sources[row] != source or row in kept]
    if max_rows is not None and len(usable) > max_rows:
        usable = sorted(rng.choice(usable, size=max_rows, replace=False).tolist())
    pairs = []
    for row in usable:
        others = [r for r in by_speaker[speakers[row]] if r != row]
        pairs.append((row, int(others[rng.integers(len(others))])))
    return pairs


@torch.no_grad()
def model_features(pipe, target: np.ndarray, prompt: np.ndarray, rate: int, text: str, prompt_text: str, generator):
    """(prepared target audio [S], teacher-forced log-mel [T, D]) with T the target's whole patches' frames."""
    audio = pipe.processor.load_prompt_audio(target, rate)  # the level the processor gives a recording
    features = teacher_forced_features(
        pipe,
        audio.numpy(),
        pipe.processor.sampling_rate,
        text,
        prompt,
        prompt_text,
        generator=generator,
        prompt_sampling_rate=rate,
    )
    return audio.numpy().astype(np.float32), features.numpy().astype(np.float32)


def build_split(pipe, data, max_rows: int | None, seed: int, source_caps=None, log_every: int = 100):
    from datasets import Dataset

    data = data.select_columns([c for c in (*COLUMNS, "source") if c in data.column_names])  # not stored features
    speakers = [str(s) for s in data["speaker_id"]]
    sources = [str(s) for s in data["source"]] if "source" in data.column_names else ["unknown"] * len(data)
    pairs = pick_rows(speakers, sources, max_rows, seed, source_caps)
    generator = torch.Generator().manual_seed(seed)
    columns = {k: [] for k in ("audio", "sampling_rate", "model_features", "text", "speaker_id", "source")}
    started, skipped = time.time(), []
    for done, (row, prompt_row) in enumerate(pairs, 1):
        target, prompt = data[row], data[prompt_row]
        try:
            audio, feats = model_features(
                pipe,
                np.asarray(target["audio"], dtype=np.float32),
                np.asarray(prompt["audio"], dtype=np.float32),
                int(target["sampling_rate"]),
                target["text"],
                prompt["text"],
                generator,
            )
        except ValueError as err:  # a silent or too short clip: one row lost, not the run
            skipped.append(row)
            print(f"  row {row} left out: {err}", flush=True)
            continue
        columns["audio"].append(audio)
        columns["sampling_rate"].append(pipe.processor.sampling_rate)
        columns["model_features"].append(feats)
        columns["text"].append(target["text"])
        columns["speaker_id"].append(speakers[row])
        columns["source"].append(sources[row])
        if done % log_every == 0 or done == len(pairs):
            print(f"  {done}/{len(pairs)} rows, {time.time() - started:.0f} s", flush=True)
    if not columns["audio"]:
        raise SystemExit(f"no row could be teacher-forced ({len(skipped)} left out); see the messages above")
    return Dataset.from_dict(columns), skipped


def parse_source_caps(text: str) -> dict[str, int]:
    """ "espeak=1200,piper=300" -> {"espeak": 1200, "piper": 300}; SystemExit naming a malformed item."""
    caps = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise SystemExit(f"--max-rows-per-source takes SOURCE=ROWS items (e.g. espeak=1200), got {item!r}")
        caps[name.strip()] = int(value)
    return caps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="a build_corpus.py corpus of training-legal voices")
    parser.add_argument("--pipeline", default="modeling_ditar/default", help="the DiTAR pipeline whose features")
    parser.add_argument("--out", required=True, help="where the new corpus is saved")
    parser.add_argument("--split", default="train", help="the corpus split to read (default: train)")
    parser.add_argument("--max-rows", type=int, help="at most this many training rows (a seeded random choice)")
    parser.add_argument(
        "--max-rows-per-source",
        default="",
        help="caps per source, e.g. espeak=1200: keeps the natural voices' share up in an espeak-ng-heavy corpus",
    )
    parser.add_argument("--validation-rows", type=int, default=0, help="rows of the corpus's validation split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.split in EVALUATION_ONLY_SPLITS:
        raise SystemExit(f"split {args.split!r} holds evaluation-only voices and is never trained on")
    if args.max_rows is not None and args.max_rows < 1:
        raise SystemExit(f"--max-rows must be at least 1, got {args.max_rows}")
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; remove it or choose another --out")
    source_caps = parse_source_caps(args.max_rows_per_source)
    if args.threads:
        torch.set_num_threads(args.threads)

    from datasets import DatasetDict, load_from_disk

    from modeling_ditar import DiTARPipeline

    corpus = load_from_disk(args.corpus)
    if args.split not in corpus:
        raise SystemExit(f"{args.corpus} has no split {args.split!r}; it has {sorted(corpus.keys())}")
    missing = set(COLUMNS) - set(corpus[args.split].column_names)
    if missing:
        raise SystemExit(f"{args.corpus} lacks the columns {sorted(missing)}; build it with examples/build_corpus.py")
    pipe = DiTARPipeline.from_pretrained(args.pipeline)
    if pipe.vae is not None:
        raise SystemExit("teacher-forced features need a log-mel pipeline; this one decodes a VAE latent")
    if args.validation_rows and "validation" not in corpus:
        raise SystemExit(f"--validation-rows: {args.corpus} has no validation split; leave the option out")
    splits, skipped = {}, {}
    splits["train"], skipped["train"] = build_split(pipe, corpus[args.split], args.max_rows, args.seed, source_caps)
    if args.validation_rows:
        splits["validation"], skipped["validation"] = build_split(
            pipe, corpus["validation"], args.validation_rows, args.seed + 1
        )
    result = DatasetDict(splits)
    rate = pipe.processor.sampling_rate
    durations = {k: sum(len(a) for a in v.with_format("numpy")["audio"]) / rate for k, v in splits.items()}
    result.save_to_disk(str(out))
    info = {
        "corpus": args.corpus,
        "split": args.split,
        "pipeline": args.pipeline,
        "rows": {k: len(v) for k, v in result.items()},
        "hours": {k: round(seconds / 3600, 4) for k, seconds in durations.items()},
        "per_source": {k: {s: v["source"].count(s) for s in sorted(set(v["source"]))} for k, v in result.items()},
        "rows_left_out": skipped,
        "seed": args.seed,
        "command": " ".join(sys.argv),
    }
    (out / "teacher_forced_info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
