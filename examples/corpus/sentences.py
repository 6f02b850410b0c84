"""Clean English sentences from the Debian ``fortunes`` package (``apt-get install fortunes``).

A fortune file is a list of entries separated by lines holding a single ``%``.  Each entry is stripped of its
attribution (``-- Author`` lines), joined into one line and split into sentences.  A sentence is kept when it

* has ``min_words``..``max_words`` words (default 4..20),
* uses only ASCII letters, spaces and basic punctuation (``. , ; : ! ? ' -``) -- no digits, no brackets, no URLs,
* starts with a capital letter and ends with ``.``, ``!`` or ``?``,
* has no all-caps word of two or more letters (acronyms, shouting) and no abbreviation such as ``Mr.``,
* does not start with a speaker label such as ``Q:`` or ``Calvin:``.

Offensive, ascii-art and computer categories are skipped (``SKIP_CATEGORIES`` and any ``off/`` directory).
Sentences are deduplicated case- and punctuation-insensitively and shuffled with a fixed seed.

The project's evaluation sets read fixed positions of that shuffled list (``EVALUATION_DRAWS``: which seed, which
positions, which set); ``evaluation_texts`` returns their sentences, which no training corpus may hold.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "DEFAULT_FORTUNES_DIR",
    "EVALUATION_DRAWS",
    "SKIP_CATEGORIES",
    "EvaluationDraw",
    "clean_sentence",
    "evaluation_texts",
    "fortune_entries",
    "load_sentences",
    "split_sentences",
]

DEFAULT_FORTUNES_DIR = "/usr/share/games/fortunes"

#: Fortune files that are offensive, ascii art, code/computer jargon, or not prose.
SKIP_CATEGORIES = frozenset(
    {
        "off",
        "ethnic",
        "drugs",
        "men-women",
        "sex",
        "racism",
        "religion",  # offensive / sensitive
        "art",
        "ascii-art",  # pictures
        "computers",
        "linux",
        "linuxcookie",
        "perl",
        "debian",
        "knghtbrd",
        "translate-me",  # computer jargon, code
        "zippy",  # mostly all-caps non-sequiturs
    }
)

_ABBREV = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "jr",
    "sr",
    "vs",
    "etc",
    "prof",
    "mt",
    "no",
    "gen",
    "col",
    "capt",
    "lt",
    "sgt",
    "rev",
    "gov",
    "sen",
    "rep",
    "inc",
    "ltd",
    "co",
    "corp",
    "e.g",
    "i.e",
    "a.m",
    "p.m",
    "u.s",
    "ph.d",
}
_ALLOWED = re.compile(r"^[A-Za-z ,.;:!?'\-]+$")
_WORD = re.compile(r"[A-Za-z']+")
# split after . ! ? followed by whitespace and a capital letter (or a quote + capital)
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_LABEL = re.compile(r"^[A-Za-z][A-Za-z .']{0,20}:")


def _is_verse_break(prev: str, nxt: str) -> bool:
    """A line that starts with a capital although the previous one did not end a sentence: verse or a list."""
    if not prev or not nxt or not nxt[0].isupper() or re.search(r"[.!?:;]\W*$", prev):
        return False
    return not re.match(r"I\b", nxt)  # "... and then / I went" is ordinary prose


def fortune_entries(path: str | os.PathLike) -> Iterator[str]:
    """Raw entries (attribution removed, one line each) of one fortune file.

    Line breaks that look like verse ("If people lack knowledge and desire / Then they can not act") are joined
    with " / ", which ``clean_sentence`` rejects, so mid-sentence capitals from poems never reach the corpus.
    """
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    for entry in re.split(r"^%\s*$", text, flags=re.M):
        lines: list[str] = []
        for line in entry.splitlines():
            s = line.strip()
            if s.startswith("--") or s.startswith("\u2014"):  # attribution: "-- Mark Twain"
                break
            if not s:
                continue
            if lines and _is_verse_break(lines[-1], s):
                lines.append("/")
            lines.append(s)
        joined = " ".join(lines).strip()
        if joined:
            yield joined


def _normalize(text: str) -> str:
    text = (
        text.replace("\u2019", "'")
        .replace("\u2018", "'")
        .replace("\u201c", '"')
        .replace("\u201d", '"')
        .replace("``", '"')
        .replace("''", '"')
        .replace("\u2014", " -- ")
        .replace("\t", " ")
    )
    text = re.sub(r"\s+--+\s+|\s+--+|--+\s+", ", ", text)  # dash as a clause break
    text = text.replace('"', "")  # quotation marks are not spoken
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r",\s*([.!?,;:])", r"\1", text)
    return text


def split_sentences(text: str) -> list[str]:
    """Split normalized text into sentences without breaking after abbreviations like ``Mr.``."""
    pieces = _SPLIT.split(_normalize(text))
    out: list[str] = []
    for p in pieces:
        if out:
            last = out[-1].rsplit(" ", 1)[-1].rstrip(".").lower()
            if last in _ABBREV or (len(last) == 1 and last.isalpha()):  # "Mr." / middle initial "J."
                out[-1] = f"{out[-1]} {p}"
                continue
        out.append(p)
    return out


def clean_sentence(sentence: str, min_words: int = 4, max_words: int = 20) -> str | None:
    """Return the cleaned sentence if it passes every rule (see module doc), else None."""
    s = _normalize(sentence)
    if not s or not _ALLOWED.match(s):
        return None  # digits, non-ASCII, brackets, quotes of other kinds, symbols, overstriking
    if not s[0].isupper() or s[-1] not in ".!?":
        return None
    words = s.split()
    if not min_words <= len(words) <= max_words:
        return None
    if _LABEL.match(s) or re.match(r"^[A-Za-z]\.", s) or re.search(r",\s*(n|v|adj|adv|vt|vi)\s*[.:]", s):
        return None  # "Q:", "Calvin:", "A. ...", dictionary definitions "Duty, n: ..."
    for w in words:
        core = w.rstrip(",.;:!?")
        if core.startswith("'") or (core.endswith("'") and not core.endswith("s'")):
            return None  # single quotation marks (contractions and plural possessives are fine)
        letters = re.sub(r"[^A-Za-z]", "", w)
        if len(letters) >= 2 and letters.isupper():
            return None  # all-caps word / acronym
        if w.rstrip(".").lower() in _ABBREV and w.endswith("."):
            return None
        if "." in w[:-1]:
            return None  # "e.g.", "U.S.", "..." inside the sentence, URLs
        if not _WORD.search(w):
            return None  # stray punctuation token such as "-" or "..."
    if "..." in s or "!!" in s or "??" in s or "--" in s or re.search(r"[,;:]{2}|-\s|\s-", s):
        return None
    return s


def _category_files(root: Path, skip: Iterable[str]) -> list[Path]:
    skip = set(skip)
    files = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part in skip for part in rel.parts):
            continue  # whole off/ directory, or a skipped category
        if p.is_symlink() or not p.is_file() or p.suffix in (".dat", ".u8") or p.name.startswith("."):
            continue
        files.append(p)
    return files


def _unique_sentences(root: Path, min_words: int, max_words: int, skip_categories: Iterable[str]) -> list[str]:
    """Every clean sentence of the fortune files under ``root``, once, in file order (before the shuffle)."""
    files = _category_files(root, skip_categories)
    if not files:
        raise FileNotFoundError(f"no fortune files under {root} (apt-get install fortunes)")
    seen: set[str] = set()
    out: list[str] = []
    for f in files:
        for entry in fortune_entries(f):
            for sent in split_sentences(entry):
                s = clean_sentence(sent, min_words, max_words)
                if s is None:
                    continue
                key = " ".join(_WORD.findall(s.lower()))
                if key in seen:
                    continue
                seen.add(key)
                out.append(s)
    return out


def load_sentences(
    fortunes_dir: str | os.PathLike = DEFAULT_FORTUNES_DIR,
    *,
    seed: int = 0,
    min_words: int = 4,
    max_words: int = 20,
    skip_categories: Iterable[str] = SKIP_CATEGORIES,
    max_sentences: int | None = None,
) -> list[str]:
    """All clean, unique sentences of the fortune files, shuffled deterministically with ``seed``."""
    out = _unique_sentences(Path(fortunes_dir), min_words, max_words, skip_categories)
    random.Random(seed).shuffle(out)
    return out[:max_sentences] if max_sentences else out


# --------------------------------------------------------------------------------------------------------------
# evaluation sentences: never trained on
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvaluationDraw:
    """The sentences one evaluation build reads: positions ``start`` .. ``start + count - 1`` of
    ``load_sentences(seed=seed)`` (default word limits, as the build uses them). ``needs`` is how many sentences that
    build needs to run at all (``build_corpus.py`` refuses fewer): a shorter sentence list cannot hold the set."""

    sets: str
    seed: int
    start: int
    count: int
    needs: int
    command: str


_EVAL_CORPUS = (
    "examples/scripts/build_eval_sets.sh: build_corpus.py --out data/eval_corpus --num-train-speakers 400 "
    "--utts-per-speaker 25 --sampling-rate 16000 --only-splits validation,test"
)
_NATURAL_SET = (
    "examples/scripts/build_eval_sets.sh natural_set: build_corpus.py --seed {} --voice-seed {} "
    "--mix piper=0.55,kokoro=0.15,festival=0.3 --num-train-speakers 1 --num-val-speakers {} --utts-per-speaker 2 "
    "--num-test-voices 0 --only-splits validation --sampling-rate 16000"
)
_CONDITIONS = " --conditions room=0.5,noise=0.5,phone=0.3,level=0.5"

#: The evaluation sets drawn from the fortunes, as their commands build them. A build's sentence order is test (stock
#: voices x utterances), validation (speakers x utterances, then train voices x held-out utterances), then train; so
#: an evaluation build's test and validation sentences are the first of its seed's order.
EVALUATION_DRAWS = (
    # 12 stock espeak-ng voices x 25 utterances (--test-utts-per-voice defaults to --utts-per-speaker)
    EvaluationDraw("test100 (data/eval_corpus test)", seed=0, start=0, count=300, needs=425, command=_EVAL_CORPUS),
    # the default corpus's 4 validation speakers x 25 utterances
    EvaluationDraw(
        "val48 (data/eval_corpus validation)", seed=0, start=300, count=100, needs=425, command=_EVAL_CORPUS
    ),
    # 48 validation speakers x 2 utterances
    EvaluationDraw("natval48", seed=11, start=0, count=96, needs=98, command=_NATURAL_SET.format(11, 1111, 48)),
    EvaluationDraw(
        "natcond48", seed=21, start=0, count=96, needs=98, command=_NATURAL_SET.format(21, 2121, 48) + _CONDITIONS
    ),
    EvaluationDraw(
        "natcondfresh160",
        seed=41,
        start=0,
        count=320,
        needs=322,
        command=_NATURAL_SET.format(41, 4141, 160) + _CONDITIONS,
    ),
    # 6 train voices x 6 held-out sentences (its validation split), after which come their 60 train sentences each
    EvaluationDraw(
        "newvoices18 (data/newvoices validation)",
        seed=2026,
        start=0,
        count=36,
        needs=96,
        command="examples/scripts/finetune_new_voices.sh: build_corpus.py --out data/newvoices --seed 2026 "
        "--num-train-speakers 6 --num-val-speakers 0 --utts-per-speaker 60 --heldout-utts-per-speaker 6 "
        "--num-test-voices 0 --sampling-rate 16000 --max-sec 8 --max-speed 190",
    ),
)


@functools.lru_cache(maxsize=4)
def _evaluation_texts(root: str) -> frozenset[str]:
    unique = _unique_sentences(Path(root), 4, 20, SKIP_CATEGORIES)  # parsed once, shuffled per seed
    out: set[str] = set()
    for draw in EVALUATION_DRAWS:
        if len(unique) < draw.needs:  # its build could not run on these fortunes: no such set to protect
            continue
        order = list(unique)
        random.Random(draw.seed).shuffle(order)  # as load_sentences(seed=draw.seed) orders them
        out.update(order[draw.start : draw.start + draw.count])
    return frozenset(out)


def evaluation_texts(fortunes_dir: str | os.PathLike = DEFAULT_FORTUNES_DIR) -> frozenset[str]:
    """The sentences of every evaluation set in ``EVALUATION_DRAWS``, drawn from the fortunes under
    ``fortunes_dir`` (cached): the texts no training corpus may hold, so that no evaluation scores a model on
    sentences it was trained on."""
    return _evaluation_texts(str(Path(fortunes_dir).resolve()))


if __name__ == "__main__":  # quick look: python examples/corpus/sentences.py [N]
    import sys

    sents = load_sentences()
    print(f"{len(sents)} sentences, {sum(len(s.split()) for s in sents)} words")
    for s in sents[: int(sys.argv[1]) if len(sys.argv) > 1 else 20]:
        print(" ", s)
