"""Evaluation cases: one JSON object per line.

Required: `id` (unique), `prompt_audio` (path; relative paths are relative to the JSONL file), `prompt_text` (its
transcript), `target_text` (what the system must say).
Optional: `target_audio` (the ground truth: `target_text` spoken in the prompt's voice; without it the "ground truth"
and "ground truth resynthesised" rows and the duration ratio skip the case), `voice` (a label), and any other fields
(kept as `extra`, e.g. `speaker_id`, `source`).

So a real recording or a flite voice only needs prompt audio + prompt text + target text:
    {"id": "flite-slt-01", "prompt_audio": "ood/slt_01.wav", "prompt_text": "...", "target_text": "...",
     "voice": "flite slt"}

`make_cases_from_dataset` builds cases from a corpus written by examples/build_corpus.py: for each case a prompt
utterance and a different utterance (different sentence) of the same speaker as the target, so the ground truth exists.
"""

from __future__ import annotations

import difflib
import json
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metrics import normalize_text

REQUIRED = ("id", "prompt_audio", "prompt_text", "target_text")
KNOWN = (*REQUIRED, "target_audio", "voice")


@dataclass
class Case:
    id: str
    prompt_audio: str
    prompt_text: str
    target_text: str
    target_audio: str | None = None
    voice: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def has_ground_truth(self) -> bool:
        return self.target_audio is not None

    def to_json(self, base_dir: Path | None = None) -> dict:
        def rel(path):
            if path is None or base_dir is None:
                return path
            inside = Path(path).resolve().is_relative_to(base_dir.resolve())
            return os.path.relpath(path, base_dir) if inside else str(path)

        row = {
            "id": self.id,
            "prompt_audio": rel(self.prompt_audio),
            "prompt_text": self.prompt_text,
            "target_text": self.target_text,
        }
        if self.target_audio is not None:
            row["target_audio"] = rel(self.target_audio)
        if self.voice is not None:
            row["voice"] = self.voice
        row.update(self.extra)
        return row


