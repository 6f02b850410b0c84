"""Is this text English? Script check (an error) and a Latin-script language guess (a warning) for DiTAR's front end.

DiTAR's phonemizer speaks English: espeak-ng reads other scripts as Unicode character names ("Chinese letter",
"Arabic meem") and French or German words with English spelling rules. So:

* [`non_latin_scripts`] finds letters of other writing systems (Han, Hiragana/Katakana, Hangul, Arabic, Hebrew,
  Cyrillic, Greek, Devanagari, Thai, ...); [`check_script`] raises `ValueError` naming the script and the language(s)
  written in it. A lone Greek letter inside English text (`π`, `α-helix`) is allowed: it is read by its name.
* [`guess_latin_language`] guesses French, German, Spanish, Italian, Portuguese or Dutch from function words (articles,
  pronouns, prepositions, auxiliaries and a few greetings) that are not also English words. It answers only when at
  least two such words are found and they outnumber the English function words more than two to one, so names,
  loanwords ("déjà vu", "fiesta", "Weltanschauung") and short quotes in an English sentence do not count. The front
  end turns an answer into a warning, not an error: the text is still read, with English pronunciation.

Both work offline on the text alone, without a model, in about 10 µs per short sentence.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["check_script", "guess_latin_language", "non_latin_letters", "non_latin_scripts"]

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


def check_script(text: str, speaks: str = "English") -> None:
    """Raises `ValueError` when `text` has letters of a non-Latin script, naming the script, the language(s) it is
    written in and an example letter; DiTAR would otherwise read them as Unicode character names."""
    found = non_latin_scripts(text)
    if not found:
        return
    parts = []
    for key, example in found.items():
        script, languages = _SCRIPT_LANGUAGES.get(key, (key.title(), f"a language written in {key.title()} script"))
        parts.append(f"{script} script ({languages}; e.g. {example!r})")
    raise ValueError(
        f"`text` {text[:60]!r}{'...' if len(text) > 60 else ''} is written in {' and '.join(parts)}, which is not in "
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
