"""Training audio of the vocoder: clips from a corpus or a folder, and reproducible random segments of them.

A corpus is a `datasets.DatasetDict` saved by `examples/build_corpus.py` (float32 `audio` lists and a `sampling_rate`
column); a folder holds audio files soundfile reads (wav, flac, ogg), searched recursively. Clips at another rate than
the feature extractor's are resampled when loaded.

Evaluation-only audio is never trained on: a corpus's `test` split (by name, or its folder given directly), rows the
corpus labels as evaluation-only voices (see `evaluation_only_rows`), and audio files under the evaluation sets'
folder `data/eval/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = [
    "AUDIO_SUFFIXES",
    "AlignedSegmentSampler",
    "SegmentSampler",
    "evaluation_only_rows",
    "hop_aligned",
    "is_corpus",
    "load_corpus_clips",
    "load_folder_clips",
    "load_teacher_forced_clips",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
# The corpus split that holds evaluation-only voices (build_corpus.py's stock espeak-ng voices): never trained on.
EVALUATION_ONLY_SPLITS = ("test",)
# How a corpus labels evaluation-only audio in its rows, whatever split they are in (a split folder given directly, a
# pack or a recorded corpus merged into a train split): build_corpus.py names the stock espeak-ng voices' speakers
# `stock_NAME` (a merged pack prefixes `PACK:`) and writes their name (`en-us+m3`) in the `voice` column, the
# evaluation-set builders give flite voices and real recordings these sources, and a festival voice is written
# `festival:NAME` in the `voice` column.
EVALUATION_ONLY_SOURCES = ("flite", "librivox", "real")
EVALUATION_ONLY_RULE = (
    "stock espeak-ng voices (speakers stock_*), flite voices, festival's kal/slt and the real recordings of the "
    "evaluation sets are for evaluation only and never trained on"
)
# The evaluation sets' audio (examples/scripts/build_eval_sets.sh writes data/eval/SET/wavs: flite and LibriVox)
EVALUATION_SETS_FOLDER = ("data", "eval")


def hop_aligned(seconds: float, sampling_rate: int, hop_length: int) -> int:
    """`seconds` as a whole number of hops (at least one), in samples: T frames of the feature extractor then cover
    exactly the `(T - 1) * hop_length` samples the vocoder returns."""
    if not seconds > 0:
        raise ValueError(f"a segment must be longer than 0 seconds, got {seconds}")
    return max(1, round(seconds * sampling_rate / hop_length)) * hop_length


def is_corpus(path: Path) -> bool:
    """Whether `path` is a `datasets` folder (a DatasetDict or a Dataset saved with `save_to_disk`)."""
    return (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()


def _resample(clip: np.ndarray, rate: int, target: int) -> np.ndarray:
    from modeling_ditar.audio_utils import resample_audio

    return resample_audio(torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)), rate, target).numpy()


def _split_folder_name(path: Path) -> str | None:
    """The split `path` is when it is one split's folder of a saved DatasetDict (its parent lists it), else None."""
    import json

    try:
        splits = json.loads((path.parent / "dataset_dict.json").read_text()).get("splits", [])
    except (OSError, ValueError, AttributeError):
        return None
    return path.name if path.name in splits else None


def _refuse_evaluation_only_split(path: Path, split: str) -> None:
    """Refuses the evaluation-only split by its name, asked for or given as its folder; a split folder given directly
    must be the split asked for (the corpus folder is what to give)."""
    folder_split = _split_folder_name(path)
    if folder_split in EVALUATION_ONLY_SPLITS:
        raise ValueError(
            f"{path} is the {folder_split!r} split of the corpus {path.parent}: it holds evaluation-only voices and is "
            f"never trained on; give the corpus folder {path.parent}: its train split is what is trained on"
        )
    if split in EVALUATION_ONLY_SPLITS:
        raise ValueError(
            f"split {split!r} of a corpus holds evaluation-only voices and is never trained on; use 'train' (or "
            "'validation' for the validation clips)"
        )
    if folder_split is not None and folder_split != split:
        raise ValueError(
            f"{path} is the {folder_split!r} split of the corpus {path.parent}, not its {split!r} split: give the "
            f"corpus folder {path.parent}"
        )


