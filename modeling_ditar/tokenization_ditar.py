"""Text front end of DiTAR: a character-level tokenizer and an optional espeak-ng phonemizer.

Text -> cleaning (control characters become spaces, zero-width and other invisible characters are deleted) -> NFKC ->
for English: a script check (other writing systems raise `ValueError`) and a language guess (French, German, ... text
logs a warning) -> `DiTARTextFrontend.normalize` (straight quotes, numbers/currency/dates/times/abbreviations spelled
out by [`normalize_text`], collapsed whitespace, lowercase when the vocabulary has no uppercase) ->
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

logger = logging.get_logger(__name__)

__all__ = [
    "DEFAULT_SYMBOLS",
    "DiTARTextFrontend",
    "build_ditar_tokenizer",
    "check_script",
    "clean_text",
    "guess_latin_language",
    "has_speakable_content",
    "non_latin_letters",
    "non_latin_scripts",
    "normalize_text",
    "number_to_words",
    "ordinal_to_words",
    "unspeakable_characters",
    "year_to_words",
]

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
_PHONEMIZE_LOCK = threading.Lock()
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
# text normalisation (English written forms -> spoken words)
# ----------------------------------------------------------------------------------------------------------------------
# English text normalisation for DiTAR: written forms -> the words a speaker would say, before phonemisation.
#
# espeak-ng reads many written forms literally ("$3.50" -> "dollar three point five zero", "12/05/2024" -> "twelve slash
# zero five slash two thousand twenty four"). [`normalize_text`] rewrites them into plain English words first, with one
# table-driven regular-expression pass per kind of written form. Web and e-mail addresses come first, as their dots,
# slashes and digits are not sentence ends, decimals or dates: they are read part by part the way people say them,
# without the scheme (`https://www.example.com/docs` -> "w w w dot example dot com slash docs", `jane.doe@example.org`
# -> "jane dot doe at example dot org"). A number glued to "x" is then read "by" before another number (`1920x1080`)
# and "times" as a multiplier (`2x faster`, `3x the speed`, `improved 10x.`; before a noun, `a 10x engineer`, the "x"
# stays). Then, in this order:
#
# 0. phone numbers digit by digit (`555-1234`, `(555) 123-4567`, `020 7946 0958`, `Call 911` -> "Call nine one one");
#    thousands grouped by spaces read as one number (`1 000 000` -> "one million"); a price or rate per unit, "/" ->
#    "per" (`$5.99/month` -> "five dollars ninety nine cents per month", `$10/hr` -> "ten dollars per hour", `5 m/s`
#    -> "five meters per second"); ranges:
#    a hyphen or an en dash between two numbers, amounts or times becomes "to" (`5-10` -> "five to ten", `$20-$30` ->
#    "twenty to thirty dollars", `9am-5pm`, `1990-95` -> "nineteen ninety to ninety five"); the sides are read by the
#    rules below;
# 1. currency: `$3.50` -> "three dollars fifty cents", `£5`, `€20`, `¥100`, `50¢`,
#    `$2 million` -> "two million dollars";
# 2. dates: ISO `2024-12-05`, numeric `12/05/2024` or `12-05-2024` read **month first (US convention)** unless the first
#    number cannot be a month (`25/12/2024` is read day first), `December 5, 2024`, `Dec. 5th`, `5 December 2024`;
#    a month and day without a year only where it clearly is a date, after a date word or a weekday or in a range
#    (`on 1/5` -> "on January fifth", `3/1-3/15`; `1/5 of the votes` stays a fraction);
#    digit groups (`1-800-555-1234`) digit by digit, dotted groups as versions (`3.11.4` -> "three point eleven point
#    four", `v2.0` -> "version two point zero", `192.168.1.1` -> "one nine two point one six eight point one point
#    one");
# 3. times: `3:30 pm` -> "three thirty PM", `14:05` -> "fourteen oh five", `24:00` -> "twenty four hundred", `7am`,
#    `9.30pm`; with seconds a duration (`took 1:30:15` -> "one hour, thirty minutes and fifteen seconds"; a timestamp
#    after "at" or a date, or before a time zone); another colon between numbers is a score or a ratio (`99:100` ->
#    "ninety nine to one hundred"; a chapter and verse keeps it);
# 4. ordinals (`23rd`), percentages, numbers with a unit (`5 km` -> "five kilometers", `1 kg` -> "one kilogram",
#    `90°F`, `.5 mg` -> "point five milligrams", `2 tbsp.` -> "two tablespoons", `1/2 tsp` -> "one half teaspoon"),
#    small fractions (`3/4`); a whole number and a fraction are read first (`1 1/2 cups`, `2-3/4`, `1½` -> "one and a
#    half"), fraction characters (`½`, `¾`) written out before NFKC;
# 5. years: a standalone four-digit number from 1000 to 2099 without separators is read as a year (`1999` -> "nineteen
#    ninety nine", `2024` -> "twenty twenty four", `1990s` -> "nineteen nineties", `mid-1990s`); write `1,999` for the
#    cardinal;
# 6. other numbers: cardinals (with thousands separators), decimals (`3.14` -> "three point one four", `1.5M` -> "one
#    point five million", `2.5x`), negatives (`-5` -> "minus five"); digit strings with a leading zero or more than 15
#    digits are read digit by digit;
# 7. abbreviations (`Dr.`, `Mr.`, `Mrs.`, `Ms.`, `St.` as Saint before a name and Street otherwise, `etc.`, `e.g.`,
#    `i.e.`, `vs.`, `No. 5`/`#5` -> "number five", ...) and symbols (`&` `%` `+` `=` `@` `×` `°` ...); formatting marks
#    (`*`, `_`, `|`, `•`, `™`, `®`, ...) become spaces; isolated Greek letters are named (`π` -> "pi"); Roman numerals
#    of two letters or more after a keyword (`World War II` -> "World War two", `Super Bowl LVII`) or a capitalised
#    name (`Charles III` -> "Charles the third"; up to 39, no L); in a clause written in capitals, "IT" and "US" are
#    the pronouns (`DO IT NOW` -> "DO it NOW"), which espeak-ng would spell as acronyms.
#
# Number words come from `num2words` (hyphens and commas removed: "twenty four", "one thousand two hundred and five").
# [`clean_text`] removes what must never reach the phonemizer: control characters (a NUL would end espeak-ng's input)
# become spaces, invisible format characters (zero-width space/joiners, BOM, soft hyphen, variation selectors) are
# deleted so they do not split words. [`unspeakable_characters`] names the symbols left without an English reading
# (`☃`, emoji, ...), and [`has_speakable_content`] tells whether any letter or digit is left.


_SPACE_LIKE_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_VARIATION_SELECTORS = re.compile(r"[\ufe00-\ufe0f\U000e0100-\U000e01ef]")


def clean_text(text: str) -> str:
    """Control characters -> one space each (so "a\\x00b" keeps both words); Unicode format characters (category Cf:
    zero-width space and joiners, BOM, soft hyphen, bidi marks, ...) and variation selectors are deleted, so
    "wor\\u200bld" stays "world". Tabs and newlines are kept (they are whitespace)."""
    text = _SPACE_LIKE_CONTROLS.sub(" ", text)
    text = _VARIATION_SELECTORS.sub("", text)
    if any(unicodedata.category(ch) == "Cf" for ch in text):
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return text


def has_speakable_content(text: str) -> bool:
    """Whether `text` has at least one letter or digit (punctuation and symbols alone say nothing)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


# Symbols espeak-ng gives an English reading that is worth keeping (currency names, slash, ...); anything else of the
# Unicode symbol categories (So, Sk, Sm), private-use or unassigned is "unspeakable".
_READABLE_SYMBOLS = set("$£€¥¢₹/")


def unspeakable_characters(text: str) -> list[str]:
    """The distinct characters of (normalised) `text` that have no English reading: symbols such as ☃ or emoji, which
    espeak-ng would otherwise speak as their Unicode names ("snowman"), private-use and unassigned code points."""
    found = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("So", "Sk", "Sm", "Co", "Cn", "Cs") and ch not in _READABLE_SYMBOLS:
            found.append(ch)
    return list(dict.fromkeys(found))


# ----------------------------------------------------------------------------------------------------------------------
# number words (num2words)
# ----------------------------------------------------------------------------------------------------------------------

_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()


def _num2words(value, **kwargs) -> str:
    try:
        from num2words import num2words
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError(
            "Text normalisation needs the `num2words` package: `pip install num2words` "
            "(or turn it off with normalize_text=False)."
        ) from err
    words = num2words(value, lang="en", **kwargs)
    return re.sub(r"\s+", " ", words.replace("-", " ").replace(",", "")).strip()


def number_to_words(number: str | int) -> str:
    """Words of an integer or decimal given as text ("1,234.5", "-7", "0042") or an int.

    Thousands separators are dropped, decimals are read digit by digit after "point" (".5" is "point five", as
    written), a leading minus is "minus", and integers with a leading zero or more than 15 digits are read digit by
    digit."""
    text = str(number).strip().replace(",", "")
    sign = ""
    if text[:1] in "-−":
        sign, text = "minus ", text[1:]
    whole, _, fraction = text.partition(".")
    if not whole and fraction:
        return sign + "point " + _digits(fraction)
    if not whole:
        whole = "0"
    if fraction:
        spoken = _integer_words(whole, digit_by_digit_zero=False) + " point " + _digits(fraction)
    else:
        spoken = _integer_words(whole)
    return sign + spoken


def _integer_words(digits: str, digit_by_digit_zero: bool = True) -> str:
    if (digit_by_digit_zero and len(digits) > 1 and digits[0] == "0") or len(digits) > 15:
        return _digits(digits)
    return _num2words(int(digits))


def _digits(digits: str) -> str:
    return " ".join(_DIGIT_WORDS[int(d)] for d in digits)


def ordinal_to_words(number: int | str) -> str:
    """ "twenty third" for 23."""
    return _num2words(int(str(number).replace(",", "")), to="ordinal")


def year_to_words(year: int | str) -> str:
    """ "nineteen ninety nine" for 1999, "twenty twenty four" for 2024, "two thousand and five" for 2005."""
    return _num2words(int(year), to="year")


