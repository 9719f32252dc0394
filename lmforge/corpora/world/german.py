"""German morphology for the world: articles, cases, adjective endings, pronouns, numbers.

The lexicon (:mod:`.lexicon`) lists each German word once (a noun with its gender and
plural, an adjective stem, an infinitive); every inflected form is derived here by rule,
so the rules are in one place and can be read:

* **gender** (``genus``): ``m``, ``f`` or ``n`` for every noun; persons are ``m``/``f``.
* **articles** by case and gender::

               m      f      n               m      f      n
      nom    der    die    das     ein    eine   ein
      acc    den    die    das     einen  eine   ein
      dat    dem    der    dem     einem  einer  einem

* **weak masculine nouns** (n-declension: der Löwe, den Löwen, dem Löwen) add ``-(e)n``
  outside the nominative singular; all other nouns keep the singular unchanged (the
  archaic dative ``-e`` is not used).
* **adjective endings** after the article (``ADJ_ENDINGS``): weak after der/die/das
  (der rote Ball, den roten Ball), mixed after ein/eine (einen roten Ball, eine rote
  Tasse, ein rotes Buch), strong without an article; a plural without an article (after
  a number or "wie viele") takes the strong ``-e`` (drei rote Bälle).
* **prepositions with the dative** contract with the article: in + dem = im,
  an + dem = am, zu + dem = zum, zu + der = zur (in der, an der, auf dem stay apart).
* **pronouns** agree with the gender of their antecedent: er/sie/es, ihn/sie/es,
  ihm/ihr/ihm; possessive determiners (sein/ihr) decline like ``ein``: seinem, ihrem.
* **numbers** 1..99 in words: zwei, dreizehn, sechzehn, siebzehn, einundzwanzig,
  dreißig, neunundneunzig.
* **infinitives**: a separable verb is written with ``+`` in the lexicon (``ein+kaufen``);
  its infinitive drops the mark (einkaufen) and its zu-infinitive puts ``zu`` between
  particle and stem (einzukaufen); otherwise ``zu`` goes before the last verb (Drachen
  steigen zu lassen).
"""

from __future__ import annotations

from collections.abc import Sequence

LANG = "de"
GENDERS = ("m", "f", "n")
CASES = ("nom", "acc", "dat")

# case -> article for (m, f, n)
DEF_ARTICLE = {"nom": ("der", "die", "das"), "acc": ("den", "die", "das"),
               "dat": ("dem", "der", "dem")}
INDEF_ARTICLE = {"nom": ("ein", "eine", "ein"), "acc": ("einen", "eine", "ein"),
                 "dat": ("einem", "einer", "einem")}
PRONOUN = {"nom": ("er", "sie", "es"), "acc": ("ihn", "sie", "es"), "dat": ("ihm", "ihr", "ihm")}
POSSESSIVE = {"m": "sein", "f": "ihr", "n": "sein"}  # by the possessor's gender

# declension -> case -> ending for (m, f, n), singular
ADJ_ENDINGS = {
    "weak": {"nom": ("e", "e", "e"), "acc": ("en", "e", "e"), "dat": ("en", "en", "en")},
    "mixed": {"nom": ("er", "e", "es"), "acc": ("en", "e", "es"), "dat": ("en", "en", "en")},
    "strong": {"nom": ("er", "e", "es"), "acc": ("en", "e", "es"), "dat": ("em", "er", "em")},
}
PLURAL_STRONG_ENDING = "e"  # nominative/accusative plural without an article

CONTRACTIONS = {("in", "dem"): "im", ("an", "dem"): "am", ("zu", "dem"): "zum",
                ("zu", "der"): "zur"}

N_DECLENSION = frozenset({"Löwe", "Elefant", "Affe"})

# Forms that are function words agreeing with a slot, not mentions of it.
FUNCTION_FORMS = frozenset({f"{k}_{case}" for k in ("der", "ein", "it") for case in CASES}
                           | {"at", "to", "rel"})

Forms = dict[tuple[str, str], tuple[str, ...]]


def _g(genus: str) -> int:
    return GENDERS.index(genus)


def agree(row: tuple[str, str, str], genus: Sequence[str]) -> tuple[str, ...]:
    """The entry of a ``(m, f, n)`` table row for each gender: articles, pronouns."""
    return tuple(row[_g(g)] for g in genus)


def indefinite(case: str, noun: str, genus: str) -> str:
    """``indefinite("acc", "Tasse", "f") == "eine Tasse"``."""
    return f"{INDEF_ARTICLE[case][_g(genus)]} {noun}"


def oblique(noun: str) -> str:
    """Accusative/dative singular: ``-(e)n`` for weak masculines (Löwe -> Löwen)."""
    if noun not in N_DECLENSION:
        return noun
    return noun + ("n" if noun.endswith("e") else "en")


