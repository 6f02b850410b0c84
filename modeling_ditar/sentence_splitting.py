"""Where a text's sentences end: the pieces a long text is spoken in, and line breaks read as sentence ends.

A long text is spoken in pieces of whole sentences, and each piece goes through the text front end alone. A cut after
an abbreviation is therefore worse than a missing pause: "We met Dr. | Smith" ends a piece on "Doctor." with a
sentence-final tone, "St. | Louis" reads "Street." then "Louis", "No. | 5" reads the word "No", "Jan. | 5" reads "Jan"
then "five". So a period that closes an abbreviation is not a sentence end (`is_abbreviation`), while one that may
also close a sentence ("etc.", "a.m.", "U.S.", "No.") ends it only when the next word is capitalised. A missed sentence
end costs little: the two sentences are packed as one, and a sentence too long for a piece is still cut at commas.

The front end collapses whitespace, so line breaks alone would run a list, a heading or a sign-off into the next line
("Shopping list eggs milk", "Best Mary"); `mark_line_ends` turns them into sentence ends first.
"""

from __future__ import annotations

import re

# Texts longer than this (characters) are spoken sentence by sentence with the same voice prompt, which keeps the
# backbone sequence, and so time per patch and memory, bounded.
MAX_CHARS_PER_SEGMENT = 250

# a sentence ends at . ! ? ; or … (optionally followed by a closing quote or bracket) and whitespace
_SENTENCE_END = re.compile(r"(?<=[.!?;\u2026])\s+|(?<=[.!?;\u2026][\"')\]])\s+")
_CLAUSE_END = re.compile(r"(?<=[,:])\s+")
# a sentence that is nothing but a list number ("2." of "2. Mix the flour") belongs to the next one: alone it would
# end a piece on "two."
_LIST_NUMBER = re.compile(r"\d{1,3}\.")

