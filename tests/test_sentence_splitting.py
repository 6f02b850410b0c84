"""Sentence ends of long texts (modeling_ditar/sentence_splitting.py): abbreviations are not sentence ends, line breaks
are, and ordinary text is split exactly as before. Pure Python except the last test (the dummy pipeline)."""

from __future__ import annotations

import re

import pytest

from modeling_ditar import pipeline_ditar
from modeling_ditar.sentence_splitting import (
    _pack,
    _sentences,
    _split_long,
    is_abbreviation,
    mark_line_ends,
    split_sentences,
)


def sentences(text: str) -> list[str]:
    return _sentences(" ".join(text.split()))


# ------------------------------------------------------------------------------------------------------------------
# abbreviations


def test_the_auditors_example_is_one_sentence():
    text = "Dr. Smith paid $3.50 at 9 a.m. on Jan. 5. He left."
    assert sentences(text) == ["Dr. Smith paid $3.50 at 9 a.m. on Jan. 5.", "He left."]
    # a piece is cut at the real sentence end, never after "Dr." / "a.m." / "Jan."
    assert split_sentences(text, max_chars=45) == ["Dr. Smith paid $3.50 at 9 a.m. on Jan. 5.", "He left."]


@pytest.mark.parametrize(
    "sentence",
    [
        "We met Mr. Brown, Mrs. Brown, Ms. Green and Prof. White at the office.",
        "The team met at the St. Louis office today.",
        "Item No. 5 on the agenda is the budget.",
        "The hearing is on Jan. 5 and the vote on Sept. 12 this year.",
        "We meet at 9 a.m. and leave at 5 p.m. sharp.",
        "I have read J. R. R. Tolkien and C. S. Lewis.",
        "Prices in the U.S. and the U.K. rose, and the U.S. Army paid more.",
        "It was Smith vs. Jones, and then Roe v. Wade.",
        "Bring fruit, e.g. Apples, or greens, i.e. Lettuce and kale.",
        "We sell apples, pears, etc. and some nuts.",
        "Martin Luther King Jr. spoke, and Dr. King was heard.",
        "See fig. 3 and pp. 12 of the Ph.D. thesis.",
        '(Dr. Who) and "Mr. Bean" are on tonight.',
    ],
)
def test_a_period_after_an_abbreviation_is_not_a_sentence_end(sentence):
    assert sentences(f"{sentence} Next one here.") == [sentence, "Next one here."]


@pytest.mark.parametrize(
    "text, first",
    [
        ("We sell apples, pears, etc. Then we close.", "We sell apples, pears, etc."),
        ("The shop opens at 9 a.m. Then it is busy.", "The shop opens at 9 a.m."),
        ("Is it yes? No. He said no.", "Is it yes?"),
        ("It happened in Jan. The snow was deep.", "It happened in Jan."),
        ("She earned a Ph.D. Then she left.", "She earned a Ph.D."),
    ],
)
def test_an_abbreviation_that_can_end_a_sentence_ends_it_before_a_capital(text, first):
    assert sentences(text)[0] == first


@pytest.mark.parametrize(
    "first",
    [
        "See example.com.",
        "Mail jane.doe@example.org.",
        "Read https://www.example.com/docs?page=2.",
        "Visit huggingface.co/models.",
        "Go to ab.io.",  # looks like an initialism ("a.m."), but a capital follows
        "Write to <tom@example.com>.",
    ],
)
def test_a_period_after_a_web_or_email_address_ends_the_sentence(first):
    text = f"{first} Then go home."
    assert sentences(text) == [first, "Then go home."]
    assert split_sentences(text, max_chars=len(first) + 1) == [first, "Then go home."]


def test_is_abbreviation():
    assert is_abbreviation("Dr.", "Smith") and is_abbreviation("(Dr.", "Who)") and is_abbreviation("J.", "R.")
    assert is_abbreviation("No.", "5") and is_abbreviation("Jan.", "5") and is_abbreviation("a.m.", "on")
    assert is_abbreviation("etc.", "(and") and is_abbreviation("U.S.", "The")
    assert not is_abbreviation("No.", "He") and not is_abbreviation("etc.", "Then") and not is_abbreviation("p.m.", "I")
    assert not is_abbreviation("dog.", "the") and not is_abbreviation("Dr", "Smith") and not is_abbreviation("Dr!", "X")
    assert not is_abbreviation("ms.", "then")  # milliseconds, not a title
    assert not is_abbreviation("wait...", "what")


def test_a_list_number_alone_does_not_end_a_piece():
    text = "Step one is here. 2. Mix the flour well. I counted to 2. Then I stopped."
    assert sentences(text) == ["Step one is here.", "2. Mix the flour well.", "I counted to 2.", "Then I stopped."]


# ------------------------------------------------------------------------------------------------------------------
# line breaks


