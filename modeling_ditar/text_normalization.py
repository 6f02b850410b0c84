"""English text normalisation for DiTAR: written forms -> the words a speaker would say, before phonemisation.

espeak-ng reads many written forms literally ("$3.50" -> "dollar three point five zero", "12/05/2024" -> "twelve slash
zero five slash two thousand twenty four"). [`normalize_text`] rewrites them into plain English words first, with one
table-driven regular-expression pass per kind of written form, in this order:

1. currency: `$3.50` -> "three dollars fifty cents", `£5`, `€20`, `¥100`, `50¢`, `$2 million` -> "two million dollars";
2. dates: ISO `2024-12-05`, numeric `12/05/2024` or `12-05-2024` read **month first (US convention)** unless the first
   number cannot be a month (`25/12/2024` is read day first), `December 5, 2024`, `Dec. 5th`, `5 December 2024`;
3. times: `3:30 pm` -> "three thirty PM", `14:05` -> "fourteen oh five", `7am`;
4. ranges with an en dash (`1990–2000` -> "nineteen ninety to two thousand"), ordinals (`23rd`), percentages,
   numbers with a unit (`5 km` -> "five kilometers", `1 kg` -> "one kilogram", `90°F`), small fractions (`3/4`);
5. years: a standalone four-digit number from 1000 to 2099 without separators is read as a year (`1999` -> "nineteen
   ninety nine", `2024` -> "twenty twenty four", `1990s` -> "nineteen nineties"); write `1,999` for the cardinal;
6. other numbers: cardinals (with thousands separators), decimals (`3.14` -> "three point one four"), negatives
   (`-5` -> "minus five"); digit strings with a leading zero or more than 15 digits are read digit by digit;
7. abbreviations (`Dr.`, `Mr.`, `Mrs.`, `Ms.`, `St.` as Saint before a name and Street otherwise, `etc.`, `e.g.`,
   `i.e.`, `vs.`, `No. 5`/`#5` -> "number five", ...) and symbols (`&` `%` `+` `=` `@` `×` `°` ...); formatting marks
   (`*`, `_`, `|`, `•`, `™`, `®`, ...) become spaces; isolated Greek letters are named (`π` -> "pi").

Number words come from `num2words` (hyphens and commas removed: "twenty four", "one thousand two hundred and five").
[`clean_text`] removes what must never reach the phonemizer: control characters (a NUL would end espeak-ng's input)
become spaces, invisible format characters (zero-width space/joiners, BOM, soft hyphen, variation selectors) are
deleted so they do not split words. [`unspeakable_characters`] names the symbols left without an English reading
(`☃`, emoji, ...), and [`has_speakable_content`] tells whether any letter or digit is left.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "clean_text",
    "has_speakable_content",
    "normalize_text",
    "number_to_words",
    "ordinal_to_words",
    "unspeakable_characters",
    "year_to_words",
]

# ----------------------------------------------------------------------------------------------------------------------
# cleaning
# ----------------------------------------------------------------------------------------------------------------------

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

    Thousands separators are dropped, decimals are read digit by digit after "point", a leading minus is "minus", and
    integers with a leading zero or more than 15 digits are read digit by digit."""
    text = str(number).strip().replace(",", "")
    sign = ""
    if text[:1] in "-−":
        sign, text = "minus ", text[1:]
    whole, _, fraction = text.partition(".")
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

# unit written after a number: (singular, plural). Case-sensitive.
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
    "ms": ("millisecond", "milliseconds"),
    "sec": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}

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