def _plural(words: str) -> str:
    """The plural of the last number word: "nineteen ninety" -> "nineteen nineties", "twenty ten" -> "twenty tens"."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x") else "s")
    return f"{head} {last}".strip()


# ----------------------------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------------------------

# symbol: (singular, plural, subunit singular, subunit plural)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_SCALES = ("thousand", "million", "billion", "trillion")
_SHORT_SCALES = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion"}  # $10K, $1.2M, 1.5B, $5bn

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MONTH_ABBREVIATIONS = {m[:3]: m for m in _MONTHS} | {"Sept": "September"}
_MONTH_NAMES = {m.lower(): m for m in _MONTHS} | {k.lower(): v for k, v in _MONTH_ABBREVIATIONS.items()}

# unit written after a number: (singular, plural). Case-sensitive. Forms that after a number are also a word or stand
# for something else are left out: "in", "pt"/"pts" (points), "L", "T", "hp" (hit points), "nm" (nautical miles),
# "gals".
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "m": ("meter", "meters"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"),
    "mi": ("mile", "miles"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "kW": ("kilowatt", "kilowatts"),
    "W": ("watt", "watts"),
    "V": ("volt", "volts"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "mA": ("milliamp", "milliamps"),
    "mAh": ("milliamp hour", "milliamp hours"),
    "MW": ("megawatt", "megawatts"),
    "GW": ("gigawatt", "gigawatts"),
    "dB": ("decibel", "decibels"),
    "kbps": ("kilobit per second", "kilobits per second"),
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"),
    "rpm": ("revolution per minute", "revolutions per minute"),
    "ms": ("millisecond", "milliseconds"),
    "sec": ("second", "seconds"),
    "secs": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    # kitchen and household measures
    "tsp": ("teaspoon", "teaspoons"),
    "tsps": ("teaspoon", "teaspoons"),
    "tbsp": ("tablespoon", "tablespoons"),
    "Tbsp": ("tablespoon", "tablespoons"),
    "tbsps": ("tablespoon", "tablespoons"),
    "tbs": ("tablespoon", "tablespoons"),
    "Tbs": ("tablespoon", "tablespoons"),
    "fl oz": ("fluid ounce", "fluid ounces"),
    "qt": ("quart", "quarts"),
    "qts": ("quart", "quarts"),
    "gal": ("gallon", "gallons"),
    "doz": ("dozen", "dozen"),
    "kcal": ("kilocalorie", "kilocalories"),
    "mcg": ("microgram", "micrograms"),
    "yd": ("yard", "yards"),
    "yds": ("yard", "yards"),
    "sq ft": ("square foot", "square feet"),
    "sq mi": ("square mile", "square miles"),
    "sq km": ("square kilometer", "square kilometers"),
    "sq m": ("square meter", "square meters"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}

# unit after "/" in a price or rate ("$5.99/month", "$10/hr", "5 GB/day") -> the word read after "per". Case-sensitive.
_PER_UNITS = {
    "month": "month",
    "mo": "month",
    "year": "year",
    "yr": "year",
    "week": "week",
    "wk": "week",
    "day": "day",
    "hour": "hour",
    "hr": "hour",
    "h": "hour",
    "min": "minute",
    "sec": "second",
    "s": "second",  # a speed or a rate: "5 m/s", "10 MB/s"
    "night": "night",
    "person": "person",
    "pp": "person",
    "kg": "kilogram",
    "lb": "pound",
    "item": "item",
    "user": "user",
    "seat": "seat",
    "GB": "gigabyte",
}

# words after which a Roman numeral is a number said as a cardinal ("World War two", "Chapter four", "Super Bowl fifty
# seven"), also in lowercase; after any other capitalised word it is a regnal number ("Charles the third").
# Abbreviations -> their word.
_ROMAN_KEYWORDS = {
    word: word
    for word in (
        "War Chapter Part Volume Book Act Scene Phase Type Title Level Class Grade Stage Section Article Appendix "
        "Apollo Bowl Mark Episode Season Round Step Page Schedule Rule Amendment Division Tier Category Unit Model "
        "Version Gen Generation"
    ).split()
} | {"Vol": "Volume", "Vol.": "Volume", "Mk": "Mark", "Mk.": "Mark"}
_ROMAN_KEYWORDS |= {word.lower(): word.lower() for word in _ROMAN_KEYWORDS if word.isalpha()}  # "type II diabetes"
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50}

# abbreviation -> words; "title" ones precede a name and never end a sentence, the others keep a sentence-final period
_TITLES = {
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Dr.": "Doctor",
    "Prof.": "Professor",
    "Rev.": "Reverend",
    "Capt.": "Captain",
    "Gen.": "General",
    "Lt.": "Lieutenant",
    "Col.": "Colonel",
    "Sgt.": "Sergeant",
    "Gov.": "Governor",
    "Sen.": "Senator",
    "Mt.": "Mount",
    "Ft.": "Fort",
}
_ABBREVIATIONS = {
    "etc.": "et cetera",
    "e.g.": "for example",
    "i.e.": "that is",
    "vs.": "versus",
    "vs": "versus",
    "approx.": "approximately",
    "Jr.": "Junior",
    "Sr.": "Senior",
    "Ave.": "Avenue",
    "Blvd.": "Boulevard",
    "Rd.": "Road",
    "Inc.": "Incorporated",
    "Ltd.": "Limited",
    "Corp.": "Corporation",
    "Dept.": "Department",
    "dept.": "department",
    "fig.": "figure",
    "Fig.": "Figure",
    "vol.": "volume",
    "Vol.": "Volume",
}
# abbreviations that carry a name on ("Martin Luther King Jr. Blvd.", "Smith Jr. Co.", "Acme Inc. Ltd."): a period
# before one of them does not end the sentence. Others that may open a sentence ("Fig. 3 shows", "Vol. 2 is") are not
# among them.
_NAME_SUFFIXES = ("Jr.", "Sr.", "Ave.", "Blvd.", "Rd.", "Inc.", "Ltd.", "Corp.", "Co.")

_SYMBOLS = {
    "&": " and ",
    "%": " percent ",
    "+": " plus ",
    "=": " equals ",
    "×": " times ",
    "÷": " divided by ",
    "±": " plus or minus ",
    "§": " section ",
    "©": " copyright ",
    "<": " less than ",
    ">": " greater than ",
    "°": " degrees ",
    "~": " about ",
}
# formatting marks with no reading of their own: spaces
_FORMATTING = set("*_|•·^`\\†‡™®¶") | {"\u2022", "\u25cf", "\u25aa", "\u2023", "\u2043"}

_FRACTIONS = {2: ("half", "halves"), 4: ("quarter", "quarters")}

# ----------------------------------------------------------------------------------------------------------------------
# patterns
# ----------------------------------------------------------------------------------------------------------------------

_INT = r"\d{1,3}(?:,\d{3})+|\d+"
_NUM = rf"(?:{_INT})(?:\.\d+)?"
_NUM_OR_POINT = rf"(?:{_NUM}|\.\d+)"  # ".5 mg", "a .45 pistol"
_NOT_AFTER = r"(?<![\w.,])"  # a number starts a token
_NOT_BEFORE = r"(?![\w]|[.,]\d)"  # and ends it (a sentence-final period is fine)
_UNIT_ALT = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))

_CURRENCY_SYMBOLS = "".join(map(re.escape, _CURRENCIES))
_CURRENCY_BEFORE = re.compile(
    rf"(-)?([{_CURRENCY_SYMBOLS}])\s?({_NUM}|\.\d+)(?:\s?({'|'.join(_SCALES)})\b|(?:\s?([kKmMbB]n?)\b))?{_NOT_BEFORE}"
)
_CURRENCY_AFTER = re.compile(rf"{_NOT_AFTER}({_NUM})\s?([{_CURRENCY_SYMBOLS}])(?!\d)")
_CENTS = re.compile(rf"{_NOT_AFTER}(\d+)\s?¢")
# "ca." is "circa" only before a number ("ca. 1850"): elsewhere it is a web address's ending ("example.ca." is
# "example dot ca" by then) or an abbreviation of something else
_CIRCA = re.compile(r"(?<![\w.])ca\.(?=\s*\d)")
# "Co." is "Company" after a name and before a lowercase word, a mark or the end ("Smith Co. owns it", "Acme Co.");
# before a capital it may be a county ("Co. Cork") and stays as written
_COMPANY = re.compile(r"(?<![\w.])Co\.(?=\s+[a-z]|\s*[,;:!?)]|\s*$)")
# A number after "call", "dial", "phone" or "text" is dialled and said digit by digit ("Call 911 now" -> "nine one
# one"), also one written in spaced groups; not one of fewer than three digits, which no phone number has ("phone
# 26," counting phones), nor one of a date, a time or a hyphenated number (their own rules read them), nor where a word
# it counts follows ("Text 100 friends"): only the end, a mark, a capital or one of these words may; nor after an
# article, where "call" is a noun ("a call 100 or more times").
_DIALLED = re.compile(
    r"(?<!\b[Aa] )(?<!\b[Aa]n )(?<!\b[Tt]he )(?<!\b[Oo]ne )"
    r"\b((?i:call|dial|phone|text):?\s+)(?=(?: ?\d){3})(\d+(?: \d+)*)(?![.,:/-]\d)"
    r"(?=\s*(?:$|[^\w\s]|[A-Z]|(?:now|or|and|for|if|to|at|from|on|in|immediately|right|today|tonight|instead|again|"
    r"first|then|when|with|anytime)\b))"
)
# Thousands grouped by spaces, as many countries write them ("1 000 000", also with a no-break or narrow no-break
# space), get commas, so that the rules below read one number ("one million", not "one zero zero ..."). A group run with
# a digit group before or after it is a phone number or a list of numbers, and stays.
_SPACED_THOUSANDS = re.compile(
    r"(?<![\w.,])(?<!\d[ \u00a0\u202f])[1-9]\d{0,2}(?:[ \u00a0\u202f]\d{3})+(?![ \u00a0\u202f]?\d|\w|[.,]\d)"
)
# Phone numbers, read digit by digit like other digit groups: 555-1234 (the exchange of a North American number starts
# with 2-9; a round pair such as 500-1000 is left to the range rule), (555) 123-4567, ZIP+4 90210-1234, and a
# number with a trunk zero written in spaced groups, 020 7946 0958.
_PHONE = re.compile(
    r"(?<![\w.,-])(?:[2-9]\d{2}-\d{4}|\d{5}-\d{4}|\(\d{2,5}\)\s?\d{3,4}[-\s]\d{4}|0\d{2,4}(?: \d{3,4}){2})"
    r"(?![\w-]|[.,]\d)"
)
# A range: two numbers, amounts or times joined by a hyphen (no spaces: "5 - 3" may be a subtraction) or an en/em dash,
# 5-10, 1990-95, $20-$30, $2-3 million, $5K-10K, 10%-15%, 9am-5pm, 10:30-11:00. Neither side touches another hyphen
# (only "-word" may follow: "5-10-minute"), so dates, serials (1-800-555-1234), negative numbers and "3-year-old" are
# not ranges; a right side with a leading zero (2024-05, a year and month; a time such as 09:30 is fine) is not one
# either.
_RANGE_END = rf"{_NUM_OR_POINT}(?::\d{{2}})?(?:\s?[AaPp]\.?[Mm]\b\.?)?"
_RANGE = re.compile(
    rf"(?<![\w.,:/-])([{_CURRENCY_SYMBOLS}])?({_RANGE_END})(%|(?:bn|[kKmMbB])\b)?(?:-|\s?[–—]\s?)"
    rf"([{_CURRENCY_SYMBOLS}])?(?!0\d(?!:))({_RANGE_END})(\s?({'|'.join(_SCALES)})\b|(bn|[kKmMbB])\b)?"
    r"(?!\d|-(?![a-z])|[.,:/]\d)"
)
_ISO_DATE = re.compile(r"(?<![\w/.-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\w/-]|\.\d)")
_NUMERIC_DATE = re.compile(r"(?<![\w/.-])(\d{1,2})([/-])(\d{1,2})\2(\d{4}|\d{2})(?![\w/-]|\.\d)")
# A month and day without a year, "3/15", read month first like the numeric dates above, only where it clearly is a date
# and not a fraction or a ratio ("1/5 of the votes", "about 1/5", "1/2 cup", "the 2/3 majority", "24/7"): a month and a
# day that exist, and a date word before it ("on", "by", "until", "since", "due", "as of", ...), a weekday before it
# ("Monday 3/15"), a time or a weekday after it ("3/15 at 5pm", "3/15 (Mon)"), or a range of two ("3/1-3/15", "3/1 to
# 3/15"). "by", "from" and "between" also come before quantities ("cut by 1/3", "from 1/4 to 1/2 cup"), so after them,
# and in a range without a date word, pairs that are all fractions ("1/3", "3/16") stay fractions; after a date word a
# fraction-like pair needs a mark or a function word after it ("on 1/5 at noon", not "on 2/3 power"). No "of", unit or
# measure word may follow ("on 1/2 of the days"), and "9/11" is said "nine eleven".
_SHORT_DATE = re.compile(
    r"(?<![\w.,/-])(\d{1,2})/(\d{1,2})(?:(\s?[-–—]\s?|\s+(?:to|through|thru|until|till|and|or)\s+)(\d{1,2})/(\d{1,2}))?"
    r"(?![\w/]|[.,]\d|-\w)"
)
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Mon Tue Tues Wed Thu Thur Thurs Fri Sat Sun"
_DATE_WORD_BEFORE = re.compile(
    r"(?:\b(?i:on|until|till|til|through|thru|since|before|after|starting|beginning|ending|due|dated|effective|"
    r"expires|expiring|expired|deadline|starts|started|begins|began|ends|ended|opens|opened|closes|closed|as\s+of|"
    r"(?:week|weekend)\s+of|"
    r"(?:due|deadline|submit|submitted|return|returned|paid)\s+(?:by|from))"
    rf"|\b(?:{'|'.join(_WEEKDAYS.split())})\.?)[,:]?\s+$"
)
_WEAK_DATE_WORD_BEFORE = re.compile(r"\b(?i:by|from|between)\s+$")
_TIME_OR_WEEKDAY_AFTER = re.compile(
    rf",?\s+(?:(?:at\s+|@\s?)?\d{{1,2}}(?::\d{{2}}\b|\s?[AaPp]\.?[Mm]\b)|\(?(?:{'|'.join(_WEEKDAYS.split())})\b)"
)
# what follows a date that could also be a fraction ("on 1/5 at noon", "on 1/5, we", "on 1/5 the team", "on 1/5 Ann"):
# the end, a mark, a capitalised word or a function word; a noun after it is what the fraction counts ("on 2/3 power")
_DATE_FOLLOWER = re.compile(
    r"\s*(?:$|[^\w\s]|[A-Z]|(?:at|and|or|to|through|thru|until|till|in|for|from|by|with|when|then|so|but|if|as|only|"
    r"we|i|you|he|she|they|it|the|this|is|was|will|would|should|could|can|must|may|are|were|has|had|have)\b)"
)
_QUANTITY_AFTER = re.compile(
    rf"\s*(?:(?:{_UNIT_ALT})(?![\w/])|(?i:of|cups?|inch(?:es)?|foot|feet|yards?|miles?|pounds?|ounces?|teaspoons?|"
    r"tablespoons?|pints?|quarts?|gallons?|liters?|litres?|grams?|sticks?|hours?|minutes?|seconds?|days?|weeks?|"
    r"months?|years?|stars?|points?|times?)\b)"
)
_MONTH_ALT = "|".join(sorted(_MONTHS, key=len, reverse=True) + sorted(_MONTH_ABBREVIATIONS, key=len, reverse=True))
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_ALT})(\.?)\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?!:\d)(?:(,?)\s+(\d{{4}})\b(?![.,]\d))?", re.IGNORECASE
)
_DAY_MONTH = re.compile(
    rf"(\bthe\s+)?{_NOT_AFTER}(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_ALT})\b"
    rf"(\.)?(?:,?\s+(\d{{4}})\b(?![.,]\d))?",
    re.IGNORECASE,
)
_TIME = re.compile(rf"{_NOT_AFTER}(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?(?:\s?([AaPp])\.?\s?[Mm]\b(\.)?)?(?![\w:]|\.\d)")
# British "9.30pm": a dot between hour and minutes only with am/pm (else 9.30 is a decimal); no seconds
_DOTTED_TIME = re.compile(rf"{_NOT_AFTER}(\d{{1,2}})\.(\d{{2}})()\s?([AaPp])\.?\s?[Mm]\b(\.)?")
# A clock time with seconds is a timestamp, not a duration, after "at" or a date (its digits, or the words the date
# rules made of it: "Jun 1 23:02:07" is "June first 23:02:07" by then), or before a time zone, a UTC offset or a year
# ("23:02:07 EDT 1986", "12:53:27 +0100")
_DATE_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w*teen|twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety|hundred|thousand|first|second|third|\w*(?:fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|"
    r"twelfth|teenth|tieth)"
)
_TIMESTAMP_BEFORE = re.compile(rf"(?:\b[Aa]t|@|\d|\b(?:{_DATE_WORDS}))\b,?\s*$")
_TIMESTAMP_AFTER = re.compile(r"\s+(?:[A-Z]{3,4}\b|[+-]\d{4}\b|\d{4}\b)")
# A colon between numbers that the times left (no clock time) is a score or a ratio, "99:100", "16:9", "1:2:3"; not one
# glued to a hyphen ("RHSA-1999:030-01", "Romans 3:1-2"), nor a chapter and verse after a book of the Bible, which keep
# their colon ("Romans 13:8", "Deut. 7:1"; "John 3:16" has been read as a time, "John three sixteen").
_NUMBER_COLON = re.compile(rf"(?<![\w.,:-])(?:{_NUM})(?::(?:{_NUM}))+{_NOT_BEFORE}(?![:-]\d)")
_BIBLE_BOOKS = (
    "Genesis Exodus Leviticus Numbers Deuteronomy Joshua Judges Ruth Samuel Kings Chronicles Ezra Nehemiah Esther Job "
    "Psalm Psalms Proverbs Ecclesiastes Songs Solomon Isaiah Jeremiah Lamentations Ezekiel Daniel Hosea Joel Amos "
    "Obadiah Jonah Micah Nahum Habakkuk Zephaniah Haggai Zechariah Malachi Matthew Mark Luke John Acts Romans "
    "Corinthians Galatians Ephesians Philippians Colossians Thessalonians Timothy Titus Philemon Hebrews James Peter "
    "Jude Revelation Revelations Gen Ex Exod Lev Num Deut Josh Judg Sam Kgs Chron Neh Esth Ps Prov Eccl Isa Jer Lam "
    "Ezek Dan Hos Obad Mic Nah Hab Zeph Hag Zech Mal Matt Mk Lk Jn Rom Cor Gal Eph Phil Col Thess Tim Heb Jas Pet Rev"
)
_BIBLE_BOOK_BEFORE = re.compile(rf"\b(?:{'|'.join(_BIBLE_BOOKS.split())})\.?,?\s+$")
_HOUR_AMPM = re.compile(rf"{_NOT_AFTER}(\d{{1,2}})\s?([AaPp])\.?\s?[Mm]\b(\.)?")
_DIGIT_GROUPS = re.compile(r"(?<![\w.-])\d+(?:-\d+){2,}(?![\w-]|\.\d)")  # 1-800-555-1234: digit by digit
# Three or more dot-separated numbers are a version or an address, not a decimal: 3.11.4, 192.168.1.1, 12.05.2024
# (day first or month first cannot be told apart, so not read as a date). "v" before a dotted version is "version".
_VERSION_PREFIX = re.compile(r"(?<![\w.])([Vv]ersion )?v(?=\d+\.\d)")
_DOTTED_GROUPS = re.compile(r"(?<![\w.,])\d+(?:\.\d+){2,}(?![\w]|\.\d)")
_NUMBER_SLASH = re.compile(r"(?<=\d)/(?=\d)")  # 24/7, 50/50, 9/11 (dates and small fractions are read before)
_ORDINAL = re.compile(rf"{_NOT_AFTER}({_INT})(st|nd|rd|th)\b", re.IGNORECASE)
_PERCENT = re.compile(rf"{_NOT_AFTER}(-?{_NUM_OR_POINT})\s?%")
# a number or a fraction with a unit ("1/2 tsp" -> "one half teaspoon", where the unit once took the denominator alone);
# the period of an abbreviated unit ("2 tbsp. sugar") ends a sentence only where one ends
_WITH_UNIT = re.compile(
    rf"{_NOT_AFTER}(?:(\d{{1,2}})/(\d{{1,2}})|(?<!/)(-?{_NUM_OR_POINT}))\s?({_UNIT_ALT})(?![\w/])(\.(?!\w))?"
)
_FRACTION = re.compile(rf"{_NOT_AFTER}(\d{{1,2}})/(\d{{1,2}}){_NOT_BEFORE}(?!/)")
# a whole number and a fraction, a space or a hyphen between them ("1 1/2 cups", "2-3/4 in"), optionally with a unit:
# "one and a half cups"; read before the ranges, dates and units, which would take its parts apart
_MIXED_NUMBER = re.compile(
    rf"{_NOT_AFTER}(?<![{_CURRENCY_SYMBOLS}])(\d{{1,3}})[ -](\d{{1,2}})/(\d{{1,2}})(?:(?:st|nd|rd|th)s?)?"
    rf"(?:\s?({_UNIT_ALT})(?![\w/])(\.(?!\w))?|{_NOT_BEFORE}(?!/))"
)
# a fraction written with an ordinal ending, "1/8th", "3/4ths", "1/3rd": before the ordinals take its denominator
_SUFFIXED_FRACTION = re.compile(rf"{_NOT_AFTER}(\d{{1,2}})/(\d{{1,2}})(?:st|nd|rd|th)s?\b")
# a price or rate per unit: an amount the currency rules read, or a number with a unit, then "/" and a unit word; the
# "/" becomes "per" and the amount is left to the rules below ("$5.99/month" -> "five dollars ninety nine cents per
# month", "$5-10/hr", "5 GB/day"). Fractions, dates and "24/7" have no unit word after the slash.
_PER_UNIT = re.compile(
    rf"{_NOT_AFTER}((?:[{_CURRENCY_SYMBOLS}]\s?{_NUM_OR_POINT}(?:\s?[-–]\s?[{_CURRENCY_SYMBOLS}]?{_NUM_OR_POINT})?"
    rf"(?:\s?(?:{'|'.join(_SCALES)})|bn|[kKmMbB])?|{_NUM_OR_POINT}\s?(?:[{_CURRENCY_SYMBOLS}¢]|({_UNIT_ALT}))))"
    rf"/({'|'.join(sorted(_PER_UNITS, key=len, reverse=True))})((?<=/s)(?:²|\^?2))?(?![\w/]|-\w)"
)
# after a hyphen only when a lowercase word comes before it ("mid-1990s", "pre-2020"; not "-2020" or "MIL-1553"); the
# hyphen becomes a space, as the prefix belongs to the whole spoken year ("mid nineteen nineties")
_YEAR = re.compile(r"(?:(?<![\w.,$£€¥-])|(?<=[a-z])-)(1\d{3}|20\d{2})('?s)?(?![\w]|[.,]\d)")
_DECADE = re.compile(r"(?<![\w.,])'?([1-9]0)'?s\b")
_NUMBER_SIGN = re.compile(r"(?:(?<![\w.])(No|no|Nos|nos)\.|#)\s?(?=\d)")
# A multiplier: a number with "x" (or "×") glued to it is "times" where it ends a phrase ("improved 10x.") or comes
# before a comparative or a measure it multiplies ("2x faster", "3x the speed", "2x as fast", "2x a day"); "X" only
# there. Before a noun "x" is kept ("a 10x engineer", "a 2.5x speedup"), and an equation is left alone ("y = 2x.",
# "2x + 1"), as is a glued "(1x)" after a word (a manual section).
_MULTIPLIER_WORDS = (
    "faster slower quicker sooner better worse more less fewer bigger smaller larger higher lower greater cheaper "
    "longer shorter stronger weaker heavier lighter wider narrower deeper taller thicker thinner louder quieter harder "
    "easier safer brighter hotter colder denser as the that what over a per daily weekly monthly yearly"
)
_MULTIPLIER = re.compile(
    rf"(?<![\w.,])(?<![=+*/^<>])(?<![=+*/^<>]\s)(?<!\w\()({_NUM})"
    rf"(?:[x×](?=[.,;:!?)\]\"'’”]+(?:\s|$)|\s*$)|[xX×](?=\s+(?:{'|'.join(_MULTIPLIER_WORDS.split())})\b))"
)
# a decimal glued to letters: "1.5M users" (M, B, K as in amounts: million, billion, thousand), "2.5x", "Qwen2.5"
_GLUED_DECIMAL = re.compile(
    rf"(?:(?<=[^\W\d_])|{_NOT_AFTER}(?=[\d,.]+[^\W\d_]))((?:{_INT})\.\d+)(?:(bn|[KkMB])\b)?(?!\d|[.,]\d)"
)
_NUMBER = re.compile(rf"(?:(?<![\w.,-])([-−])|{_NOT_AFTER})({_NUM_OR_POINT}){_NOT_BEFORE}")
_LEFTOVER_DIGITS = re.compile(r"\d+")
# A Roman numeral of 2 to 89 made of I, V, X and L, at least two letters ("I", "V" and "X" alone are a pronoun, a
# letter, "Malcolm X", "Model X"), after a keyword or a capitalised word (not an all-capital acronym: "PS II"), and not
# glued to a letter or a hyphenated word ("II-era"). espeak-ng says "roman two" for it.
_ROMAN = re.compile(
    r"\b(?:(?P<keyword>(?:"
    + "|".join(re.escape(word) for word in sorted(_ROMAN_KEYWORDS, key=len, reverse=True))
    + r")(?!\w))|(?P<name>[A-Z][a-z][A-Za-z]*))(?P<space>[^\S\r\n]+)"
    r"(?=[IVXL]{2})(?P<numeral>(?:XL|L?X{0,3})(?:IX|IV|V?I{0,3}))(?![\w]|-\w)"
)


def _abbreviation_pattern(table: dict[str, str]) -> re.Pattern:
    alternatives = "|".join(re.escape(a) for a in sorted(table, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])({alternatives})(?=[\s,;:!?)\"']|$)")


_TITLE_PATTERN = _abbreviation_pattern(_TITLES)
_ABBREVIATION_PATTERN = _abbreviation_pattern(_ABBREVIATIONS)
_SAINT_OR_STREET = re.compile(r"(?<![\w.])St\.(?=\s|$|[,;:!?)])(\s+(?=[A-Z]))?")
_SENTENCE_END_AFTER = re.compile(r"\s*($|[\"')\]]*\s+[A-Z])")
_NAME_SUFFIX_AFTER = re.compile(rf"\s+(?:{'|'.join(map(re.escape, _NAME_SUFFIXES))})(?=[\s,;:!?)\"']|$)")
_SYMBOL_PATTERN = re.compile("|".join(map(re.escape, _SYMBOLS)))
# in an address without a dotted domain ("tom@localhost"); a lone "@" has no reading
_AT = re.compile(r"(?<=\w)@(?=\w)")
# Web and e-mail addresses: only what clearly is one, so that "end.Next", "e.g.", "v2.0", "U.S." or "report.pdf" stay
# as they are: a scheme or "www.", an e-mail address (a name, "@", a dotted domain), or a bare domain ending in a
# common top-level domain. A bare domain's top-level domain is lowercase ("BREAKFAST.COM" and "ASP.NET" are a program
# and a framework) and never an English word ("in", "it", "me", "us", "to", "no", ...: "end.it" is a typo, not an
# address). An address may be wrapped in "<...>" (dropped: a person does not say "less than"); it never ends with
# the punctuation that follows it (a sentence-final period, a comma) nor with an unbalanced ")" that closes a bracket
# around it ("(see example.com/a)"), while "wiki/Python_(language)" keeps its own brackets.
_TLDS = "com org net edu gov io co ai dev app info biz xyz ly gg tv fm cc uk de fr nl eu ca au nz ie jp cn ru ch se es"
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_ADDRESS_TAIL = r"(?:[^\s<>\"()\[\]]|\([^\s<>\"()]*\))*(?<![.,;:!?'])"
_WEB_ADDRESS = re.compile(
    r"(?<![\w.@/+-])(<)?(?P<address>"
    rf"(?:mailto:)?\w(?:[\w.+-]*\w)?@{_LABEL}(?:\.{_LABEL})+"  # e-mail
    rf"|(?:(?:https?|ftp)://|[Ww]{{3}}\.)\w{_ADDRESS_TAIL}"  # with a scheme or "www."
    rf"|{_LABEL}(?:\.{_LABEL})*\.(?:{'|'.join(_TLDS.split())})\b(?![-@]|\.\w)(?::\d+)?(?:[/?#]{_ADDRESS_TAIL})?"
    r")(?(1)>)"
)
_SCHEME = re.compile(r"^(?:(?:https?|ftp)://|mailto:)")
# the address's marks as words; any other mark is skipped
_ADDRESS_MARKS = {
    ".": "dot",
    "/": "slash",
    "-": "dash",
    "_": "underscore",
    "@": "at",
    ":": "colon",
    "?": "question mark",
    "=": "equals",
    "&": "and",
    "#": "hash",
    "+": "plus",
    "~": "tilde",
    "%": "percent",
}
_ADDRESS_PART = re.compile(r"[^\W\d_]+|\d+|\S")
_GREEK_LETTER = re.compile(r"(?<![^\W\d_])[\u0370-\u03ff](?![^\W\d_])")


# ----------------------------------------------------------------------------------------------------------------------
# replacements
# ----------------------------------------------------------------------------------------------------------------------


def _amount(number: str, one: str, many: str) -> str:
    value = number.replace(",", "")
    return f"{number_to_words(number)} {one if value in ('1', '1.0') else many}"


def _currency(match: re.Match) -> str:
    minus, symbol, number, scale, short_scale = match.groups()
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    sign = "minus " if minus else ""
    if short_scale:
        scale = _SHORT_SCALES.get(short_scale.lower())
    if scale:
        return f"{sign}{number_to_words(number)} {scale} {many}"
    whole, _, fraction = number.replace(",", "").partition(".")
    whole = whole or "0"
    if fraction and len(fraction) == 2:
        cents = int(fraction)
        parts = [] if int(whole) == 0 and cents else [_amount(whole, one, many)]
        if cents:
            parts.append(_amount(str(cents), sub_one, sub_many))
        return sign + " ".join(parts)
    if fraction:
        return f"{sign}{number_to_words(number)} {many}"
    return sign + _amount(number, one, many)


def _currency_after(match: re.Match) -> str:
    number, symbol = match.groups()
    return _currency(re.match(rf"()([{_CURRENCY_SYMBOLS}])({_NUM})()()", f"{symbol}{number}"))


def _spoken_date(year: str | None, month: int, day: int, day_first: bool = False) -> str:
    name = _MONTHS[month - 1]
    spoken = f"the {ordinal_to_words(day)} of {name}" if day_first else f"{name} {ordinal_to_words(day)}"
    if year:
        spoken += f", {_year_or_two_digits(year)}"
    return spoken


def _year_or_two_digits(year: str) -> str:
    if len(year) == 2:
        return ("oh " + _DIGIT_WORDS[int(year[1])]) if year[0] == "0" else number_to_words(year)
    return year_to_words(year)


def _iso_date(match: re.Match) -> str:
    year, month, day = match.group(1), int(match.group(2)), int(match.group(3))
    if 1 <= month <= 12 and 1 <= day <= 31:
        return _spoken_date(year, month, day)
    return match.group(0).replace("-", " ")


def _numeric_date(match: re.Match) -> str:
    first, second, year = int(match.group(1)), int(match.group(3)), match.group(4)
    if 1 <= first <= 12 and 1 <= second <= 31:  # US: month/day/year
        return _spoken_date(year, first, second)
    if 1 <= second <= 12 and 1 <= first <= 31:  # the first cannot be a month: day/month/year
        return _spoken_date(year, second, first)
    return match.group(0)


def _short_date(match: re.Match) -> str:
    month, day, separator, month_2, day_2 = match.groups()
    sides = [(int(month), int(day))] + ([(int(month_2), int(day_2))] if separator else [])
    if not all(1 <= m <= 12 and 1 <= d <= 31 for m, d in sides) or match.group(0) == "9/11":
        return match.group(0)
    if _QUANTITY_AFTER.match(match.string, match.end()):
        return match.group(0)
    before = match.string[max(0, match.start() - 40) : match.start()]
    fractions = all(_is_small_fraction(m, d) or m < d == 16 for m, d in sides)  # "1/3", "3/16"
    if not _TIME_OR_WEEKDAY_AFTER.match(match.string, match.end()):
        if _DATE_WORD_BEFORE.search(before):
            if fractions and not _DATE_FOLLOWER.match(match.string, match.end()):  # "on 2/3 power"
                return match.group(0)
        else:  # after "by", "from" or "between", or a range ("3/1-3/15"; not "3/1 and 3/15"), and not all fractions
            is_range = separator and separator.strip() not in ("and", "or")
            if fractions or not (is_range or _WEAK_DATE_WORD_BEFORE.search(before)):
                return match.group(0)
    spoken = _spoken_date(None, *sides[0])
    if separator:
        joined = separator.strip()
        spoken += f" {joined if joined.isalpha() else 'to'} {_spoken_date(None, *sides[1])}"
    return spoken


def _month_day(match: re.Match) -> str:
    month_text, _, day, comma, year = match.groups()
    day_number = int(day)
    if not 1 <= day_number <= 31:
        return match.group(0)
    month = _MONTH_NAMES[month_text.lower()]
    if month_text.lower() == "may" and month_text != "May":  # "may 5" is rarely a date
        return match.group(0)
    spoken = f"{month} {ordinal_to_words(day_number)}"
    if year:
        spoken += f", {year_to_words(year)}"
    return spoken


def _day_month(match: re.Match) -> str:
    the, day, month_text, period, year = match.groups()
    if not 1 <= int(day) <= 31 or (month_text.lower() == "may" and month_text != "May"):
        return match.group(0)
    spoken = f"{the or 'the '}{ordinal_to_words(day)} of {_MONTH_NAMES[month_text.lower()]}"
    if year:
        spoken += f", {year_to_words(year)}"
    if period:  # the end of a sentence after a full month name, or of an abbreviation ("Dec.")
        full = month_text.lower() in (m.lower() for m in _MONTHS)
        spoken += "." if full and not year else _keep_period(match, period)
    return spoken


def _keep_period(match: re.Match, period: str | None) -> str:
    """A period that closed an abbreviation also ends the sentence when the text ends or a capital follows, unless
    that capital opens an abbreviation that carries the name on ("King Jr. Blvd.")."""
    if not period or _NAME_SUFFIX_AFTER.match(match.string, match.end()):
        return ""
    return "." if _SENTENCE_END_AFTER.match(match.string, match.end()) else ""


def _time(match: re.Match) -> str:
    hour, minute, second, half, period = match.groups()
    h, m = int(hour), int(minute)
    if m > 59 or (second and int(second) > 59):
        return match.group(0)
    # "10:00:00 long", "took 1:30:15": hours, minutes and seconds of a duration
    if second and not half and not _is_timestamp(match):
        return _duration(h, m, int(second))
    # "24:00" is midnight at the end of a day; 24:30 is no time
    if h > 24 or (h == 24 and m) or (half and not 1 <= h <= 12):
        return match.group(0)
    spoken = number_to_words(str(h))
    if m == 0:
        spoken += "" if half else (" o'clock" if 1 <= h <= 12 else " hundred")
    elif m < 10:
        spoken += " oh " + _DIGIT_WORDS[m]
    else:
        spoken += " " + number_to_words(str(m))
    if second and int(second):
        spoken += f" and {number_to_words(str(int(second)))} seconds"
    if half:
        spoken += " AM" if half.lower() == "a" else " PM"
    return spoken + _keep_period(match, period)


# how far before a match the words that change its reading are looked for (a bounded window: searching the whole text
# before every match made normalising a long text quadratic)
_LOOK_BEHIND_CHARS = 40


def _is_timestamp(match: re.Match) -> bool:
    """A clock time rather than a duration: an hour written with a leading zero or past 12 ("07:15:00", "23:59:59"),
    after "at" or a date, or before a time zone, a UTC offset or a year ("10:00:00 long" stays a duration)."""
    start, hour = match.start(), match.group(1)
    return bool(
        hour.startswith("0")
        or int(hour) > 12
        or _TIMESTAMP_BEFORE.search(match.string, max(0, start - _LOOK_BEHIND_CHARS), start)
        or _TIMESTAMP_AFTER.match(match.string, match.end())
    )


def _company(match: re.Match) -> str:
    return "Company." if not match.string[match.end() :].strip() else "Company"


def _number_colon(match: re.Match) -> str:
    if _BIBLE_BOOK_BEFORE.search(match.string, max(0, match.start() - _LOOK_BEHIND_CHARS), match.start()):
        return match.group(0)
    return match.group(0).replace(":", " to ")


def _duration(hours: int, minutes: int, seconds: int) -> str:
    """ "two hours and thirty minutes", "one hour, thirty minutes and fifteen seconds": the parts that are not zero."""
    units = ((hours, "hour", "hours"), (minutes, "minute", "minutes"), (seconds, "second", "seconds"))
    parts = [_amount(str(value), one, many) for value, one, many in units if value]
    if not parts:
        return "zero seconds"
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _hour_ampm(match: re.Match) -> str:
    hour, half, period = match.groups()
    if not 1 <= int(hour) <= 12:
        return match.group(0)
    return f"{number_to_words(hour)} {'AM' if half.lower() == 'a' else 'PM'}" + _keep_period(match, period)


def _phone(match: re.Match) -> str:
    text = match.group(0)
    if re.fullmatch(r"\d{2}0-\d{2}00", text):  # 500-1000 is a range, not a phone number
        return text
    return _digits(re.sub(r"\D", "", text))


def _range(match: re.Match) -> str:
    symbol, low, low_suffix, high_symbol, high, scale_text, scale, short_scale = match.groups()
    plain = re.fullmatch(_NUM_OR_POINT, low) and re.fullmatch(_NUM_OR_POINT, high)
    cents = any(len(number.partition(".")[2]) == 2 for number in (low, high))
    same_scale = low_suffix is None or low_suffix.lower() == (short_scale or "").lower()  # $5K-10K, not $500K-1M
    if symbol and high_symbol in (None, symbol) and plain and same_scale and (scale_text or not cents):
        # the currency is said once, at the end: "twenty to thirty dollars", "two to three million dollars"
        scale = _SHORT_SCALES[short_scale.lower()] if short_scale else scale
        many = _CURRENCIES[symbol][1]
        return f"{number_to_words(low)} to {number_to_words(high)} {scale + ' ' if scale else ''}{many}"
    # each side is read by the later rules (amounts with cents, times, years, plain numbers); "$5.50-6" is "$5.50 to $6"
    return f"{symbol or ''}{low}{low_suffix or ''} to {high_symbol or symbol or ''}{high}{scale_text or ''}"


def _number_part(part: str) -> str:
    """A run of digits inside a version, an IP or a web address: short ones as numbers ("eleven"), longer ones digit by
    digit ("one nine two")."""
    return _digits(part) if len(part) > 2 else number_to_words(part)


def _dotted_groups(match: re.Match) -> str:
    # "three point eleven point four", "one nine two point one six eight point ..."
    return " point ".join(_number_part(part) for part in match.group(0).split("."))


def _glued_decimal(match: re.Match) -> str:
    number, short_scale = match.groups()
    scale = f" {_SHORT_SCALES[short_scale.lower()]}" if short_scale else ""
    return f" {number_to_words(number)}{scale} "


def _ordinal(match: re.Match) -> str:
    return ordinal_to_words(match.group(1))


def _percent(match: re.Match) -> str:
    return number_to_words(match.group(1)) + " percent"


def _with_unit(match: re.Match) -> str:
    numerator, denominator, number, unit, period = match.groups()
    one, many = _UNITS[unit]
    if number is None:  # a fraction, also a finer one before a unit: "one half teaspoon", "eleven sixteenths ounce"
        numerator, denominator = int(numerator), int(denominator)
        if not 1 <= numerator < denominator:
            return match.group(0)
        spoken = f"{_fraction_words(numerator, denominator)} {one}"
    else:
        spoken = _amount(number, one, many)
    return spoken + _keep_period(match, period)


def _is_small_fraction(numerator: int, denominator: int) -> bool:
    """A fraction read as one without a unit after it: "3/4", not "24/7", "9/11" or "50/50"."""
    return 1 <= numerator < denominator <= 10


def _fraction_words(numerator: int, denominator: int) -> str:
    one, many = _FRACTIONS.get(denominator) or (
        ordinal_to_words(denominator),
        _plural(ordinal_to_words(denominator)),
    )
    return f"{number_to_words(str(numerator))} {one if numerator == 1 else many}"


def _mixed_number(match: re.Match) -> str:
    whole, numerator, denominator, unit, period = match.groups()
    numerator, denominator = int(numerator), int(denominator)
    if not (
        _is_small_fraction(numerator, denominator) or (numerator < denominator and denominator in (12, 16, 32, 64))
    ):
        return match.group(0)
    part = _fraction_words(numerator, denominator)
    if numerator == 1:  # "one and a half", "two and an eighth"
        part = part.removeprefix("one ")
        part = ("an " if part[0] in "aeiou" else "a ") + part
    spoken = f"{number_to_words(whole)} and {part}"
    if unit is None:
        return spoken
    return f"{spoken} {_UNITS[unit][1]}" + _keep_period(match, period)


# "½", "¾", "⅛", ...: NFKC would turn "1½" into "11⁄2" (eleven halves), so they are written out as "1 1/2" first
_FRACTION_CHARACTERS = "".join(
    chr(c) for c in range(0x80, 0x2190) if unicodedata.decomposition(chr(c)).startswith("<fraction>")
)
_VULGAR_FRACTION = re.compile(f"(\\d?)([{_FRACTION_CHARACTERS}])")


def split_vulgar_fractions(text: str) -> str:
    """Fraction characters as digits and a slash ("1½" -> "1 1/2", "¾" -> "3/4") and the fraction slash "⁄" as "/",
    for the number rules; run before NFKC, which would glue a whole number to the fraction's numerator."""

    def spelled(match: re.Match) -> str:
        numerator, _, denominator = unicodedata.normalize("NFKC", match.group(2)).partition("\u2044")
        return f"{match.group(1)} {numerator}/{denominator}".lstrip() if denominator else match.group(0)

    return _VULGAR_FRACTION.sub(spelled, text).replace("\u2044", "/")


