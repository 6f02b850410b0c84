"""Tests of the DiTAR character tokenizer and text front end (offline; phonemizer tests skip without phonemizer)."""

import logging

import pytest
from transformers import AutoTokenizer

from modeling_ditar.tokenization_ditar import DEFAULT_SYMBOLS, DiTARTextFrontend, build_ditar_tokenizer


@pytest.fixture(scope="module")
def frontend():
    return DiTARTextFrontend(build_ditar_tokenizer())


def test_vocabulary_layout():
    tokenizer = build_ditar_tokenizer()
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id == 1
    assert tokenizer.convert_tokens_to_ids(" ") == 2
    assert len(tokenizer) == len(DEFAULT_SYMBOLS) + 2 < 256
    for ch in "az09,.?' ˈɪəɹæðŋʃθː":
        assert ch in tokenizer.get_vocab(), ch
    assert tokenizer.init_kwargs["phonemize"] is False and tokenizer.init_kwargs["language"] == "en-us"


def test_normalize_and_encode(frontend):
    assert frontend.normalize("  Hello,\n\t“World”…  ") == 'hello, "world"...'
    ids = frontend.encode("Hi  there!")
    assert frontend.decode(ids) == "hi there!"
    assert len(ids) == len("hi there!")
    # the tokenizer alone normalises the same way
    assert frontend.tokenizer("Hi  there!", add_special_tokens=False)["input_ids"] == ids
    assert frontend(["a", "b c"]) == [frontend.encode("a"), frontend.encode("b c")]


def test_unknown_characters_are_reported(frontend, caplog):
    text = "naïve ß"  # "ï" (NFKC keeps it) and "ß" are not in the default vocabulary
    assert frontend.unknown_characters(text) == ["ï", "ß"]
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        ids = frontend.encode(text)
    assert ids.count(frontend.unk_token_id) == 2 and len(ids) == len("naïve ß")
    assert "'ï'" in caplog.text and "'ß'" in caplog.text and "<unk>" in caplog.text
    with pytest.raises(ValueError, match="ß"):
        frontend.encode(text, on_unknown="error")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        assert frontend.encode(text, on_unknown="replace") == ids
    assert caplog.text == ""
    with pytest.raises(ValueError, match="on_unknown"):
        frontend.encode(text, on_unknown="drop")


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_raises(frontend, text):
    with pytest.raises(ValueError, match="empty"):
        frontend.encode(text)


def test_text_of_only_unknown_characters_raises(frontend):
    with pytest.raises(ValueError, match="Han script.*English only"):
        frontend.encode("日本 語")
    unchecked = DiTARTextFrontend(build_ditar_tokenizer(check_language=False))
    with pytest.raises(ValueError, match="vocabulary"):
        unchecked.encode("日本 語")
    with pytest.raises(ValueError, match="string"):
        frontend.encode(None)


def test_bad_symbols_raise():
    with pytest.raises(ValueError, match="single characters"):
        build_ditar_tokenizer(["ab"])
    with pytest.raises(ValueError, match="duplicates"):
        build_ditar_tokenizer(["a", "a"])


def test_uppercase_vocabulary_keeps_case():
    frontend = DiTARTextFrontend(build_ditar_tokenizer(list(" abAB")))
    assert not frontend.lowercase
    assert frontend.decode(frontend.encode("Ab ba")) == "Ab ba"


def test_save_load_round_trip(tmp_path):
    frontend = DiTARTextFrontend(build_ditar_tokenizer(phonemize=True, language="en-gb"))
    frontend.save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer.init_kwargs["phonemize"] is True and tokenizer.init_kwargs["language"] == "en-gb"
    assert tokenizer.get_vocab() == frontend.tokenizer.get_vocab()
    reloaded = DiTARTextFrontend.from_pretrained(tmp_path)
    assert reloaded.use_phonemes and reloaded.language == "en-gb"
    grapheme = DiTARTextFrontend()
    grapheme.save_pretrained(tmp_path / "g")
    again = DiTARTextFrontend.from_pretrained(tmp_path / "g")
    assert not again.use_phonemes
    text = "Round trip, 123!"
    assert again.encode(text) == grapheme.encode(text)
    assert again.decode(again.encode(text)) == "round trip, one hundred and twenty three!"
    plain = "Round trip, one two three!"  # the tokenizer alone does not spell out numbers
    assert again.tokenizer(plain, add_special_tokens=False)["input_ids"] == grapheme.encode(plain)


def test_phonemize_path():
    pytest.importorskip("phonemizer")
    frontend = DiTARTextFrontend(build_ditar_tokenizer(phonemize=True))
    try:
        symbols = frontend.text_to_symbols("Hello, world!")
    except (ImportError, ValueError) as err:  # no espeak-ng library reachable
        pytest.skip(f"espeak-ng unavailable: {err}")
    assert "ˈ" in symbols and symbols.endswith("!") and "," in symbols
    assert frontend.unknown_characters("The quick brown fox jumps over the lazy dog.") == []
    ids = frontend.encode("Hello, world!")
    assert frontend.decode(ids) == symbols and frontend.unk_token_id not in ids
    assert "ˈ" in frontend.text_to_symbols("42")  # numbers are spelled out by espeak-ng
    with pytest.raises(ValueError, match="empty"):
        frontend.encode("  ")