_SYMBOLS = {
    "&": " and ",
    "%": " percent ",
    "+": " plus ",
    "=": " equals ",
    "@": " at ",
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
_NOT_AFTER = r"(?<![\w.,])"  # a number starts a token
_NOT_BEFORE = r"(?![\w]|[.,]\d)"  # and ends it (a sentence-final period is fine)

_CURRENCY_SYMBOLS = "".join(map(re.escape, _CURRENCIES))
_CURRENCY_BEFORE = re.compile(
    rf"(-)?([{_CURRENCY_SYMBOLS}])\s?({_NUM})(?:\s?({'|'.join(_SCALES)})\b|(?:\s?([kKmMbB]n?)\b))?{_NOT_BEFORE}"
)
_CURRENCY_AFTER = re.compile(rf"{_NOT_AFTER}({_NUM})\s?([{_CURRENCY_SYMBOLS}])(?!\d)")
_CENTS = re.compile(rf"{_NOT_AFTER}(\d+)\s?¢")
_ISO_DATE = re.compile(r"(?<![\w/.-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\w/-]|\.\d)")
_NUMERIC_DATE = re.compile(r"(?<![\w/.-])(\d{1,2})([/-])(\d{1,2})\2(\d{4}|\d{2})(?![\w/-]|\.\d)")
_MONTH_ALT = "|".join(sorted(_MONTHS, key=len, reverse=True) + sorted(_MONTH_ABBREVIATIONS, key=len, reverse=True))
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_ALT})(\.?)\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?!:\d)(?:(,?)\s+(\d{{4}})\b(?![.,]\d))?", re.IGNORECASE
)
_DAY_MONTH = re.compile(
    rf"{_NOT_AFTER}(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_ALT})\b\.?(?:,?\s+(\d{{4}})\b(?![.,]\d))?",
    re.IGNORECASE,
)
_TIME = re.compile(rf"{_NOT_AFTER}(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?(?:\s?([AaPp])\.?\s?[Mm]\b(\.)?)?(?![\w:]|\.\d)")
_HOUR_AMPM = re.compile(rf"{_NOT_AFTER}(\d{{1,2}})\s?([AaPp])\.?\s?[Mm]\b(\.)?")
_RANGE = re.compile(rf"{_NOT_AFTER}({_NUM})\s?[–—]\s?({_NUM}){_NOT_BEFORE}")
_ORDINAL = re.compile(rf"{_NOT_AFTER}({_INT})(st|nd|rd|th)\b", re.IGNORECASE)
_PERCENT = re.compile(rf"{_NOT_AFTER}(-?{_NUM})\s?%")
_UNIT_ALT = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_WITH_UNIT = re.compile(rf"{_NOT_AFTER}(-?{_NUM})\s?({_UNIT_ALT})(?![\w/])")
_FRACTION = re.compile(rf"{_NOT_AFTER}(\d{{1,2}})/(\d{{1,2}}){_NOT_BEFORE}(?!/)")
_YEAR = re.compile(r"(?<![\w.,$£€¥-])(1\d{3}|20\d{2})('?s)?(?![\w]|[.,]\d)")
_DECADE = re.compile(r"(?<![\w.,])'?([1-9]0)'?s\b")
_NUMBER_SIGN = re.compile(r"(?:(?<![\w.])(No|no|Nos|nos)\.|#)\s?(?=\d)")
_NUMBER = re.compile(rf"(?:(?<![\w.,-])([-−])|{_NOT_AFTER})({_NUM}){_NOT_BEFORE}")
_LEFTOVER_DIGITS = re.compile(r"\d+")


def _abbreviation_pattern(table: dict[str, str]) -> re.Pattern:
    alternatives = "|".join(re.escape(a) for a in sorted(table, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])({alternatives})(?=[\s,;:!?)\"']|$)")


_TITLE_PATTERN = _abbreviation_pattern(_TITLES)
_ABBREVIATION_PATTERN = _abbreviation_pattern(_ABBREVIATIONS)
_SAINT_OR_STREET = re.compile(r"(?<![\w.])St\.(?=\s|$|[,;:!?)])(\s+(?=[A-Z]))?")
_SENTENCE_END_AFTER = re.compile(r"\s*($|[\"')\]]*\s+[A-Z])")
_SYMBOL_PATTERN = re.compile("|".join(map(re.escape, _SYMBOLS)))
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
        scale = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion"}.get(short_scale.lower())
    if scale:
        return f"{sign}{number_to_words(number)} {scale} {many}"
    whole, _, fraction = number.replace(",", "").partition(".")
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
    day, month_text, year = match.groups()
    if not 1 <= int(day) <= 31 or (month_text.lower() == "may" and month_text != "May"):
        return match.group(0)
    spoken = f"the {ordinal_to_words(day)} of {_MONTH_NAMES[month_text.lower()]}"
    if year:
        spoken += f", {year_to_words(year)}"
    return spoken


def _keep_period(match: re.Match, period: str | None) -> str:
    """A period that closed an abbreviation also ends the sentence when the text ends or a capital follows."""
    if not period:
        return ""
    return "." if _SENTENCE_END_AFTER.match(match.string, match.end()) else ""


