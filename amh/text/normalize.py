"""Amharic text normalisation: Ethiopic punctuation, homophone letters, abbreviations, numbers, Latin.

`normalize(text)` is deterministic and idempotent (normalize(normalize(x)) == normalize(x)) and returns
NFC text with single spaces. The order of the steps matters for idempotence: everything that can join
characters (punctuation mapping, whitespace cleanup, Latin removal) runs before the steps that look for
patterns (abbreviations, numbers), and those leave no digits, keys or slashes at letters behind.
Abbreviations are looked up before homophones are merged (keys match in either spelling), so that keys
that merge to one spelling keep their own expansions (አ.አ, ዓ.ዓ). docs/text.md has the readings.
"""
from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType

from amh.text import numbers
from amh.text.abbreviations import Abbreviations, default_abbreviations, load_abbreviations

__all__ = [
    "default_abbreviations",
    "expand_abbreviations",
    "load_abbreviations",
    "merge_homophones",
    "normalize",
    "unexpanded_abbreviations",
]

# "፡፡" (two word-spaces) is how many typists write "።"; it must be mapped before "፡" alone.
_DOUBLE_WORDSPACE = "፡፡"
ETHIOPIC_PUNCTUATION = {
    "፡": " ",  # word space
    "።": ".",
    "፣": ",",
    "፤": ";",
    "፥": ":",
    "፦": ":",
    "፧": "?",
    "፨": ".",  # paragraph separator
    "፠": ".",  # section mark
}
_PUNCT_AFTER_SPACE = re.compile(r" +(?=[.,;:?!])")
_WHITESPACE = re.compile(r"\s+")
LATIN_LETTER = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_LATIN = re.compile(f"[{LATIN_LETTER}]+")
_ETHIOPIC_LETTER = "\u1200-\u135a\u1380-\u138f\u2d80-\u2ddf\uab00-\uab2f"
_LETTER = _ETHIOPIC_LETTER + LATIN_LETTER
LATIN_MODES = ("keep", "drop")
_SLASH_AT_LETTER = re.compile(f"(?<=[{_ETHIOPIC_LETTER}])/|/(?=[{_ETHIOPIC_LETTER}])")


def _row(base: int) -> list[str]:
    return [chr(base + i) for i in range(8)]


def _homophone_table() -> dict[int, str]:
    """Letters that Amharic pronounces alike, mapped to one spelling.

    Rows: ሐ ኀ ኸ -> ሀ, ሠ -> ሰ, ዐ -> አ, ፀ -> ጸ, in every vowel order. The laryngeal rows say their 1st
    and 4th orders alike (ሀ = ሃ = ha, አ = ኣ = ʔa), so the 4th goes to the 1st: ሃ -> ሀ, ኣ -> አ, ዓ -> አ.
    The ሀ row has no labialised letter, so h-family labialised forms go to ሗ (hʷa, the usual spelling:
    ኋላ -> ሗላ) and the rest to the only complete h-labialised row, ኈ ኊ ኌ; the old labialised 6th
    orders are the plain 2nd order (ቍ kʼʷɨ = ቁ kʼu, ኵ -> ኩ, ጕ -> ጉ, ኍ -> ሁ).
    """
    pairs: dict[str, str] = {}
    ha, hha, xa, kxa = 0x1200, 0x1210, 0x1280, 0x12B8
    for src in (hha, xa, kxa):
        pairs.update(zip(_row(src)[:7], _row(ha)[:7]))
    pairs.update({"ኇ": "ሗ", "ኋ": "ሗ", "ዃ": "ሗ", "ዀ": "ኈ", "ዂ": "ኊ", "ዄ": "ኌ", "ዅ": "ኍ"})
    pairs.update(zip(_row(0x1220), _row(0x1230)))  # ሠ..ሧ -> ሰ..ሷ
    pairs.update(zip(_row(0x12D0)[:7], _row(0x12A0)[:7]))  # ዐ -> አ
    pairs.update(zip(_row(0x1340)[:7], _row(0x1338)[:7]))  # ፀ -> ጸ
    pairs["ፇ"] = "ጿ"
    pairs.update({"ሃ": "ሀ", "ኣ": "አ"})
    pairs.update({"ቍ": "ቁ", "ኵ": "ኩ", "ጕ": "ጉ", "ኍ": "ሁ"})
    # Follow chains (ዓ -> ኣ -> አ, ዅ -> ኍ -> ሁ) so that one pass merges fully: no target is a source.
    for source in pairs:
        while pairs[source] in pairs:
            pairs[source] = pairs[pairs[source]]
    return str.maketrans(pairs)


HOMOPHONES = MappingProxyType(_homophone_table())


def merge_homophones(text: str) -> str:
    """ሐ ኀ ኸ -> ሀ, ሠ -> ሰ, ዐ -> አ, ፀ -> ጸ in the same vowel order, ሃ -> ሀ, ኣ -> አ, ቍ -> ቁ ...:
    "ሠላሳ ዓመት" -> "ሰላሳ አመት"."""
    return text.translate(HOMOPHONES)


