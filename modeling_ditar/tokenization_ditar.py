"""Text front end of DiTAR: a character-level tokenizer and an optional espeak-ng phonemizer.

Text -> cleaning (control characters become spaces, zero-width and other invisible characters are deleted) -> NFKC ->
for English: a script check (other writing systems raise `ValueError`) and a language guess (French, German, ... text
logs a warning) -> `DiTARTextFrontend.normalize` (straight quotes, numbers/currency/dates/times/abbreviations spelled
out by [`text_normalization.normalize_text`], collapsed whitespace, lowercase when the vocabulary has no uppercase) ->
optional phonemization (`phonemizer`'s espeak backend, IPA with stress marks and punctuation) -> one token per
character. Text with no letter or digit left raises `ValueError` ("nothing to speak").

Unknown characters are checked where they can still be named: before phonemization, symbols that have no English
reading (`☃`, emoji) and letters of other scripts (when the script check is off), which espeak-ng would read as their
Unicode names; after it (and for grapheme tokenizers), characters missing from the vocabulary. `on_unknown` decides:
an error, or a warning (or info log) and then dropping (before phonemization) or mapping to `<unk>` (vocabulary).

The tokenizer is a plain `PreTrainedTokenizerFast` (a `tokenizers` WordLevel model over single characters) saved as
`tokenizer.json`; whether it expects phonemes, for which espeak language, and whether text is normalised and
language-checked are stored in its init kwargs (`tokenizer_config.json`: `"phonemize"`, `"language"`,
`"normalize_text"`, `"check_language"`; the last two default to true when absent), so they survive `save_pretrained` /
`from_pretrained`.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from collections import Counter

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils import logging

from .language_check import check_script, guess_latin_language, non_latin_letters
from .text_normalization import clean_text, has_speakable_content, normalize_text, unspeakable_characters

logger = logging.get_logger(__name__)

__all__ = ["DEFAULT_SYMBOLS", "DiTARTextFrontend", "build_ditar_tokenizer"]

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

_PUNCTUATION = list("!\"'(),-.:;?[]") + ["—", "–", "…", "«", "»", "¡", "¿"]
_DIGITS = list("0123456789")
_LETTERS = list("abcdefghijklmnopqrstuvwxyz")
# What espeak-ng (1.51/1.52, en-us, with stress) produced for 4,000 varied English sentences, followed by the other
# common IPA letters and diacritics, so that other espeak languages and accents mostly stay in vocabulary.
_IPA_ESPEAK_EN = list("æçðŋɐɑɒɔəɚɛɜɝɡɪɬɹɾʃʊʌʒʔˈˌːθᵻ") + ["\u0329"]  # U+0329 combining syllabic mark
_IPA_EXTRA = list("ʰʲʷˑ˞ɓɕɖɗɘɟɠɢɣɤɥɦɧɨɭɮɯɰɱɲɳɴɵɶɸɻɽʀʁʂʄʈʉʋʍʎʏʐʑʒʕʙʛʜʝʟʡʢʤʧβχøœᵊ") + [
    "\u0303",
    "\u032a",
    "\u032f",
    "\u0361",
    "\u0306",
    "\u0325",
    "\u031a",
]  # tilde, dental, non-syllabic, tie, ...

# Default symbol inventory (id 0 = <pad>, id 1 = <unk>, then these in order, starting with the space).
DEFAULT_SYMBOLS: list[str] = list(
    dict.fromkeys([" ", *_PUNCTUATION, *_DIGITS, *_LETTERS, *_IPA_ESPEAK_EN, *_IPA_EXTRA])
)

_QUOTES = {
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
}
_QUOTE_PATTERN = re.compile("|".join(map(re.escape, _QUOTES)))
_WHITESPACE = re.compile(r"\s+")
_ON_UNKNOWN = ("error", "warn", "replace")


def build_ditar_tokenizer(
    symbols: list[str] | None = None,
    phonemize: bool = False,
    language: str = "en-us",
    normalize_text: bool = True,
    check_language: bool = True,
) -> PreTrainedTokenizerFast:
    """Builds the character-level DiTAR tokenizer.

    Args:
        symbols: the characters of the vocabulary, one string of length 1 each (ids 2, 3, ... in this order; id 0 is
            `<pad>` and id 1 `<unk>`). Defaults to [`DEFAULT_SYMBOLS`]: space, punctuation, digits, lowercase ASCII
            letters and the IPA symbols espeak-ng produces (plus other common IPA).
        phonemize: whether text is converted to IPA with espeak-ng before tokenization (stored in the init kwargs).
        language: espeak-ng language code used when phonemizing (stored in the init kwargs).
        normalize_text / check_language: defaults of [`DiTARTextFrontend`]'s options of those names (stored in the
            init kwargs): spell out numbers, dates, ... of English text; refuse other scripts and warn on other
            languages.

    The backend normaliser collapses whitespace and, for grapheme (non-phonemized) tokenizers, applies NFKC and
    straight quotes and lowercases when `symbols` has no uppercase letter, so calling the tokenizer directly on raw text
    without digits, symbols or abbreviations agrees with [`DiTARTextFrontend.encode`] (which additionally spells out
    numbers and abbreviations, checks the language, reports unknown characters and phonemizes).
    """
    symbols = list(DEFAULT_SYMBOLS if symbols is None else symbols)
    if not symbols:
        raise ValueError("`symbols` is empty; the vocabulary needs at least one character.")
    for symbol in symbols:
        if not isinstance(symbol, str) or len(symbol) != 1:
            raise ValueError(
                f"`symbols` must hold single characters (the tokenizer is character-level), got {symbol!r}."
            )
    duplicates = sorted(s for s, n in Counter(symbols).items() if n > 1)
    if duplicates:
        raise ValueError(f"`symbols` contains duplicates: {duplicates!r}.")
    if not isinstance(language, str) or not language.strip():
        raise ValueError(f"`language` must be an espeak-ng language code such as 'en-us', got {language!r}.")

    vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1}
    vocab.update({symbol: index + 2 for index, symbol in enumerate(symbols)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    steps = []
    if not phonemize:
        steps.append(normalizers.NFKC())
        steps.extend(normalizers.Replace(src, dst) for src, dst in _QUOTES.items())
        if not any(symbol.isupper() for symbol in symbols):
            steps.append(normalizers.Lowercase())
    steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character is a token
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        phonemize=bool(phonemize),
        language=language,
        normalize_text=bool(normalize_text),
        check_language=bool(check_language),
    )


# ----------------------------------------------------------------------------------------------------------------------
# phonemizer (espeak-ng through `phonemizer`; espeak-ng itself from the `espeakng-loader` wheel or the system)
# ----------------------------------------------------------------------------------------------------------------------

_BACKENDS: dict[str, object] = {}
# phonemizer's own messages go to this child logger. Word-count mismatches are expected (espeak-ng expands "42" into two
# words) and not actionable, so they are filtered out.
_espeak_logger = logging.get_logger(__name__ + ".espeak")
_espeak_logger.addFilter(lambda record: not str(record.msg).startswith("words count mismatch"))
_BACKEND_LOCK = threading.Lock()
_ESPEAK_CONFIGURED = False


def _configure_espeak() -> str:
    """Points `phonemizer` at an espeak-ng library: `PHONEMIZER_ESPEAK_LIBRARY` if set, else the `espeakng-loader`
    wheel's copy (no system package needed), else whatever `phonemizer` finds on the system. Returns the source."""
    global _ESPEAK_CONFIGURED
    if os.environ.get("PHONEMIZER_ESPEAK_LIBRARY"):
        return "PHONEMIZER_ESPEAK_LIBRARY"
    if _ESPEAK_CONFIGURED:
        return "espeakng_loader"
    try:
        import espeakng_loader
    except ImportError:
        return "system"
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    _ESPEAK_CONFIGURED = True
    return "espeakng_loader"