def _time(match: re.Match) -> str:
    hour, minute, second, half, period = match.groups()
    h, m = int(hour), int(minute)
    if h > 23 or m > 59 or (half and not 1 <= h <= 12) or (second and int(second) > 59):
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


def _hour_ampm(match: re.Match) -> str:
    hour, half, period = match.groups()
    if not 1 <= int(hour) <= 12:
        return match.group(0)
    return f"{number_to_words(hour)} {'AM' if half.lower() == 'a' else 'PM'}" + _keep_period(match, period)


def _range(match: re.Match) -> str:
    return f"{_number_or_year(match.group(1))} to {_number_or_year(match.group(2))}"


def _number_or_year(number: str) -> str:
    return year_to_words(number) if _YEAR.fullmatch(number) else number_to_words(number)


def _ordinal(match: re.Match) -> str:
    return ordinal_to_words(match.group(1))


def _percent(match: re.Match) -> str:
    return number_to_words(match.group(1)) + " percent"


def _with_unit(match: re.Match) -> str:
    number, unit = match.groups()
    one, many = _UNITS[unit]
    return _amount(number, one, many)


def _fraction(match: re.Match) -> str:
    numerator, denominator = int(match.group(1)), int(match.group(2))
    if not (1 <= numerator < denominator <= 10):
        return match.group(0)
    one, many = _FRACTIONS.get(denominator) or (
        ordinal_to_words(denominator),
        _plural(ordinal_to_words(denominator)),
    )
    return f"{number_to_words(str(numerator))} {one if numerator == 1 else many}"


def _year(match: re.Match) -> str:
    words = year_to_words(match.group(1))
    return _plural(words) if match.group(2) else words


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


def _greek_letter(match: re.Match) -> str:
    name = unicodedata.name(match.group(0), "")
    if not name.startswith("GREEK"):
        return match.group(0)
    return " " + name.split()[-1].lower() + " "


_PASSES: list[tuple[re.Pattern, object]] = [
    (_CURRENCY_BEFORE, _currency),
    (_CURRENCY_AFTER, _currency_after),
    (_CENTS, lambda m: _amount(m.group(1), "cent", "cents")),
    (_ISO_DATE, _iso_date),
    (_NUMERIC_DATE, _numeric_date),
    (_MONTH_DAY, _month_day),
    (_DAY_MONTH, _day_month),
    (_TIME, _time),
    (_HOUR_AMPM, _hour_ampm),
    (_RANGE, _range),
    (_ORDINAL, _ordinal),
    (_PERCENT, _percent),
    (_WITH_UNIT, _with_unit),
    (_FRACTION, _fraction),
    (_NUMBER_SIGN, lambda m: "number "),
    (_YEAR, _year),
    (_DECADE, lambda m: _plural(number_to_words(m.group(1)))),
    (_NUMBER, _number),
    (_LEFTOVER_DIGITS, lambda m: f" {number_to_words(m.group(0))} "),  # digits glued to letters: "A4", "mp3"
    (_TITLE_PATTERN, _title),
    (_SAINT_OR_STREET, _saint_or_street),
    (_ABBREVIATION_PATTERN, _abbreviation),
    (_GREEK_LETTER, _greek_letter),
]

_SPACES = re.compile(r"[ \t]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" +([,.;:!?)\]])")


def normalize_text(text: str) -> str:
    """English written forms -> spoken words (see the module docstring for what is expanded and in which order).

    Text without digits, symbols or known abbreviations comes back unchanged except for spacing around replaced marks.

    >>> normalize_text("Dr. Smith paid $3.50 on 12/05/2024.")
    'Doctor Smith paid three dollars fifty cents on December fifth, twenty twenty four.'
    """
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
    text = text.replace("−", "-")  # U+2212 minus sign
    text = re.sub(r"(?<=\d)\s?[xX×]\s?(?=\d)", " by ", text)  # 1920x1080
    for pattern, replacement in _PASSES:
        text = pattern.sub(replacement, text)
    text = _SYMBOL_PATTERN.sub(lambda m: _SYMBOLS[m.group(0)], text)
    if any(ch in _FORMATTING for ch in text):
        text = "".join(" " if ch in _FORMATTING else ch for ch in text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    return text.strip()