def load_cases(path: str | os.PathLike, check_files: bool = True) -> list[Case]:
    """Read a JSONL case file (blank lines and lines starting with '#' are skipped)."""
    path = Path(path)
    base = path.resolve().parent
    cases, seen = [], set()
    # utf-8-sig: editors on Windows save a byte-order mark, which json.loads would refuse on the first line
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err})") from err
        if not isinstance(row, dict):
            raise ValueError(f"{where}: each line must be a JSON object")
        not_text = [k for k in REQUIRED if row.get(k) is not None and not isinstance(row[k], str)]
        if not_text:  # e.g. "id": 1, which is there but not a string
            raise ValueError(f'{where}: field(s) {not_text} must be JSON strings (in quotes, e.g. "id": "1")')
        missing = [k for k in REQUIRED if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise ValueError(f"{where}: missing or empty field(s) {missing}; required: {list(REQUIRED)}")
        if not normalize_text(row["target_text"]):  # no reference word: every recognised word would be an insertion
            raise ValueError(
                f"{where}: case {row['id']!r} has a target_text with no words ({row['target_text']!r}); WER counts "
                "words, so give text with letters or digits"
            )
        for key in row:  # other fields are kept as labels, but a misspelt known one would be silently unused
            close = difflib.get_close_matches(key, [k for k in KNOWN if k not in row], n=1, cutoff=0.8)
            if key not in KNOWN and close:
                raise ValueError(f"{where}: field {key!r} is not a case field; did you mean {close[0]!r}?")
        if row["id"] in seen:
            raise ValueError(f"{where}: duplicate id {row['id']!r}")
        seen.add(row["id"])

        def resolve(value, name, where=where):
            if value is None:
                return None
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: {name} must be a path string")
            full = Path(value) if os.path.isabs(value) else base / value
            if check_files and not full.is_file():
                raise FileNotFoundError(f"{where}: {name} {str(full)!r} does not exist")
            if check_files:
                import soundfile as sf

                try:
                    sf.info(str(full))
                except Exception as err:  # soundfile raises several types for a file it cannot read
                    raise ValueError(f"{where}: {name} {str(full)!r} is not audio soundfile can read ({err})") from err
            return str(full)

        cases.append(
            Case(
                id=row["id"],
                prompt_audio=resolve(row["prompt_audio"], "prompt_audio"),
                prompt_text=row["prompt_text"],
                target_text=row["target_text"],
                target_audio=resolve(row.get("target_audio"), "target_audio"),
                voice=row.get("voice"),
                extra={k: v for k, v in row.items() if k not in KNOWN},
            )
        )
    if not cases:
        raise ValueError(f"{path}: no cases")
    return cases


def write_cases(cases: list[Case], path: str | os.PathLike) -> Path:
    """Write a JSONL case file; audio paths inside its folder are stored relative to it (the folder can be moved)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent
    with path.open("w", encoding="utf-8") as f:
        for case in cases:
            f.write(json.dumps(case.to_json(base), ensure_ascii=False) + "\n")
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


def select_pairs(
    speakers: list[str],
    texts: list[str],
    durations: list[float],
    num_cases: int,
    seed: int = 0,
    min_prompt_seconds: float = 0.0,
) -> list[tuple[int, int]]:
    """(prompt_row, target_row) pairs: same speaker, different sentence, every row used at most once, speakers
    taken in turns (a shuffled order) so the cases spread over all speakers."""
    rng = random.Random(seed)
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for row, speaker in enumerate(speakers):
        by_speaker[speaker].append(row)
    order = sorted(by_speaker)
    rng.shuffle(order)
    for speaker in order:
        rng.shuffle(by_speaker[speaker])
    pairs: list[tuple[int, int]] = []
    while len(pairs) < num_cases:
        progress = False
        for speaker in order:
            if len(pairs) >= num_cases:
                break
            pool = by_speaker[speaker]
            pair = None
            for p in pool:
                if durations[p] < min_prompt_seconds:
                    continue
                target = next((t for t in pool if t != p and texts[t].strip() != texts[p].strip()), None)
                if target is not None:
                    pair = (p, target)
                    break
            if pair is None:
                continue
            pool.remove(pair[0])
            pool.remove(pair[1])
            pairs.append(pair)
            progress = True
        if not progress:
            break
    return pairs


def make_cases_from_dataset(
    dataset_dir: str | os.PathLike,
    split: str,
    num_cases: int,
    out_path: str | os.PathLike,
    seed: int = 0,
    min_prompt_seconds: float = 0.0,
) -> list[Case]:
    """Pick `num_cases` (prompt, target) pairs from `split` of a corpus saved by build_corpus.py, write the audio to
    `OUT_DIR/wavs/STEM/` (16-bit WAV at the corpus rate; STEM: the case file's name without `.jsonl`) and the cases to
    `out_path` (JSONL). Returns the cases."""
    import soundfile as sf
    from datasets import load_from_disk

    dataset_dir = Path(dataset_dir)
    data = load_from_disk(str(dataset_dir))
    if split not in data:
        raise ValueError(f"{dataset_dir} has no split {split!r} (splits: {sorted(data)})")
    ds = data[split]
    meta = ds.select_columns(["text", "speaker_id", "duration"])
    texts, speakers = list(meta["text"]), list(meta["speaker_id"])
    durations = [float(d) for d in meta["duration"]]
    pairs = select_pairs(speakers, texts, durations, num_cases, seed=seed, min_prompt_seconds=min_prompt_seconds)
    if len(pairs) < num_cases:
        print(
            f"[cases] only {len(pairs)} of {num_cases} cases possible from {split} "
            f"({len(set(speakers))} speakers, {len(texts)} utterances)"
        )
    out_path = Path(out_path)
    # one folder per case file: wav names come from split, number and speaker only, so two case files built beside
    # each other (another seed, another split) would otherwise overwrite each other's audio
    wav_dir = out_path.parent / "wavs" / out_path.stem
    wav_dir.mkdir(parents=True, exist_ok=True)
    has_voice = "voice" in ds.column_names
    cases = []
    for number, (p, t) in enumerate(pairs):
        prompt, target = ds[int(p)], ds[int(t)]
        case_id = f"{split}-{number:04d}-{_safe(prompt['speaker_id'])}"
        paths = {}
        for role, row in (("prompt", prompt), ("target", target)):
            audio = np.clip(np.asarray(row["audio"], dtype=np.float32), -1.0, 1.0)
            paths[role] = wav_dir / f"{case_id}_{role}.wav"
            sf.write(paths[role], audio, int(row["sampling_rate"]), subtype="PCM_16")
        cases.append(
            Case(
                id=case_id,
                prompt_audio=str(paths["prompt"]),
                prompt_text=prompt["text"],
                target_text=target["text"],
                target_audio=str(paths["target"]),
                voice=prompt["voice"] if has_voice else None,
                extra={
                    "speaker_id": prompt["speaker_id"],
                    "prompt_seconds": round(durations[p], 3),
                    "target_seconds": round(durations[t], 3),
                    "source": {
                        "dataset": str(dataset_dir.resolve()),
                        "split": split,
                        "prompt_row": int(p),
                        "target_row": int(t),
                    },
                },
            )
        )
    write_cases(cases, out_path)
    return cases