def _fraction(match: re.Match) -> str:
    numerator, denominator = int(match.group(1)), int(match.group(2))
    if not _is_small_fraction(numerator, denominator):
        return match.group(0)
    return _fraction_words(numerator, denominator)


def _year(match: re.Match) -> str:
    words = year_to_words(match.group(1))
    space = " " if match.group(0).startswith("-") else ""
    return space + (_plural(words) if match.group(2) else words)


def _number(match: re.Match) -> str:
    sign, number = match.groups()
    return ("minus " if sign else "") + number_to_words(number)


def _title(match: re.Match) -> str:
    ends_text = not match.string[match.end() :].strip()  # a title ends a sentence only at the end of the text
    return _TITLES[match.group(1)] + ("." if ends_text else "")


def _abbreviation(match: re.Match) -> str:
    abbreviation = match.group(1)
    words = _ABBREVIATIONS[abbreviation]
    return words + _keep_period(match, "." if abbreviation.endswith(".") else None)


def _saint_or_street(match: re.Match) -> str:
    if match.group(1):  # a capitalised word follows: St. Louis
        return "Saint "
    return "Street" + _keep_period(match, ".")


def _per_unit(match: re.Match) -> str:
    amount, unit, per, squared = match.groups()
    if unit and f"{unit}/{per}" in _UNITS:  # "60 km/h" is one unit, read by its own rule
        return match.group(0)
    # an acceleration, "9.8 m/s²" (NFKC has made it "m/s2" in the front end)
    return f"{amount} per {_PER_UNITS[per]}" + (" squared" if squared else "")


