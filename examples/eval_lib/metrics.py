"""Text normalisation, per-utterance word statistics (jiwer) and their corpus-level aggregation.

Whisper hallucinates fluent English on babble ("thank you", "i'm sorry i'm sorry", shared/research/proto.md §4, §6), so
the plain corpus WER of a poor system can exceed 100%. Next to it we report
  * the corpus WER with every utterance's errors capped at its number of reference words (so no single
    hallucination counts for more than "nothing was right"), and
  * the fraction of reference words recognised (jiwer hits / reference words), which insertions cannot distort.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass

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


def word_stats(reference: str, hypothesis: str) -> WordStats:
    """Normalise both texts and align them with jiwer."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
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


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of the finite values, None when there are none."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(kept)) if kept else None
