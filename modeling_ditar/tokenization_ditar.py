"""Text front end of DiTAR: a character-level tokenizer and an optional espeak-ng phonemizer.

Text -> `DiTARTextFrontend.normalize` (NFKC, straight quotes, collapsed whitespace, lowercase when the vocabulary has no
uppercase) -> optional phonemization (`phonemizer`'s espeak backend, IPA with stress marks and punctuation) -> one token
per character. Characters missing from the vocabulary are reported (warning, error or quiet replacement by `<unk>`),
never dropped.

The tokenizer is a plain `PreTrainedTokenizerFast` (a `tokenizers` WordLevel model over single characters) saved as
`tokenizer.json`; whether it expects phonemes and for which espeak language are stored in its init kwargs
(`tokenizer_config.json`: `"phonemize"`, `"language"`), so they survive `save_pretrained` / `from_pretrained`.
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
    symbols: list[str] | None = None, phonemize: bool = False, language: str = "en-us"
) -> PreTrainedTokenizerFast:
    """Builds the character-level DiTAR tokenizer.

    Args:
        symbols: the characters of the vocabulary, one string of length 1 each (ids 2, 3, ... in this order; id 0 is
            `<pad>` and id 1 `<unk>`). Defaults to [`DEFAULT_SYMBOLS`]: space, punctuation, digits, lowercase ASCII
            letters and the IPA symbols espeak-ng produces (plus other common IPA).
        phonemize: whether text is converted to IPA with espeak-ng before tokenization (stored in the init kwargs).
        language: espeak-ng language code used when phonemizing (stored in the init kwargs).

    The backend normaliser collapses whitespace and, for grapheme (non-phonemized) tokenizers, applies NFKC and
    straight quotes and lowercases when `symbols` has no uppercase letter, so calling the tokenizer directly on raw text
    agrees with [`DiTARTextFrontend.encode`] (which additionally reports unknown characters and phonemizes).
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
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast | None = None,
        phonemize: bool | None = None,
        language: str | None = None,
    ):
        self.tokenizer = build_ditar_tokenizer() if tokenizer is None else tokenizer
        init_kwargs = getattr(self.tokenizer, "init_kwargs", {}) or {}
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

    # ------------------------------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> DiTARTextFrontend:
        """Loads the tokenizer saved by [`save_pretrained`] (or any DiTAR tokenizer folder) and wraps it."""
        phonemize = kwargs.pop("phonemize", None)
        language = kwargs.pop("language", None)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls(tokenizer, phonemize=phonemize, language=language)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Saves the tokenizer, with this front end's `phonemize` / `language` in its init kwargs."""
        self.tokenizer.init_kwargs["phonemize"] = self.use_phonemes
        self.tokenizer.init_kwargs["language"] = self.language
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
        """NFKC, curly quotes -> straight quotes, whitespace runs -> one space, stripped; lowercased when the
        vocabulary has no uppercase letter and the text is not going to be phonemized (espeak-ng reads case itself,
        e.g. "US" vs "us")."""
        text = unicodedata.normalize("NFKC", self._check_text(text))
        text = _QUOTE_PATTERN.sub(lambda match: _QUOTES[match.group(0)], text)
        text = _WHITESPACE.sub(" ", text).strip()
        if self.lowercase and not self.use_phonemes:
            text = text.lower()
        return text

    def phonemize(self, text: str) -> str:
        """IPA (with stress marks, punctuation kept) of already normalised `text`, through espeak-ng."""
        backend = _espeak_backend(self.language)
        phonemes = backend.phonemize([self._check_text(text)], strip=True, njobs=1)[0]
        return _WHITESPACE.sub(" ", phonemes).strip()

    def text_to_symbols(self, text: str) -> str:
        """The exact character string that gets tokenized: normalised text, or its phonemes when phonemizing.

        Raises `ValueError` for empty or whitespace-only text and when phonemization produces nothing.
        """
        normalized = self.normalize(text)
        if not normalized:
            raise ValueError(f"`text` is empty or whitespace only ({text!r}); give at least one word to speak.")
        if not self.use_phonemes:
            return normalized
        symbols = self.phonemize(normalized)
        if not symbols:
            raise ValueError(f"`text` {text!r} produced no phonemes (espeak-ng language {self.language!r}).")
        return symbols

    def unknown_characters(self, text: str) -> list[str]:
        """The distinct characters of `text_to_symbols(text)` that the vocabulary lacks, in order of appearance."""
        return list(dict.fromkeys(ch for ch in self.text_to_symbols(text) if ch not in self._vocab))

    # ------------------------------------------------------------------------------------------------------------------
    # symbols -> ids
    # ------------------------------------------------------------------------------------------------------------------

    def encode(self, text: str, on_unknown: str = "warn") -> list[int]:
        """Token ids of `text` (one per character of [`text_to_symbols`]).

        Args:
            on_unknown: what to do with characters the vocabulary lacks: `"warn"` (default) maps them to `<unk>` and
                logs which ones, `"replace"` maps them to `<unk>` and logs at info level, `"error"` raises `ValueError`.
                They are never dropped.

        Raises `ValueError` for empty text, text that yields no symbols, and text made only of unknown characters.
        """
        if on_unknown not in _ON_UNKNOWN:
            raise ValueError(f"`on_unknown` must be one of {_ON_UNKNOWN}, got {on_unknown!r}.")
        symbols = self.text_to_symbols(text)
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