def _roman_value(numeral: str) -> int:
    values = [_ROMAN_VALUES[letter] for letter in numeral]
    following = values[1:] + [0]
    return sum(-value if value < after else value for value, after in zip(values, following, strict=True))  # IV = 4


def _roman(match: re.Match) -> str:
    keyword, name, space, numeral = match.group("keyword", "name", "space", "numeral")
    value = _roman_value(numeral) if len(numeral) >= 2 else 0
    if keyword and 2 <= value <= 89:
        return f"{_ROMAN_KEYWORDS[keyword]}{space}{number_to_words(value)}"
    # a regnal number after a name ("Louis the fourteenth") stops before 40; L, "XX" and "XXX" after a name are more
    # often a size, a chromosome or a rating ("Size XL", "Chromosome XX") than a king
    if name and 2 <= value <= 39 and numeral not in ("XX", "XXX"):
        return f"{name}{space}the {ordinal_to_words(value)}"
    return match.group(0)


def _greek_letter(match: re.Match) -> str:
    name = unicodedata.name(match.group(0), "")
    if not name.startswith("GREEK"):
        return match.group(0)
    return " " + name.split()[-1].lower() + " "


def _web_address(match: re.Match) -> str:
    # the scheme and a final "/" are not said; "www" is said letter by letter; words stay words (espeak-ng spells what
    # it cannot pronounce, "UCLA"); numbers read like dotted groups: short ones as numbers, longer digit by digit
    words = []
    for part in _ADDRESS_PART.findall(_SCHEME.sub("", match.group("address")).rstrip("/")):
        if part.isdigit():
            words.append(_number_part(part))
        elif part.isalpha():
            words.append(" ".join(part) if part.lower() == "www" else part)
        elif part in _ADDRESS_MARKS:
            words.append(_ADDRESS_MARKS[part])
    return " ".join(words)