def evaluation_only_rows(data) -> list[str]:
    """What the rows of a `datasets.Dataset` label as evaluation-only audio, one entry per speaker, source or voice
    with its number of rows (`["stock_en-us+m3 (25 rows)", "source 'flite' (8 rows)"]`); empty when none is. Only the
    columns the corpus has are read (`speaker_id`, `source`, `voice`)."""
    from corpus.natural import evaluation_only_rule
    from corpus.voices import STOCK_SPEAKER_PREFIX

    def counted(column: str) -> list[tuple[str, int]]:
        if column not in data.column_names or len(data) == 0:
            return []
        values = data.with_format("arrow", columns=[column])[:].column(column)
        counts = values.value_counts().to_pylist()
        return sorted((str(c["values"]), int(c["counts"])) for c in counts if c["values"] is not None)

    def stock_speaker(speaker: str) -> bool:
        return speaker.rsplit(":", 1)[-1].startswith(STOCK_SPEAKER_PREFIX)  # a pack's `PACK:stock_NAME`

    def evaluation_voice(voice: str) -> bool:  # the corpus builder's rule for a voice: stock, flite, festival kal/slt
        return evaluation_only_rule("", "", voice) is not None

    def rows(n: int) -> str:
        return f"({n} row{'' if n == 1 else 's'})"

    found = [f"{speaker} {rows(n)}" for speaker, n in counted("speaker_id") if stock_speaker(speaker)]
    found += [
        f"source {source!r} {rows(n)}" for source, n in counted("source") if source.lower() in EVALUATION_ONLY_SOURCES
    ]
    found += [f"voice {voice!r} {rows(n)}" for voice, n in counted("voice") if evaluation_voice(voice)]
    return found


def _refuse_evaluation_only_rows(data, path: Path, split: str) -> None:
    found = evaluation_only_rows(data)
    if found:
        shown = ", ".join(found[:12]) + (f" and {len(found) - 12} more" if len(found) > 12 else "")
        raise ValueError(
            f"the {split} split of {path} holds evaluation-only audio: {shown}. The rule: {EVALUATION_ONLY_RULE}. "
            "Train on a corpus of training voices (examples/build_corpus.py's train split, without --add-pack or "
            "--from-folder sources of evaluation audio)"
        )


def _open_split(path: Path, split: str, columns: tuple[str, ...], how_to_build: str, training: bool = True):
    """The `datasets` split `split` of the corpus at `path`, after refusing evaluation-only splits and checking that it
    has `columns` (a missing one is named, with `how_to_build`). `training`: the rows are trained on, so a row labelled
    evaluation-only (`evaluation_only_rows`) is refused too."""
    from datasets import load_from_disk

    _refuse_evaluation_only_split(path, split)
    try:
        data = load_from_disk(str(path))
    except IndexError:  # datasets cannot open a DatasetDict with an empty split (a split saved with no data files)
        if _empty_split(path / split):
            raise ValueError(
                f"the {split} split of {path} has no rows; build the corpus with examples/build_corpus.py"
            ) from None
        if not (path / split / "state.json").is_file():
            raise ValueError(f"{path} has no split {split!r}") from None
        data = load_from_disk(str(path / split))  # another split is the empty one
    if hasattr(data, "keys"):
        if split not in data:
            raise ValueError(f"{path} has no split {split!r}; it has {sorted(data.keys())}")
        data = data[split]
    missing = set(columns) - set(data.column_names)
    if missing:
        raise ValueError(f"{path} ({split}) lacks the columns {sorted(missing)}; {how_to_build}")
    if training:
        _refuse_evaluation_only_rows(data, path, split)
    return data


def _empty_split(folder: Path) -> bool:
    """Whether `folder` is a split that `save_to_disk` wrote with no rows (no data files)."""
    import json

    try:
        return json.loads((folder / "state.json").read_text()).get("_data_files") == []
    except (OSError, ValueError, AttributeError):
        return False