def map_punctuation(text: str) -> str:
    """Ethiopic punctuation to its Latin counterpart; each mark is followed by a space so that
    "ነው።ሰላም" keeps two words (the whitespace cleanup removes the extra ones)."""
    text = text.replace(_DOUBLE_WORDSPACE, ". ")
    return "".join(ETHIOPIC_PUNCTUATION[c] + " " if c in ETHIOPIC_PUNCTUATION else c for c in text)


def clean_whitespace(text: str) -> str:
    """Single spaces, none before . , ; : ? !, none at the ends; control and format characters removed."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text if unicodedata.category(c) != "Cf")
    text = _WHITESPACE.sub(" ", text)
    return _PUNCT_AFTER_SPACE.sub("", text).strip()


# ---------------------------------------------------------------------------------------- abbreviations


def _as_items(extra: Mapping[str, str] | str | os.PathLike | None) -> tuple[tuple[str, str], ...]:
    if extra is None:
        return ()
    if isinstance(extra, (str, os.PathLike)):
        extra = load_abbreviations(extra)
    if not isinstance(extra, Mapping):
        raise TypeError(f"extra_abbreviations must be a dict or a path to a TSV file, got {type(extra).__name__}")
    return tuple(sorted((unicodedata.normalize("NFC", k), unicodedata.normalize("NFC", v)) for k, v in extra.items()))


def _standard(text: str) -> str:
    return text


@functools.lru_cache(maxsize=8)
def _abbreviations(extra: tuple[tuple[str, str], ...], homophones: bool) -> Abbreviations:
    return Abbreviations(
        {**default_abbreviations(), **dict(extra)}, merge_homophones, merge_homophones if homophones else _standard
    )


def expand_abbreviations(
    text: str, extra_abbreviations: Mapping[str, str] | str | os.PathLike | None = None, *, homophones: bool = False
) -> str:
    """Expand the abbreviations of the shipped table (plus `extra_abbreviations`): "ዶ/ር" -> "ዶክተር".
    Keys are found as written or in merged spelling (ፅ/ቤት); with `homophones=True` expansions are
    written in merged spelling. See amh/text/abbreviations.py for how a token is read."""
    return _abbreviations(_as_items(extra_abbreviations), homophones).expand(text)


def unexpanded_abbreviations(
    text: str, extra_abbreviations: Mapping[str, str] | str | os.PathLike | None = None
) -> list[str]:
    """The words of `text` with a slash between Ethiopic letters that no abbreviation covers (ሰዶ/ር,
    ደ/ብ/ብ/ሕ/ክ/መ when it is not in the table). `normalize` reads their slash as a space; a corpus
    report counts them (python -m amh.text --report) so that they can be added to the table."""
    text = clean_whitespace(map_punctuation(unicodedata.normalize("NFC", text)))
    return _abbreviations(_as_items(extra_abbreviations), False).unexpanded(text)


# ---------------------------------------------------------------------------------------------- normalize


def normalize(
    text: str,
    *,
    homophones: bool = True,
    expand_numbers: bool = True,
    expand_abbreviations: bool = True,
    latin: str = "keep",
    lowercase_latin: bool = False,
    extra_abbreviations: Mapping[str, str] | str | os.PathLike | None = None,
) -> str:
    """Normalise Amharic text for TTS.

    Ethiopic punctuation -> Latin (። -> ".", ፣ -> ",", ፡ -> space ...), homophone letters merged
    (`homophones`), abbreviations expanded from abbreviations.tsv + `extra_abbreviations`, Ethiopic
    numerals and digits read out in words (`expand_numbers`), Latin letters kept as they are
    (`latin="keep"`, optionally lower-cased) or removed (`latin="drop"`), whitespace collapsed, NFC.
    """
    if latin not in LATIN_MODES:
        raise ValueError(f"latin={latin!r}: expected one of {', '.join(LATIN_MODES)}")
    text = unicodedata.normalize("NFC", text)
    text = map_punctuation(text)
    if latin == "drop":
        text = _LATIN.sub(" ", text)
    elif lowercase_latin:
        text = _LATIN.sub(lambda m: m.group().lower(), text)
    text = clean_whitespace(text)
    if expand_abbreviations:
        table = _abbreviations(_as_items(extra_abbreviations), homophones)
        text = table.expand(text)
        # A slash left at an Ethiopic letter is an abbreviation the table lacks (counted by --report):
        # the model must not learn "/" as a sound, so the parts are read as words. A part may be a
        # dotted abbreviation of its own (ሰዶ/ኪ.ሜ), expanded now so that a second pass finds nothing.
        text, slashes = _SLASH_AT_LETTER.subn(" ", text)
        if slashes:
            text = table.expand(text)
    if homophones:
        text = merge_homophones(text)
    if expand_numbers:
        text = numbers.expand_numbers(text)
        if homophones:
            text = merge_homophones(text)  # number words come in standard spelling (ሠላሳ -> ሰላሳ)
        if expand_abbreviations:
            text = _SLASH_AT_LETTER.sub(" ", text)  # a number read next to a slash (5/ሰው)
    return unicodedata.normalize("NFC", clean_whitespace(text))