_PASSES: list[tuple[re.Pattern, object]] = [
    (_MIXED_NUMBER, _mixed_number),  # before the phone numbers, ranges and dates, which would split "2-3/4"
    (_PHONE, _phone),
    (_CIRCA, "circa"),  # before the numbers become words
    (_DIALLED, lambda m: m.group(1) + _digits(m.group(2).replace(" ", ""))),  # before the groups below join "1 000"
    (_SPACED_THOUSANDS, lambda m: re.sub(r"[ \u00a0\u202f]", ",", m.group(0))),  # before every rule that reads numbers
    (_PER_UNIT, _per_unit),  # before ranges and amounts, which it leaves whole: "$5-10/hr" -> "$5-10 per hour"
    (_RANGE, _range),  # before amounts, times and years, which would each take their side and leave the dash
    (_CURRENCY_BEFORE, _currency),
    (_CURRENCY_AFTER, _currency_after),
    (_CENTS, lambda m: _amount(m.group(1), "cent", "cents")),
    (_ISO_DATE, _iso_date),
    (_NUMERIC_DATE, _numeric_date),
    (_SHORT_DATE, _short_date),  # after the dates with a year that contain one; before the times it looks for
    (_MONTH_DAY, _month_day),
    (_DAY_MONTH, _day_month),
    (_DIGIT_GROUPS, lambda m: " ".join(_digits(group) for group in m.group(0).split("-"))),
    (_VERSION_PREFIX, lambda m: m.group(1) or "version "),  # "Version v1.2" says it once
    (_DOTTED_GROUPS, _dotted_groups),
    (_TIME, _time),
    (_DOTTED_TIME, _time),
    (_HOUR_AMPM, _hour_ampm),
    (_NUMBER_COLON, _number_colon),  # after the times, which take the colons they can read
    (_SUFFIXED_FRACTION, _fraction),
    (_ORDINAL, _ordinal),
    (_PERCENT, _percent),
    (_WITH_UNIT, _with_unit),
    (_FRACTION, _fraction),
    (_NUMBER_SLASH, lambda m: " "),
    (_NUMBER_SIGN, lambda m: "number "),
    (_YEAR, _year),
    (_DECADE, lambda m: _plural(number_to_words(m.group(1)))),
    (_GLUED_DECIMAL, _glued_decimal),
    (_NUMBER, _number),
    (_LEFTOVER_DIGITS, lambda m: f" {number_to_words(m.group(0))} "),  # digits glued to letters: "A4", "mp3"
]
_WORD_PASSES: list[tuple[re.Pattern, object]] = [  # the passes that do not need a digit
    (_ROMAN, _roman),  # before abbreviations, which would end a sentence at "Vol. II"
    (_TITLE_PATTERN, _title),
    (_SAINT_OR_STREET, _saint_or_street),
    (_ABBREVIATION_PATTERN, _abbreviation),
    (_COMPANY, _company),
    (_GREEK_LETTER, _greek_letter),
]