def load_corpus_clips(path: Path, split: str, sampling_rate: int, training: bool = True) -> list[np.ndarray]:
    """Every clip of `split` as a float32 array at `sampling_rate`. The audio is read from the Arrow buffers in one pass
    per chunk (memory-mapped views, no copy); only clips at another rate are copied (resampled). `training`: the clips
    are trained on, and a split with rows of evaluation-only voices is refused (ValueError naming them); False for
    clips that are only listened to (the validation resynthesis)."""
    import pyarrow.compute as pc

    data = _open_split(path, split, ("audio", "sampling_rate"), "build it with examples/build_corpus.py", training)
    if len(data) == 0:
        raise ValueError(f"the {split} split of {path} has no rows; build the corpus with examples/build_corpus.py")
    table = data.with_format("arrow", columns=["audio", "sampling_rate"])[:]
    rates = table.column("sampling_rate").to_numpy()
    clips = []
    for chunk in table.column("audio").chunks:
        lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False)
        values = chunk.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        clips.extend(values[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True))
    clips = [
        c if int(r) == sampling_rate else _resample(c, int(r), sampling_rate) for c, r in zip(clips, rates, strict=True)
    ]
    return [c for c in clips if len(c) > 0]


def load_teacher_forced_clips(path: Path, split: str, sampling_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(audio [S], model features [T, D]) of every row of `split` of a corpus written by
    `vocoder_training/teacher_forced_corpus.py`: the features are the feature extractor's frames 0..T-1 of the audio,
    as the model sampled them."""
    how_to_build = "write it with examples/vocoder_training/teacher_forced_corpus.py"
    if not is_corpus(path):
        raise ValueError(f"teacher_forced_corpus {str(path)!r} is not a corpus folder; {how_to_build}")
    data = _open_split(path, split, ("audio", "sampling_rate", "model_features"), how_to_build)
    rates = set(int(r) for r in data["sampling_rate"])
    if rates != {int(sampling_rate)}:
        raise ValueError(
            f"{path} holds audio at {sorted(rates)} Hz and the vocoder's features are at {sampling_rate} Hz: write the "
            "corpus with the pipeline whose feature extractor the vocoder inverts"
        )
    data = data.with_format("numpy", columns=["audio", "model_features"])  # features come as [T, D] arrays
    return [(row["audio"].astype(np.float32), row["model_features"].astype(np.float32)) for row in data]


def load_folder_clips(path: Path, sampling_rate: int) -> tuple[list[np.ndarray], list[str]]:
    """Every audio file under `path` (sorted by path) as a mono float32 array at `sampling_rate`, and the file names."""
    from modeling_ditar.audio_utils import load_audio

    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; give a folder of {'/'.join(AUDIO_SUFFIXES)} files or a corpus")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{path} holds no {'/'.join(AUDIO_SUFFIXES)} files (searched recursively)")
    evaluation = [f for f in files if _in_evaluation_sets(f)]
    if evaluation:  # plain files carry no labels: where they lie is all there is to go by
        raise ValueError(
            f"{path} holds {len(evaluation)} audio files of the evaluation sets (under data/eval/, e.g. "
            f"{evaluation[0]}): {EVALUATION_ONLY_RULE}. Give a folder that holds only audio you may train on"
        )
    clips = [load_audio(f, sampling_rate=sampling_rate)[0].numpy() for f in files]
    return clips, [str(f.relative_to(path)) for f in files]


def _in_evaluation_sets(path: Path) -> bool:
    """Whether `path` lies under a `data/eval/` folder (the evaluation sets' audio), symbolic links resolved."""
    parts = path.resolve().parts
    return any(parts[i : i + 2] == EVALUATION_SETS_FOLDER for i in range(len(parts) - 1))


class SegmentSampler:
    """Random fixed-length segments of a list of clips, a pure function of `(seed, step, rank)`: a resumed run draws
    exactly the batches the uninterrupted run would have, with no sampler state to save.

    A segment's clip is drawn with probability proportional to its length (every second of audio is equally likely);
    clips shorter than a segment are zero-padded at the end.

    Args:
        clips (`list[np.ndarray]`): mono float32 clips at the training rate.
        segment_samples (`int`): samples per segment S (a multiple of the hop, see `hop_aligned`).
        seed (`int`): seed of the draw.
        gain_db (`tuple[float, float]`, *optional*): a random gain drawn uniformly in this range (dB) per segment; the
            result is clipped to [-1, 1].
    """

    def __init__(self, clips: list[np.ndarray], segment_samples: int, seed: int = 0, gain_db=None):
        if not clips:
            raise ValueError("no training audio: the clip list is empty")
        self.clips = clips
        self.segment_samples = int(segment_samples)
        self.seed = int(seed)
        if gain_db is not None:
            low, high = (float(g) for g in gain_db)
            if low > high:
                raise ValueError(f"`gain_db` must be [low, high] with low <= high, got {list(gain_db)}")
            gain_db = (low, high)
        self.gain_db = gain_db
        self.cumulative = np.cumsum([len(c) for c in clips])

    @property
    def total_samples(self) -> int:
        """Samples of audio the segments are drawn from."""
        return int(self.cumulative[-1])

    def batch(self, step: int, batch_size: int, rank: int = 0) -> torch.Tensor:
        """Segments of step `step` for process `rank`: `[batch_size, segment_samples]` float32 (CPU)."""
        rng = np.random.default_rng([self.seed, int(step), int(rank)])
        out = np.zeros((batch_size, self.segment_samples), dtype=np.float32)
        picks = np.searchsorted(self.cumulative, rng.integers(0, self.cumulative[-1], size=batch_size), side="right")
        for row, index in enumerate(picks):
            clip = self.clips[index]
            if len(clip) > self.segment_samples:
                start = int(rng.integers(0, len(clip) - self.segment_samples + 1))
                out[row] = clip[start : start + self.segment_samples]
            else:
                out[row, : len(clip)] = clip
        if self.gain_db is not None:
            gains = 10.0 ** (rng.uniform(*self.gain_db, size=(batch_size, 1)) / 20.0)
            out = np.clip(out * gains.astype(np.float32), -1.0, 1.0)
        return torch.from_numpy(out)


class AlignedSegmentSampler:
    """Random fixed-length segments of (audio, features) pairs whose features are frames 0..T-1 of the audio (the
    feature extractor's centred frames, `hop_length` samples apart), a pure function of `(seed, step, rank)`.

    A segment of `segment_samples` S = (T - 1) * hop samples starting at frame f covers the features' frames
    f..f+T-1, as `compute_log_mel` of the segment would (up to the reflect padding of its two edge frames). Pairs
    with fewer than T frames are left out (`skipped` counts them); every start frame of every pair is equally likely
    (a pair is drawn in proportion to its T'-T+1 start frames, T' its frames).
    """

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], segment_samples: int, hop_length: int, seed=0):
        self.segment_samples, self.hop_length, self.seed = int(segment_samples), int(hop_length), int(seed)
        if self.segment_samples % self.hop_length:
            raise ValueError(f"segment_samples {segment_samples} is not a whole number of hops ({hop_length})")
        self.frames = self.segment_samples // self.hop_length + 1
        self.pairs = [
            (audio, features)
            for audio, features in pairs
            if len(features) >= self.frames and len(audio) >= (len(features) - 1) * self.hop_length
        ]
        self.skipped = len(pairs) - len(self.pairs)
        if not self.pairs:
            raise ValueError(
                f"no (audio, features) pair is long enough for a segment of {self.frames} frames; use shorter "
                "segments or longer utterances"
            )
        self.cumulative = np.cumsum([len(f) - self.frames + 1 for _, f in self.pairs])

    @property
    def total_samples(self) -> int:
        return int(sum((len(f) - 1) * self.hop_length for _, f in self.pairs))

    def batch(self, step: int, batch_size: int, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Segments of step `step` for process `rank`: audio `[batch_size, S]` and features `[batch_size, T, D]`."""
        rng = np.random.default_rng([self.seed, int(step), int(rank), 1])  # not the audio sampler's draw
        draws = rng.integers(0, self.cumulative[-1], size=batch_size)
        picks = np.searchsorted(self.cumulative, draws, side="right")
        audio = np.zeros((batch_size, self.segment_samples), dtype=np.float32)
        features = np.zeros((batch_size, self.frames, self.pairs[0][1].shape[1]), dtype=np.float32)
        for row, (index, draw) in enumerate(zip(picks, draws, strict=True)):
            clip, frames = self.pairs[index]
            start = int(draw - (self.cumulative[index - 1] if index else 0))  # uniform over the pair's start frames
            audio[row] = clip[start * self.hop_length : start * self.hop_length + self.segment_samples]
            features[row] = frames[start : start + self.frames]
        return torch.from_numpy(audio), torch.from_numpy(features)