def _espeak_backend(language: str):
    with _BACKEND_LOCK:
        if language in _BACKENDS:
            return _BACKENDS[language]
        try:
            from phonemizer.backend import EspeakBackend
        except ImportError as err:
            raise ImportError(
                "Phonemization needs the `phonemizer` package and an espeak-ng library: "
                "`pip install phonemizer espeakng-loader` (or `pip install 'modeling-ditar[phonemize]'`)."
            ) from err
        source = _configure_espeak()
        try:
            backend = EspeakBackend(
                language,
                with_stress=True,
                preserve_punctuation=True,
                language_switch="remove-flags",
                words_mismatch="ignore",
                logger=_espeak_logger,
            )
        except RuntimeError as err:
            raise ValueError(
                f"Could not start the espeak-ng phonemizer for language {language!r} (espeak-ng from {source}): {err}. "
                "Install `espeakng-loader` or the system `espeak-ng`, and check the language code "
                "(`espeak-ng --voices` lists them)."
            ) from err
        _BACKENDS[language] = backend
        return backend


# ----------------------------------------------------------------------------------------------------------------------
# front end
# ----------------------------------------------------------------------------------------------------------------------


class DiTARTextFrontend:
    """Normalises, optionally phonemizes and encodes text for DiTAR, reporting characters the vocabulary lacks.

    Args:
        tokenizer: a tokenizer from [`build_ditar_tokenizer`] (or loaded from its `save_pretrained` folder).
            Defaults to `build_ditar_tokenizer()`.
        phonemize / language: override the tokenizer's stored `phonemize` / `language` init kwargs.
        normalize_text: spell out numbers, currency, dates, times, ordinals, units, common abbreviations and symbols
            ("$3.50" -> "three dollars fifty cents", see [`text_normalization.normalize_text`]) before phonemization.
            English languages only. Default: the tokenizer's `normalize_text` init kwarg, else True.
        check_language: for English, raise `ValueError` on letters of other scripts (Chinese, Arabic, Cyrillic, ...)
            and log a warning naming the language when Latin-script text looks French, German, Spanish, Italian,
            Portuguese or Dutch (see [`language_check`]). Default: the tokenizer's `check_language` init kwarg, else
            True.

    Both options are also attributes; setting them updates the tokenizer's init kwargs, so a processor saved afterwards
    keeps them.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast | None = None,
        phonemize: bool | None = None,
        language: str | None = None,
        normalize_text: bool | None = None,
        check_language: bool | None = None,
    ):
        self.tokenizer = build_ditar_tokenizer() if tokenizer is None else tokenizer
        init_kwargs = getattr(self.tokenizer, "init_kwargs", {}) or {}
        if normalize_text is not None:
            self.normalize_text = normalize_text
        if check_language is not None:
            self.check_language = check_language
        self.use_phonemes = bool(init_kwargs.get("phonemize", False) if phonemize is None else phonemize)
        self.language = language if language is not None else init_kwargs.get("language", "en-us")
        if not isinstance(self.language, str) or not self.language.strip():
            raise ValueError(f"`language` must be an espeak-ng language code such as 'en-us', got {self.language!r}.")
        if self.tokenizer.unk_token_id is None:
            raise ValueError("The tokenizer has no `unk_token`; DiTAR's front end needs one to map unknown characters.")
        self.unk_token_id = int(self.tokenizer.unk_token_id)
        special = set(self.tokenizer.all_special_tokens)
        self._vocab = {token: index for token, index in self.tokenizer.get_vocab().items() if token not in special}
        self.lowercase = not any(token.isupper() for token in self._vocab)

    @property
    def normalize_text(self) -> bool:
        """Whether English text gets numbers, dates, abbreviations, ... spelled out (stored in the tokenizer)."""
        return bool((self.tokenizer.init_kwargs or {}).get("normalize_text", True))

    @normalize_text.setter
    def normalize_text(self, value: bool):
        self.tokenizer.init_kwargs["normalize_text"] = bool(value)

    @property
    def check_language(self) -> bool:
        """Whether English text is checked for other scripts and languages (stored in the tokenizer)."""
        return bool((self.tokenizer.init_kwargs or {}).get("check_language", True))

    @check_language.setter
    def check_language(self, value: bool):
        self.tokenizer.init_kwargs["check_language"] = bool(value)

    @property
    def is_english(self) -> bool:
        """Whether the espeak-ng language is an English one ("en", "en-us", "en-gb", ...)."""
        return re.match(r"en($|[-_])", self.language.lower()) is not None

    # ------------------------------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> DiTARTextFrontend:
        """Loads the tokenizer saved by [`save_pretrained`] (or any DiTAR tokenizer folder) and wraps it."""
        options = {key: kwargs.pop(key, None) for key in ("phonemize", "language", "normalize_text", "check_language")}
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls(tokenizer, **options)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Saves the tokenizer, with this front end's `phonemize` / `language` / `normalize_text` / `check_language` in
        its init kwargs."""
        self.tokenizer.init_kwargs["phonemize"] = self.use_phonemes
        self.tokenizer.init_kwargs["language"] = self.language
        self.tokenizer.init_kwargs["normalize_text"] = self.normalize_text
        self.tokenizer.init_kwargs["check_language"] = self.check_language
        return self.tokenizer.save_pretrained(save_directory, **kwargs)

    # ------------------------------------------------------------------------------------------------------------------
    # text -> symbols
    # ------------------------------------------------------------------------------------------------------------------

    @staticmethod
    def _check_text(text) -> str:
        if not isinstance(text, str):
            raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
        return text

    def normalize(self, text: str) -> str:
        """Control characters -> spaces, invisible characters deleted, NFKC, curly quotes -> straight quotes, then (for
        English with `normalize_text`) numbers, currency, dates, times, abbreviations and symbols spelled out,
        whitespace runs -> one space, stripped; lowercased when the vocabulary has no uppercase letter and the text is
        not going to be phonemized (espeak-ng reads case itself, e.g. "US" vs "us")."""
        text = unicodedata.normalize("NFKC", clean_text(self._check_text(text)))
        text = _QUOTE_PATTERN.sub(lambda match: _QUOTES[match.group(0)], text)
        if self.normalize_text and self.is_english:
            text = normalize_text(text)
        text = _WHITESPACE.sub(" ", text).strip()
        if self.lowercase and not self.use_phonemes:
            text = text.lower()
        return text

    def check_text_language(self, text: str) -> str | None:
        """For English with `check_language`: raises `ValueError` when `text` has letters of another script, and
        logs a warning (and returns the language's name) when it looks like another Latin-script language."""
        if not (self.check_language and self.is_english):
            return None
        text = unicodedata.normalize("NFKC", clean_text(self._check_text(text)))
        check_script(text)
        language = guess_latin_language(text)
        if language is not None:
            shown = text if len(text) <= 60 else text[:60] + "..."
            logger.warning(
                f"`text` {shown!r} looks {language}; the model speaks English only and will read it with English "
                "pronunciation. Pass check_language=False to the text front end to silence this."
            )
        return language

    def phonemize(self, text: str) -> str:
        """IPA (with stress marks, punctuation kept) of already normalised `text`, through espeak-ng."""
        backend = _espeak_backend(self.language)
        phonemes = backend.phonemize([self._check_text(text)], strip=True, njobs=1)[0]
        return _WHITESPACE.sub(" ", phonemes).strip()

    def unreadable_characters(self, normalized: str) -> list[str]:
        """The characters of normalised text that espeak-ng has no reading for in this language: symbols such as ☃
        or emoji (read as Unicode names otherwise) and, for English, letters of other scripts. Empty for grapheme
        tokenizers (their vocabulary decides)."""
        if not self.use_phonemes:
            return []
        found = unspeakable_characters(normalized)
        if self.is_english:
            found += non_latin_letters(normalized)
        return list(dict.fromkeys(found))

    def text_to_symbols(self, text: str, on_unknown: str = "warn") -> str:
        """The exact character string that gets tokenized: normalised text, or its phonemes when phonemizing.

        Args:
            on_unknown: for phonemized text, what to do with characters espeak-ng cannot read
                ([`unreadable_characters`]): `"warn"` drops them with a warning, `"replace"` drops them with an info
                log, `"error"` raises `ValueError` naming them. (They cannot become `<unk>`: phonemes have no place
                for them.)

        Raises `ValueError` for empty or whitespace-only text, text with nothing to speak (no letter or digit, e.g.
        "...!!!"), text in another script (see [`check_text_language`]), and when phonemization produces nothing.
        """
        if on_unknown not in _ON_UNKNOWN:
            raise ValueError(f"`on_unknown` must be one of {_ON_UNKNOWN}, got {on_unknown!r}.")
        if isinstance(text, str) and text.strip():
            self.check_text_language(text)
        normalized = self.normalize(text)
        if not normalized:
            raise ValueError(f"`text` is empty or whitespace only ({text!r}); give at least one word to speak.")
        unreadable = self.unreadable_characters(normalized)
        if unreadable:
            listing = ", ".join(
                f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed').lower()})" for ch in unreadable
            )
            message = f"`text` {text!r} has characters with no reading in {self.language!r}: {listing}"
            if on_unknown == "error":
                raise ValueError(message + ". Remove them or spell them out, or pass on_unknown='warn' to drop them.")
            (logger.warning if on_unknown == "warn" else logger.info)(message + "; they are dropped.")
            dropped = set(unreadable)
            normalized = _WHITESPACE.sub(" ", "".join(" " if ch in dropped else ch for ch in normalized)).strip()
            normalized = re.sub(r" +([,.;:!?])", r"\1", normalized)
        if not has_speakable_content(normalized):
            raise ValueError(
                f"`text` {text!r} has nothing to speak: no letter or digit"
                + (" once unreadable characters are dropped" if unreadable else "")
                + ". Give at least one word."
            )
        if not self.use_phonemes:
            return normalized
        symbols = self.phonemize(normalized)
        if not symbols:
            raise ValueError(f"`text` {text!r} produced no phonemes (espeak-ng language {self.language!r}).")
        return symbols

    def unknown_characters(self, text: str) -> list[str]:
        """The distinct characters of `text` that are unknown, in order of appearance: before phonemization, those
        espeak-ng cannot read ([`unreadable_characters`]); then those of `text_to_symbols(text)` that the vocabulary
        lacks."""
        unreadable = self.unreadable_characters(self.normalize(text))
        symbols = self.text_to_symbols(text, on_unknown="replace")
        return list(dict.fromkeys([*unreadable, *(ch for ch in symbols if ch not in self._vocab)]))

    # ------------------------------------------------------------------------------------------------------------------
    # symbols -> ids
    # ------------------------------------------------------------------------------------------------------------------

    def encode(self, text: str, on_unknown: str = "warn") -> list[int]:
        """Token ids of `text` (one per character of [`text_to_symbols`]).

        Args:
            on_unknown: what to do with unknown characters. Before phonemization (phonemizing tokenizers), characters
                espeak-ng cannot read (symbols such as ☃ or emoji; letters of other scripts when `check_language` is
                off): `"warn"` (default) drops them with a warning, `"replace"` drops them with an info log, `"error"`
                raises `ValueError` naming them. Characters of the symbols (phonemes, or the text of grapheme
                tokenizers) that the vocabulary lacks: `"warn"` maps them to `<unk>` and logs which ones,
                `"replace"` maps them to `<unk>` and logs at info level, `"error"` raises `ValueError`.

        Raises `ValueError` for empty text, text with nothing to speak, text in another script, text that yields no
        symbols, and text made only of unknown characters.
        """
        if on_unknown not in _ON_UNKNOWN:
            raise ValueError(f"`on_unknown` must be one of {_ON_UNKNOWN}, got {on_unknown!r}.")
        symbols = self.text_to_symbols(text, on_unknown=on_unknown)
        ids = [self._vocab.get(ch, self.unk_token_id) for ch in symbols]
        unknown = Counter(ch for ch in symbols if ch not in self._vocab)
        if unknown:
            listing = ", ".join(f"{ch!r} (U+{ord(ch):04X}) x{n}" for ch, n in unknown.items())
            what = "phonemes" if self.use_phonemes else "text"
            message = (
                f"{sum(unknown.values())} character(s) of the {what} {symbols!r} are not in the vocabulary: {listing}"
            )
            if on_unknown == "error":
                raise ValueError(
                    message + ". Remove or spell them out, or pass on_unknown='warn' to map them to <unk>."
                )
            if not any(ch in self._vocab and not ch.isspace() for ch in symbols):
                raise ValueError(message + "; no character of it is in the vocabulary. Check the language/vocabulary.")
            (logger.warning if on_unknown == "warn" else logger.info)(message + f"; they are mapped to {UNK_TOKEN}.")
        if not ids:
            raise ValueError(f"`text` {text!r} encodes to no tokens.")
        return ids

    def __call__(self, text: str | list[str], on_unknown: str = "warn") -> list[int] | list[list[int]]:
        """`encode` for one string, or a list of ids per string for a list of strings."""
        if isinstance(text, (list, tuple)):
            return [self.encode(t, on_unknown=on_unknown) for t in text]
        return self.encode(text, on_unknown=on_unknown)

    def decode(self, ids: list[int]) -> str:
        """The characters of `ids` (special tokens skipped)."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)
