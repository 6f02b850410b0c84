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
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "DEFAULT_FORTUNES_DIR",
    "SKIP_CATEGORIES",
    "clean_sentence",
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
    root = Path(fortunes_dir)
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
    random.Random(seed).shuffle(out)
    return out[:max_sentences] if max_sentences else out


if __name__ == "__main__":  # quick look: python examples/corpus/sentences.py [N]
    import sys

    sents = load_sentences()
    print(f"{len(sents)} sentences, {sum(len(s.split()) for s in sents)} words")
    for s in sents[: int(sys.argv[1]) if len(sys.argv) > 1 else 20]:
        print(" ", s)