# ----------------------------------------------------------------------------------------------------------------------
# abbreviations
# ----------------------------------------------------------------------------------------------------------------------
# Titles and name parts, capitalised: a name follows ("Dr. Smith", "St. Louis", "Gen. Lee", "Martin Luther King Jr.
# and"); the rare title that ends a sentence ("on Main St. The") only loses a cut.
_TITLES = frozenset(
    "mr mrs ms messrs mme mlle dr prof st mt ft jr sr rev fr gen col capt cmdr lt sgt gov sen rep pres hon".split()
)
# never at a sentence end, whatever follows ("Smith vs. Jones", "Roe v. Wade", "e.g. Paris")
_INSIDE = frozenset({"vs", "v", "e.g", "i.e", "cf", "viz"})
# abbreviations that also end sentences ("apples, pears, etc. Then"): inside one when a lowercase word or a number
# follows ("etc. and", "No. 5", "Jan. 5", "fig. 3"); months count only before a day, the capitalised word after
# "in Jan." starts a sentence
_BEFORE_LOWERCASE_OR_NUMBER = frozenset(
    "no nos etc approx est inc ltd corp co bros dept fig figs vol vols ch sec p pp ave blvd rd".split()
    + "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# dotted initialisms without their final period: capitals ("U.S", "D.C") often name something ("the U.S. Army"), so
# they never end a sentence; others ("a.m", "Ph.D") are like the words above ("at 10 p.m. Then")
_INITIALISM = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")
_CAPITAL_INITIALISM = re.compile(r"(?:[A-Z]\.)+[A-Z]")
_INITIAL = re.compile(r"[A-Za-z]")  # an initial ("J. R. R. Tolkien") or a list label ("a. Eggs b. Milk")
_OPENING = "\"'([{\u201c\u2018"


def is_abbreviation(word: str, next_word: str = "") -> bool:
    """Whether the period that ends `word` closes an abbreviation inside a sentence that goes on with `next_word`
    ("Dr." before "Smith", "Jan." before "5", "a.m." before "on", "J." before "R."), rather than ending the sentence.
    False for a word without a final period."""
    word = word.lstrip(_OPENING)
    if not word.endswith(".") or word.endswith(".."):
        return False
    stem = word[:-1]
    key = stem.lower()
    if key in _INSIDE or (stem[:1].isupper() and key in _TITLES):
        return True
    if _INITIAL.fullmatch(stem) or _CAPITAL_INITIALISM.fullmatch(stem):
        return True
    if key in _BEFORE_LOWERCASE_OR_NUMBER or _INITIALISM.fullmatch(stem):
        first = next((ch for ch in next_word if ch.isalnum()), "")
        return first.islower() or first.isdigit()
    return False


# ----------------------------------------------------------------------------------------------------------------------
# line breaks
# ----------------------------------------------------------------------------------------------------------------------
# str.splitlines' line boundaries
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
# a bullet that starts a line: dropped ("- Eggs" -> "Eggs"); it has nothing to say
_BULLET = re.compile(r"[-*+\u2022\u2023\u2043\u25e6\u25aa\u25cf\u00b7\u2013\u2014]\s+(?=\S)")
# a number that starts a line: kept as "2." ("2) Mix" -> "2. Mix"), which reads "two." before the item
_NUMBERED = re.compile(r"(\d{1,3})[.)]\s+(?=\S)")
# a line that ends with punctuation already has its pause
_PUNCTUATED = re.compile(r"[.!?;:,\u2026][\"')\]\u201d\u2019]*$")


def mark_line_ends(text: str) -> str:
    """`text` on one line, each line break read as a sentence end: a line that does not end with punctuation gets a
    period when a list item (a line starting with a bullet or a number), a blank line, or a line starting with anything
    but a lowercase letter follows; a line starting lowercase continues a wrapped sentence and is joined with a space.
    Bullets starting a line are dropped and numbers kept as "2.", so a list number starts its own item rather than end
    the line before. A text without line breaks comes back unchanged.

    >>> mark_line_ends("Shopping list\\n- Eggs\\n- Milk\\n\\nBest\\nMary")
    'Shopping list. Eggs. Milk. Best. Mary'
    """
    if not _LINE_BREAK.search(text):
        return text
    lines: list[str] = []
    blank = False
    for raw in _LINE_BREAK.split(text):
        line = raw.strip()
        if not line:
            blank = True
            continue
        item = True
        if bullet := _BULLET.match(line):
            line = line[bullet.end() :]
        elif number := _NUMBERED.match(line):
            line = f"{number.group(1)}. {line[number.end() :]}"
        else:
            item = False
        if lines and not _PUNCTUATED.search(lines[-1]) and (item or blank or not line[0].islower()):
            lines[-1] += "."
        lines.append(line)
        blank = False
    return " ".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# pieces of a long text
# ----------------------------------------------------------------------------------------------------------------------
def split_sentences(text: str, max_chars: int = MAX_CHARS_PER_SEGMENT) -> list[str]:
    """Split a long text at sentence ends into pieces of at most `max_chars` characters, packing whole sentences
    greedily (a single sentence longer than that is split at commas/colons, then at spaces; a single word longer than
    `max_chars` stays whole). Line breaks first become sentence ends (`mark_line_ends`), then whitespace runs become
    one space; `" ".join(pieces)` gives back that text. A period after an abbreviation is not a sentence end
    (`is_abbreviation`). Short texts come back as one piece."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be an integer >= 1, got {max_chars!r}.")
    text = " ".join(mark_line_ends(text).split())
    if len(text) <= max_chars:
        return [text]
    parts: list[str] = []
    for sentence in _sentences(text):
        parts += [sentence] if len(sentence) <= max_chars else _split_long(sentence, max_chars)
    return _pack(parts, max_chars)


def _sentences(text: str) -> list[str]:
    """The sentences of `text` (whitespace runs already single spaces): cut at each sentence end, except after an
    abbreviation and after a list number alone."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end, after = match.start(), match.end()
        word = text[text.rfind(" ", 0, end) + 1 : end]
        next_end = text.find(" ", after)
        next_word = text[after:] if next_end < 0 else text[after:next_end]
        if is_abbreviation(word, next_word) or _LIST_NUMBER.fullmatch(text, start, end):
            continue
        sentences.append(text[start:end])
        start = after
    sentences.append(text[start:])
    return sentences


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Pieces of one over-long sentence: clauses (split after commas and colons), packed; a clause still too long is
    split at spaces."""
    parts: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        parts += [clause] if len(clause) <= max_chars else clause.split(" ")
    return _pack(parts, max_chars)


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Join consecutive parts with spaces while the result stays within `max_chars`. A part with no letter or digit
    (an emoji, a dash, "...") always joins its neighbour, even past `max_chars`: alone it would be a piece with nothing
    to speak, which the tokenizer refuses, while inside a piece it is dropped with a warning like any unreadable
    character."""
    pieces: list[str] = []
    held = ""  # wordless parts before the first piece with words
    for part in parts:
        if not part:
            continue
        if not any(ch.isalnum() for ch in part):
            if pieces:
                pieces[-1] = pieces[-1] + " " + part
            else:
                held = f"{held} {part}".lstrip()
        elif pieces and len(pieces[-1]) + 1 + len(part) <= max_chars:
            pieces[-1] = pieces[-1] + " " + part
        else:
            pieces.append(f"{held} {part}".lstrip())
            held = ""
    return pieces or ([held] if held else [])