def prep_dat(prep: str, genus: str) -> str:
    """A preposition with the dative definite article, contracted where German does."""
    art = DEF_ARTICLE["dat"][_g(genus)]
    return CONTRACTIONS.get((prep, art), f"{prep} {art}")


def possessive(owner_genus: str, case: str, genus: str) -> str:
    """sein/ihr declined like ``ein``: ``possessive("f", "dat", "m") == "ihrem"``."""
    return POSSESSIVE[owner_genus] + INDEF_ARTICLE[case][_g(genus)].removeprefix("ein")


def genitive(name: str) -> str:
    """Saxon genitive of a name: Annas, but James' (after s, x, z, ß)."""
    return name + ("'" if name[-1] in "sxzß" else "s")


_UNITS = ("", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
_TEENS = {10: "zehn", 11: "elf", 12: "zwölf", 16: "sechzehn", 17: "siebzehn"}
_TENS = ("", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig",
         "achtzig", "neunzig")


def de_number(n: int) -> str:
    """German numeral for ``1 <= n <= 99`` (eins, zwölf, siebzehn, einundzwanzig...)."""
    if not 1 <= n <= 99:
        raise ValueError(f"de_number supports 1..99, got {n}")
    tens, ones = divmod(n, 10)
    if tens == 0:
        return _UNITS[ones]
    if tens == 1:
        return _TEENS.get(n) or _UNITS[ones] + "zehn"
    if ones == 0:
        return _TENS[tens]
    return ("ein" if ones == 1 else _UNITS[ones]) + "und" + _TENS[tens]


def infinitive(phrase: str) -> str:
    """``ein+kaufen`` -> ``einkaufen``."""
    return phrase.replace("+", "")


def zu_infinitive(phrase: str) -> str:
    """``ein+kaufen`` -> ``einzukaufen``; ``Schach spielen`` -> ``Schach zu spielen``."""
    if "+" in phrase:
        return phrase.replace("+", "zu")
    head, _, verb = phrase.rpartition(" ")
    return f"{head} zu {verb}".lstrip()


# ----------------------------------------------------------------------------- forms

def noun_forms(rows: Sequence[tuple[str, str, str]]) -> tuple[Forms, tuple[str, ...]]:
    """Forms of countable nouns from ``(singular, genus, plural)`` rows, and the genders.

    ``w`` nominative, ``acc``/``dat`` the singular noun in that case, ``pl`` the plural,
    ``der_<case>``/``ein_<case>`` the articles, ``it_<case>`` the pronoun (er/ihn/ihm...).
    """
    genus = tuple(r[1] for r in rows)
    forms: Forms = {(LANG, "w"): tuple(r[0] for r in rows),
                    (LANG, "acc"): tuple(oblique(r[0]) for r in rows),
                    (LANG, "dat"): tuple(oblique(r[0]) for r in rows),
                    (LANG, "pl"): tuple(r[2] for r in rows)}
    for case in CASES:
        for key, table in (("der", DEF_ARTICLE), ("ein", INDEF_ARTICLE), ("it", PRONOUN)):
            forms[(LANG, f"{key}_{case}")] = agree(table[case], genus)
    return forms, genus


def place_forms(rows: Sequence[tuple[str, str, str]]) -> tuple[Forms, tuple[str, ...]]:
    """Forms of places from ``(noun, genus, preposition of location)`` rows.

    ``at`` is where something happens (im Park, in der Schule, am Strand, auf dem Markt),
    ``to`` where one goes (zum Park, zur Schule); ``dat`` the noun after either.
    """
    genus = tuple(r[1] for r in rows)
    return {(LANG, "w"): tuple(r[0] for r in rows),
            (LANG, "dat"): tuple(oblique(r[0]) for r in rows),
            (LANG, "at"): tuple(prep_dat(r[2], r[1]) for r in rows),
            (LANG, "to"): tuple(prep_dat("zu", r[1]) for r in rows)}, genus


def adjective_forms(stems: Sequence[str]) -> Forms:
    """Forms of attributive adjectives: ``w`` the stem (predicative), ``pl`` the strong
    plural (rote), and ``<case>_<declension>.<genus>`` for each singular ending, which
    a template selects by agreement (``{c.acc_mixed~o}``: the genus of slot ``o``)."""
    forms: Forms = {(LANG, "w"): tuple(stems),
                    (LANG, "pl"): tuple(s + PLURAL_STRONG_ENDING for s in stems)}
    for decl, cases in ADJ_ENDINGS.items():
        for case, endings in cases.items():
            for g, end in zip(GENDERS, endings, strict=True):
                forms[(LANG, f"{case}_{decl}.{g}")] = tuple(s + end for s in stems)
    return forms


def activity_forms(phrases: Sequence[str]) -> Forms:
    """``w`` the infinitive phrase (after a modal), ``zu`` the zu-infinitive."""
    return {(LANG, "w"): tuple(infinitive(p) for p in phrases),
            (LANG, "zu"): tuple(zu_infinitive(p) for p in phrases)}