@pytest.mark.parametrize(
    "text, marked",
    [
        ("Shopping list\n- Eggs\n- Milk", "Shopping list. Eggs. Milk"),
        ("Shopping list:\n* eggs\n• milk\n+ bread", "Shopping list: eggs. milk. bread"),
        ("1. Preheat oven\n2. Mix flour\n3) Bake", "1. Preheat oven. 2. Mix flour. 3. Bake"),
        ("Thanks for coming\n\nBest\nMary", "Thanks for coming. Best. Mary"),
        ("Dear John,\nThanks!\r\nSee you (soon)\r\nAnn", "Dear John, Thanks! See you (soon). Ann"),
        # a line that starts with a lowercase word continues a wrapped sentence
        ("The quick brown fox\njumps over the lazy dog.\n", "The quick brown fox jumps over the lazy dog."),
        ("A heading\n\nthen a paragraph", "A heading. then a paragraph"),  # a blank line always ends it
        ("  Hello   there.\nHow are you?  ", "Hello   there. How are you?"),
        ("A 1.5 kg bag\n-5 degrees", "A 1.5 kg bag. -5 degrees"),  # no bullet without a space after it
    ],
)
def test_line_breaks_end_sentences(text, marked):
    assert mark_line_ends(text) == marked
    assert mark_line_ends(marked) == marked  # idempotent: the pipeline marks a text, then splits it


def test_text_without_line_breaks_is_unchanged():
    for text in ["Hello there.", "  two  spaces  ", "- not a list", "a\ttab"]:
        assert mark_line_ends(text) is text


def test_line_breaks_end_pieces_of_a_long_text():
    items = "\n".join(f"- Item number {i} of the list" for i in range(12))
    pieces = split_sentences(f"Shopping list\n{items}\nBest\nMary", max_chars=80)
    assert pieces[0].startswith("Shopping list. Item number 0 of the list. Item number 1")
    assert all(p.endswith(".") for p in pieces[:-1]) and pieces[-1].endswith("Best. Mary")
    assert "-" not in " ".join(pieces)
    numbered = "\n".join(f"{i}. Do step {i} of the recipe now" for i in range(1, 13))
    pieces = split_sentences(numbered, max_chars=70)
    assert all(re.match(r"\d+\. Do step", p) for p in pieces)  # a list number starts its piece, never ends one


# ------------------------------------------------------------------------------------------------------------------
# ordinary text: exactly the pieces of the splitter before abbreviations and line breaks were handled

_OLD_SENTENCE_END = re.compile(r"(?<=[.!?;\u2026])\s+|(?<=[.!?;\u2026][\"')\]])\s+")


def old_split_sentences(text: str, max_chars: int) -> list[str]:
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text]
    parts: list[str] = []
    for sentence in _OLD_SENTENCE_END.split(text):
        parts += [sentence] if len(sentence) <= max_chars else _split_long(sentence, max_chars)
    return _pack(parts, max_chars)


ORDINARY = [
    "First sentence here. Second one! Is this the third? Yes; fourth. " * 5,
    'He said "Stop." Then he left. Pi is 3.14159 roughly. Yes. It cost $3.50 in 2019, or so they said… Fine.',
    "This is one sentence of a long paragraph, it is. " * 8 + "\U0001f389! " + ("and so on " * 24).strip() + ".",
    "The quick brown fox jumps over the lazy dog. " * 10,
    "A long sentence without a stop, with commas, and clauses: one after another, going on and on " * 4,
    "Line one ends here.\nLine two ends here!\n\nLine three? " * 6,
    "-- ... word word word end. " * 10,
]


@pytest.mark.parametrize("text", ORDINARY)
@pytest.mark.parametrize("max_chars", [20, 60, 120, pipeline_ditar.MAX_CHARS_PER_SEGMENT, 1000])
def test_ordinary_text_is_split_as_before(text, max_chars):
    assert split_sentences(text, max_chars) == old_split_sentences(text, max_chars)


def test_the_pipeline_uses_this_splitter():
    assert pipeline_ditar.split_sentences is split_sentences
    assert pipeline_ditar.MAX_CHARS_PER_SEGMENT == 250


# ------------------------------------------------------------------------------------------------------------------
# the corpus builder shares the abbreviation rule


def test_pipeline_encodes_short_texts_with_line_breaks_marked(monkeypatch):
    from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline

    pipe = get_dummy_pipeline()
    spoken = []
    encode = pipe.encode_inputs
    monkeypatch.setattr(pipe, "encode_inputs", lambda texts, *a: spoken.extend(texts) or encode(texts, *a))
    pipe(**get_dummy_inputs(text=["Shopping list\n- Eggs\n- Milk", "Plain text."], max_new_patches=1))
    assert spoken == ["Shopping list. Eggs. Milk", "Plain text."]
    spoken.clear()
    stream = pipe.stream(**get_dummy_inputs(text="Best\nMary", max_new_patches=1))
    list(stream)
    assert spoken == ["Best. Mary"]


def test_the_processor_reads_a_line_break_as_a_sentence_end_as_the_pipeline_does():
    """transformers' text-to-speech pipeline encodes texts with the processor alone: its line breaks were collapsed
    into spaces ("Best Mary"), unlike DiTARPipeline's."""
    from pipeline_helpers import get_dummy_pipeline

    processor = get_dummy_pipeline().processor
    text = "Shopping list\n- Eggs\n- Milk"
    marked = processor(mark_line_ends(text))["input_ids"]
    assert mark_line_ends(text) != text and processor(text)["input_ids"].tolist() == marked.tolist()
    assert processor("Best regards")["input_ids"].tolist() == processor("Best  regards")["input_ids"].tolist()