# A sentence written in capitals (shouting, a heading, a warning sign): espeak-ng spells "IT" and "US" in capitals as
# the acronyms ("I T", "U S") that they are in mixed-case text, so there they become the pronouns ("THE US" stays)
_CLAUSE = re.compile(r"[^.!?\n\"()]+")  # a quotation in capitals inside a sentence in lowercase counts
_SHOUTED_PRONOUN = re.compile(r"(?<![\w'])(?<!THE )(IT|US)(?![\w'])")
_CAPITAL_WORD = re.compile(r"\b[A-Z]{2,}\b")


def _shouted_pronouns(match: re.Match) -> str:
    clause = match.group(0)
    if any(ch.islower() for ch in clause) or len(_CAPITAL_WORD.findall(clause)) < 2:
        return clause
    return _SHOUTED_PRONOUN.sub(lambda m: m.group(1).lower(), clause)


_HAS_DIGIT = re.compile(r"\d")
_SPACES = re.compile(r"[ \t]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" +([,.;:!?)\]])")


def normalize_text(text: str) -> str:
    """English written forms -> spoken words (what is expanded, and in which order, is listed in the comment that
    opens this section).

    Text without digits, symbols, known abbreviations or Roman numerals comes back unchanged except for spacing around
    replaced marks.

    >>> normalize_text("Dr. Smith paid $3.50 on 12/05/2024.")
    'Doctor Smith paid three dollars fifty cents on December fifth, twenty twenty four.'
    """
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
    text = split_vulgar_fractions(text.replace("−", "-"))  # U+2212 minus sign
    text = _WEB_ADDRESS.sub(_web_address, text)  # before the rules below take its digits, dots and slashes apart
    text = re.sub(r"(?<=\d)\s?[xX×]\s?(?=\d)", " by ", text)  # 1920x1080
    text = _MULTIPLIER.sub(r"\1 times", text)  # after dimensions, which keep "by"; the passes read the number ("2-3x")
    if "IT" in text or "US" in text:  # before the passes write lowercase words into a clause in capitals
        text = _CLAUSE.sub(_shouted_pronouns, text)
    passes = _PASSES + _WORD_PASSES if _HAS_DIGIT.search(text) else _WORD_PASSES
    for pattern, replacement in passes:
        text = pattern.sub(replacement, text)
    text = _SYMBOL_PATTERN.sub(lambda m: _SYMBOLS[m.group(0)], text)
    text = _AT.sub(" at ", text)
    if any(ch in _FORMATTING for ch in text):
        text = "".join(" " if ch in _FORMATTING else ch for ch in text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    return text.strip()


# ----------------------------------------------------------------------------------------------------------------------
# language check (is this text English?)
# ----------------------------------------------------------------------------------------------------------------------
# Is this text English? Script check (an error) and a Latin-script language guess (a warning) for DiTAR's front end.
#
# DiTAR's phonemizer speaks English: espeak-ng reads other scripts as Unicode character names ("Chinese letter",
# "Arabic meem") and French or German words with English spelling rules. So:
#
# * [`non_latin_scripts`] finds letters of other writing systems (Han, Hiragana/Katakana, Hangul, Arabic, Hebrew,
#   Cyrillic, Greek, Devanagari, Thai, ...); [`check_script`] raises `ValueError` naming the script and the language(s)
#   written in it. A lone Greek letter inside English text (`π`, `α-helix`) is allowed: it is read by its name.
# * [`guess_latin_language`] guesses French, German, Spanish, Italian, Portuguese or Dutch from function words
#   (articles, pronouns, prepositions, auxiliaries, numbers and a few greetings; name particles such as "de", "la",
#   "van" and words that are also English count half). It answers only when they outweigh the English function words
#   of the text more than two to one (and reach 2), or, in a text of five words or more without a single English
#   function word, reach 1.5; so names, loanwords ("déjà vu", "fiesta", "Weltanschauung") and short quotes in an
#   English sentence do not count (on 53,741 texts of the English fortune files it named 34, nearly all real French,
#   German, Latin or Esperanto quotations). The front end turns an answer into a warning, not an error: the text is
#   still read, with English pronunciation.
#
# Both work offline on the text alone, without a model, in about 10 µs per short sentence.

# first word of a Unicode character name -> (script, languages written in it) for the message
_SCRIPT_LANGUAGES = {
    "CJK": ("Han", "Chinese or Japanese"),
    "HIRAGANA": ("Hiragana", "Japanese"),
    "KATAKANA": ("Katakana", "Japanese"),
    "HALFWIDTH": ("Katakana", "Japanese"),
    "HANGUL": ("Hangul", "Korean"),
    "BOPOMOFO": ("Bopomofo", "Chinese"),
    "ARABIC": ("Arabic", "Arabic, Persian or Urdu"),
    "HEBREW": ("Hebrew", "Hebrew or Yiddish"),
    "CYRILLIC": ("Cyrillic", "Russian, Ukrainian, Bulgarian, Serbian or another Cyrillic-script language"),
    "GREEK": ("Greek", "Greek"),
    "DEVANAGARI": ("Devanagari", "Hindi, Marathi or Nepali"),
    "BENGALI": ("Bengali", "Bengali"),
    "GURMUKHI": ("Gurmukhi", "Punjabi"),
    "GUJARATI": ("Gujarati", "Gujarati"),
    "TAMIL": ("Tamil", "Tamil"),
    "TELUGU": ("Telugu", "Telugu"),
    "KANNADA": ("Kannada", "Kannada"),
    "MALAYALAM": ("Malayalam", "Malayalam"),
    "SINHALA": ("Sinhala", "Sinhala"),
    "THAI": ("Thai", "Thai"),
    "LAO": ("Lao", "Lao"),
    "KHMER": ("Khmer", "Khmer"),
    "MYANMAR": ("Myanmar", "Burmese"),
    "TIBETAN": ("Tibetan", "Tibetan"),
    "GEORGIAN": ("Georgian", "Georgian"),
    "ARMENIAN": ("Armenian", "Armenian"),
    "ETHIOPIC": ("Ethiopic", "Amharic or Tigrinya"),
    "SYRIAC": ("Syriac", "Syriac"),
    "THAANA": ("Thaana", "Dhivehi"),
    "MONGOLIAN": ("Mongolian", "Mongolian"),
}
_LATIN_NAME_PREFIXES = ("LATIN", "MODIFIER LETTER", "FULLWIDTH LATIN")


def _script_of(ch: str) -> str | None:
    """The script of a letter, by the first word of its Unicode name; None for Latin (and nameless) letters."""
    name = unicodedata.name(ch, "")
    if not name or name.startswith(_LATIN_NAME_PREFIXES):
        return None
    first = name.split()[0]
    if first in ("CJK", "IDEOGRAPHIC"):
        return "CJK"
    return first


def non_latin_scripts(text: str) -> dict[str, str]:
    """{script key: the first letter of it} for every non-Latin script whose letters appear in `text`.

    Letters are Unicode categories L* (marks and digits are ignored). A single Greek letter standing alone between
    non-letters is not counted (it is a symbol in English text: `π`, `α-helix`)."""
    found: dict[str, str] = {}
    for script, ch in _non_latin(text):
        found.setdefault(script, ch)
    return found


def non_latin_letters(text: str) -> list[str]:
    """The distinct letters of `text` in non-Latin scripts (as counted by [`non_latin_scripts`]), in order."""
    return list(dict.fromkeys(ch for _, ch in _non_latin(text)))


def _non_latin(text: str):
    for index, ch in enumerate(text):
        if not unicodedata.category(ch).startswith("L") or ch.isascii():
            continue
        script = _script_of(ch)
        if script is None:
            continue
        if script == "GREEK":
            before = text[index - 1] if index else " "
            after = text[index + 1] if index + 1 < len(text) else " "
            if not before.isalpha() and not after.isalpha():
                continue
        yield script, ch


def check_script(text: str, speaks: str = "English", name: str = "text") -> None:
    """Raises `ValueError` when `text` has letters of a non-Latin script, naming the script, the language(s) it is
    written in and an example letter; DiTAR would otherwise read them as Unicode character names. `name`: what the
    message calls the text (the argument it came from)."""
    found = non_latin_scripts(text)
    if not found:
        return
    parts = []
    for key, example in found.items():
        script, languages = _SCRIPT_LANGUAGES.get(key, (key.title(), f"a language written in {key.title()} script"))
        parts.append(f"{script} script ({languages}; e.g. {example!r})")
    raise ValueError(
        f"`{name}` {text[:60]!r}{'...' if len(text) > 60 else ''} is written in {' and '.join(parts)}, which is not in "
        f"the vocabulary: the model speaks {speaks} only and would read these letters as their Unicode names. Give "
        f"{speaks} text (transliterate or translate it first)."
    )


# ----------------------------------------------------------------------------------------------------------------------
# Latin-script language guess
# ----------------------------------------------------------------------------------------------------------------------

# Function words and a few very common words of each language that are NOT English words (so "die", "was", "in", "a",
# "no", "son", "me", "fait", "plus", "pour" are left out). Elided forms keep their apostrophe ("l'", "c'").
_FUNCTION_WORDS = {
    "French": """le la les l' un une des du au aux d' c' j' qu' n' s' m' t' et est sont suis es êtes sommes ne pas
        je tu il elle ils elles nous vous leur leurs ce cette ces ma mes ta tes à notre votre nos vos que qui
        quoi où dans sur avec sans chez mais ou très bien aussi être avoir été avez avons ont était beaucoup
        merci bonjour bonsoir oui aujourd' demain hier toujours jamais rien peut veux voudrais faire plaît depuis
        cela ça ici voilà deux trois quatre cinq sept huit neuf dix heure heures""",
    "German": """der das den dem des ein eine einen einem einer und ist sind bin bist nicht ich du er sie es wir
        ihr ihre ihren ihnen mit auf für zu zum zur im ins nach bei aus über unter auch aber oder wenn wie wo noch
        nur schon sehr heute morgen bitte danke vielen dank guten tag ja nein kann können muss haben habe hatte wird
        werden wurde mein meine dein deine sein seine jede jeder jedes letzte woche dass weil nichts etwas hier jetzt
        immer mich mir dich dir uns euch eins zwei drei vier fünf sechs sieben acht neun zehn uhr""",
    "Spanish": """el la los las un una unos unas y es está están estoy son de del en que qué por para con muy pero
        cuando dónde donde mi mis tu tus su sus yo él ella nosotros ellos ellas hay hace gracias hola buenos buenas
        días noches mañana favor quiero quisiera puedo también más todo todos todas esta este estos estas eso esto
        lo le al tan como sí sé ya hoy ayer siempre nunca nada aquí uno dos tres cuatro cinco seis siete ocho nueve
        diez""",
    "Italian": """il lo gli della delle dello degli di che è sono per con un una uno questo questa quello quella ciao
        grazie buongiorno buonasera molto anche sì io lei noi voi loro mio mia miei tuo tua suo sua ho ha hanno
        siamo nel nella alla allo dove quando perché oggi domani sempre niente qui cosa""",
    "Portuguese": """o os as um uma é não sim que de do da dos das em na nas nos com por para muito obrigado
        obrigada você eu ele ela nós eles elas está estou são mas meu minha bom boa dia hoje amanhã onde quando
        também isso isto aqui sempre nunca nada""",
    "Dutch": """de het een en niet ik jij je hij zij wij van op te dat met voor zijn ben heb hebt heeft hebben
        maar ook nog wel naar om uit bij wat hoe waar dank alstublieft goedemorgen vandaag morgen heel zeer geen
        deze dit mijn jouw onze kunnen kan moet wordt""",
}
_FUNCTION_WORDS = {language: frozenset(words.split()) for language, words in _FUNCTION_WORDS.items()}
# Words that are also English words or name particles ("Jean de la Fontaine", "van Gogh", "die", "um") count half
_HALF_WEIGHT = {
    "German": frozenset("die um was war hat also in an so das der den des acht".split()),
    "French": frozenset("le la les de du des".split()),
    "Spanish": frozenset("el la los las de del y al dos".split()),
    "Italian": frozenset("la di della".split()),
    "Portuguese": frozenset("de do da dos das".split()),
    "Dutch": frozenset("van de het die was".split()),
}
_ENGLISH_FUNCTION_WORDS = frozenset(
    """the a an and or but of to in on at by for with from about as into over after before under between through is are
    was were be been being am do does did have has had will would shall should can could may might must not no yes it
    its this that these those i you he she we they me him her us them my your his our their what which who whom whose
    where when why how all any some each every there here then than so if because while also very just only too more
    most much many such own same other up down out off again once let's it's i'm don't can't won't isn't""".split()
)
# letters that only some of the languages use, to break ties between them
_TELLTALE_LETTERS = {
    "French": set("çœèêëîïôûùÿ"),
    "German": set("ßäöü"),
    "Spanish": set("ñ¿¡"),
    "Italian": set("ìò"),
    "Portuguese": set("ãõ"),
}
_WORD = re.compile(r"[^\W\d_]+'?|'")
_ADDRESS = re.compile(r"\S*(?:@|://|www\.)\S*")  # e-mail addresses and URLs say nothing about the language


def _words(text: str) -> list[str]:
    return _WORD.findall(_ADDRESS.sub(" ", text.lower().replace("\u2019", "'")))


def guess_latin_language(text: str) -> str | None:
    """The name of the non-English language `text` looks like ("French", "German", "Spanish", "Italian",
    "Portuguese", "Dutch"), or None when it looks English or there is too little to tell.

    Each distinct function word of a language scores 1 (name particles and words that are also English, such as "de",
    "la", "die", score 1/2). A language is named when its score is at least 2 and more than twice the number of
    distinct English function words, or when a text of five words or more has no English function word at all and
    the language scores at least 1.5."""
    words = _words(text)
    if len(words) < 2:
        return None
    distinct = set(words)
    english = sum(word in _ENGLISH_FUNCTION_WORDS or word.rstrip("'") in _ENGLISH_FUNCTION_WORDS for word in distinct)
    scores = {}
    for language, vocabulary in _FUNCTION_WORDS.items():
        half = _HALF_WEIGHT.get(language, frozenset())
        scores[language] = sum(0.5 if word in half else 1.0 for word in distinct if word in vocabulary or word in half)
    best = max(scores.values())
    if not ((best >= 2 and best > 2 * english) or (len(words) >= 5 and english == 0 and best >= 1.5)):
        return None
    candidates = [language for language, score in scores.items() if score == best]
    if len(candidates) > 1:
        lowered = set(text.lower())
        marked = [language for language in candidates if _TELLTALE_LETTERS.get(language, set()) & lowered]
        candidates = marked or candidates
    return candidates[0]


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
            ("$3.50" -> "three dollars fifty cents", see [`normalize_text`]) before phonemization.
            English languages only. Default: the tokenizer's `normalize_text` init kwarg, else True.
        check_language: for English, raise `ValueError` on letters of other scripts (Chinese, Arabic, Cyrillic, ...)
            and log a warning naming the language when Latin-script text looks French, German, Spanish, Italian,
            Portuguese or Dutch (see [`check_script`] and [`guess_latin_language`]). Default: the tokenizer's
            `check_language` init kwarg, else True.

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
        English with `normalize_text`) numbers, currency, dates, times, web and e-mail addresses, abbreviations and
        symbols spelled out, whitespace runs -> one space, stripped; lowercased when the vocabulary has no uppercase
        letter and the text is not going to be phonemized (espeak-ng reads case itself, e.g. "US" vs "us")."""
        text = clean_text(self._check_text(text))
        if self.normalize_text and self.is_english:
            text = split_vulgar_fractions(text)
        text = unicodedata.normalize("NFKC", text)
        text = _QUOTE_PATTERN.sub(lambda match: _QUOTES[match.group(0)], text)
        if self.normalize_text and self.is_english:
            text = normalize_text(text)
        text = _WHITESPACE.sub(" ", text).strip()
        if self.lowercase and not self.use_phonemes:
            text = text.lower()
        return text

    def check_text_script(self, text: str, name: str = "text") -> str:
        """For English with `check_language`: raises `ValueError` when `text` has letters of another script (nothing
        is logged, so a long text can be checked whole before its sentences are spoken one by one). Returns the text
        as the check saw it (cleaned, NFKC). `name`: what the messages call the text (the argument it came from)."""
        text = unicodedata.normalize("NFKC", clean_text(self._check_text(text)))
        if self.check_language and self.is_english:
            check_script(text, name=name)
        return text

    def check_text_language(self, text: str, name: str = "text") -> str | None:
        """For English with `check_language`: raises `ValueError` when `text` has letters of another script, and
        logs a warning (and returns the language's name) when it looks like another Latin-script language. `name`:
        what the messages call the text."""
        if not (self.check_language and self.is_english):
            return None
        text = self.check_text_script(text, name)
        language = guess_latin_language(text)
        if language is not None:
            shown = text if len(text) <= 60 else text[:60] + "..."
            logger.warning(
                f"`{name}` {shown!r} looks {language}; the model speaks English only and will read it with English "
                "pronunciation. Set `pipe.processor.frontend.check_language = False` (or `check_language=False` on the "
                "text front end) to silence this; it also turns off the refusal of other scripts."
            )
        return language

    def phonemize(self, text: str) -> str:
        """IPA (with stress marks, punctuation kept) of already normalised `text`, through espeak-ng."""
        backend = _espeak_backend(self.language)
        # one text at a time in the process: espeak-ng keeps its input and output in global state (and the call
        # releases the GIL), so two threads phonemizing at once could each get the other's phonemes
        with _PHONEMIZE_LOCK:
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

    def text_to_symbols(self, text: str, on_unknown: str = "warn", name: str = "text") -> str:
        """The exact character string that gets tokenized: normalised text, or its phonemes when phonemizing.

        Args:
            name: what the messages call the text (the argument it came from, e.g. `prompt_text`).
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
            self.check_text_language(text, name)
        normalized = self.normalize(text)
        if not normalized:
            raise ValueError(f"`{name}` is empty or whitespace only ({text!r}); give at least one word to speak.")
        unreadable = self.unreadable_characters(normalized)
        if unreadable:
            listing = ", ".join(
                f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed').lower()})" for ch in unreadable
            )
            message = f"`{name}` {text!r} has characters with no reading in {self.language!r}: {listing}"
            if on_unknown == "error":
                raise ValueError(message + ". Remove them or spell them out, or pass on_unknown='warn' to drop them.")
            (logger.warning if on_unknown == "warn" else logger.info)(message + "; they are dropped.")
            dropped = set(unreadable)
            normalized = _WHITESPACE.sub(" ", "".join(" " if ch in dropped else ch for ch in normalized)).strip()
            normalized = re.sub(r" +([,.;:!?])", r"\1", normalized)
        if not has_speakable_content(normalized):
            missing = list(dict.fromkeys(ch for ch in normalized if ch not in self._vocab and not ch.isspace()))
            raise ValueError(
                f"`{name}` {text!r} has nothing to speak: no letter or digit"
                + (" once unreadable characters are dropped" if unreadable else "")
                + (f" ({', '.join(map(repr, missing))} not in the vocabulary)" if missing else "")
                + ". Give at least one word."
            )
        if not self.use_phonemes:
            return normalized
        symbols = self.phonemize(normalized)
        if not symbols:
            raise ValueError(f"`{name}` {text!r} produced no phonemes (espeak-ng language {self.language!r}).")
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

    def encode(self, text: str, on_unknown: str = "warn", name: str = "text") -> list[int]:
        """Token ids of `text` (one per character of [`text_to_symbols`]).

        Args:
            on_unknown: what to do with unknown characters. Before phonemization (phonemizing tokenizers), characters
                espeak-ng cannot read (symbols such as ☃ or emoji; letters of other scripts when `check_language` is
                off): `"warn"` (default) drops them with a warning, `"replace"` drops them with an info log, `"error"`
                raises `ValueError` naming them. Characters of the symbols (phonemes, or the text of grapheme
                tokenizers) that the vocabulary lacks: `"warn"` maps them to `<unk>` and logs which ones,
                `"replace"` maps them to `<unk>` and logs at info level, `"error"` raises `ValueError`.
            name: what the messages call the text (the argument it came from, e.g. `prompt_text`).

        Raises `ValueError` for empty text, text with nothing to speak, text in another script, text that yields no
        symbols, and text made only of unknown characters.
        """
        if on_unknown not in _ON_UNKNOWN:
            raise ValueError(f"`on_unknown` must be one of {_ON_UNKNOWN}, got {on_unknown!r}.")
        symbols = self.text_to_symbols(text, on_unknown=on_unknown, name=name)
        ids = [self._vocab.get(ch, self.unk_token_id) for ch in symbols]
        unknown = Counter(ch for ch in symbols if ch not in self._vocab)
        if unknown:
            listing = ", ".join(f"{ch!r} (U+{ord(ch):04X}) x{n}" for ch, n in unknown.items())
            what = ("phonemes" if self.use_phonemes else "text") + ("" if name == "text" else f" of `{name}`")
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
            raise ValueError(f"`{name}` {text!r} encodes to no tokens.")
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
