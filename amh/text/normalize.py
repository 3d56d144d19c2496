"""Amharic text normalisation: Ethiopic punctuation, homophone letters, abbreviations, numbers, Latin.

`normalize(text)` is deterministic and idempotent (normalize(normalize(x)) == normalize(x)) and returns
NFC text with single spaces. The order of the steps matters for idempotence: everything that can join
characters (punctuation mapping, whitespace cleanup, Latin removal, homophone merging) runs before the
steps that look for patterns (abbreviations, numbers), and those leave no digits or keys behind.
"""
from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from amh.text import numbers

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


def _row(base: int) -> list[str]:
    return [chr(base + i) for i in range(8)]


def _homophone_table() -> dict[int, str]:
    """Letters that Amharic pronounces alike, mapped to one spelling in every vowel order.

    ሐ ኀ ኸ -> ሀ, ሠ -> ሰ, ዐ -> አ, ፀ -> ጸ. The ሀ row has no labialised letter, so h-family labialised
    forms go to ሗ (hʷa, the usual spelling: ኋላ -> ሗላ) and the rest to the only complete h-labialised
    row, ኈ ኊ ኌ ኍ.
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
    return str.maketrans(pairs)


HOMOPHONES = MappingProxyType(_homophone_table())


def merge_homophones(text: str) -> str:
    """ሐ ኀ ኸ -> ሀ, ሠ -> ሰ, ዐ -> አ, ፀ -> ጸ in the same vowel order: "ሠላሳ ዓመት" -> "ሰላሳ ኣመት"."""
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


def load_abbreviations(path: str | os.PathLike) -> dict[str, str]:
    """Read an abbreviation table: one `abbreviation<TAB>expansion` per line, "#" comments."""
    path = Path(path)
    table: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise ValueError(f"{path}:{number}: expected 'abbreviation<TAB>expansion', got {line!r}")
        table[unicodedata.normalize("NFC", fields[0].strip())] = unicodedata.normalize("NFC", fields[1].strip())
    return table


@functools.lru_cache(maxsize=1)
def default_abbreviations() -> Mapping[str, str]:
    """The table shipped with the package (amh/text/abbreviations.tsv), read-only."""
    with resources.as_file(resources.files("amh.text") / "abbreviations.tsv") as path:
        return MappingProxyType(load_abbreviations(path))


def _as_items(extra: Mapping[str, str] | str | os.PathLike | None) -> tuple[tuple[str, str], ...]:
    if extra is None:
        return ()
    if isinstance(extra, (str, os.PathLike)):
        extra = load_abbreviations(extra)
    if not isinstance(extra, Mapping):
        raise TypeError(f"extra_abbreviations must be a dict or a path to a TSV file, got {type(extra).__name__}")
    return tuple(sorted((unicodedata.normalize("NFC", k), unicodedata.normalize("NFC", v)) for k, v in extra.items()))


_MARKS = frozenset("./")


def _sixth_order(ch: str) -> bool:
    cp = ord(ch)
    return 0x1200 <= cp < 0x1358 and (cp - 0x1200) % 8 == 5


def _key_pattern(key: str) -> str:
    """A key's regex. A final 6th-order letter may also appear in the 2nd, 4th or 7th order, where a
    suffix vowel fused with it (ት/ቤቱ, ት/ቤታችን, ት/ቤቶች); the other orders would catch names (ወ/ተክሌ)."""
    if not _sixth_order(key[-1]):
        return re.escape(key)
    base = ord(key[-1]) - 5
    return re.escape(key[:-1]) + "[" + "".join(chr(base + col) for col in (1, 3, 5, 6)) + "]"


class _Abbreviations:
    """One compiled table: a regex of all keys (longest first) and the expansion of each key."""

    def __init__(self, table: Mapping[str, str]):
        for key, expansion in table.items():
            # Each expansion removes a "." or "/", so expanding until nothing changes terminates, and a
            # key without one would also match inside longer words (keys may take suffixes).
            if not _MARKS.intersection(key) or _MARKS.intersection(expansion):
                raise ValueError(
                    f"abbreviation {key!r} -> {expansion!r}: a key must contain '.' or '/' (ዶ/ር, ዓ.ም) "
                    "and its expansion neither"
                )
        self.whole = {k: v for k, v in table.items() if not k.endswith("/")}
        self.prefix = {k: v for k, v in table.items() if k.endswith("/")}
        keys = sorted(table, key=len, reverse=True)
        alternatives = "|".join(_key_pattern(k) for k in keys)
        # An abbreviation starts a word, or follows a one-letter proclitic that starts one (የጠ/ሚ).
        self.regex = re.compile(
            f"(?<![{_LETTER}])(?P<pre>[{''.join(numbers.PROCLITICS)}])?"
            f"(?P<key>{alternatives})(?P<rest>[{_ETHIOPIC_LETTER}]*)"
        )

    def _expand(self, m: re.Match) -> str:
        pre, key, rest = m.group("pre") or "", m.group("key"), m.group("rest")
        if key in self.prefix:
            return pre + self.prefix[key] + " " + rest if rest else m.group()
        if key in self.whole:
            return pre + self.whole[key] + rest
        # A fused suffix vowel (ት/ቤቱ): expand the 6th-order key, then move the expansion's last letter
        # to the order the text used (ትምህርት ቤት -> ትምህርት ቤቱ).
        order = (ord(key[-1]) - 0x1200) % 8
        expansion = self.whole[key[:-1] + chr(ord(key[-1]) - order + 5)]
        if not _sixth_order(expansion[-1]):
            return m.group()
        return pre + expansion[:-1] + chr(ord(expansion[-1]) - 5 + order) + rest

    def __call__(self, text: str) -> str:
        if not self.whole and not self.prefix:
            return text
        # Until nothing changes: a name prefix's space can start a new abbreviation (ተ/ሆ/ሉ).
        while (expanded := self.regex.sub(self._expand, text)) != text:
            text = expanded
        return text


@functools.lru_cache(maxsize=8)
def _abbreviations(extra: tuple[tuple[str, str], ...], homophones: bool) -> _Abbreviations:
    table = {**default_abbreviations(), **dict(extra)}
    if homophones:
        table = {merge_homophones(k): merge_homophones(v) for k, v in table.items()}
    return _Abbreviations(table)


def expand_abbreviations(
    text: str, extra_abbreviations: Mapping[str, str] | str | os.PathLike | None = None, *, homophones: bool = False
) -> str:
    """Expand the abbreviations of the shipped table (plus `extra_abbreviations`): "ዶ/ር" -> "ዶክተር".
    With `homophones=True` keys and expansions are matched and written in merged spelling."""
    return _abbreviations(_as_items(extra_abbreviations), homophones)(text)


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
    if homophones:
        text = merge_homophones(text)
    if latin == "drop":
        text = _LATIN.sub(" ", text)
    elif lowercase_latin:
        text = _LATIN.sub(lambda m: m.group().lower(), text)
    text = clean_whitespace(text)
    if expand_abbreviations:
        text = _abbreviations(_as_items(extra_abbreviations), homophones)(text)
    if expand_numbers:
        text = numbers.expand_numbers(text)
        if homophones:
            text = merge_homophones(text)  # number words come in standard spelling (ሠላሳ -> ሰላሳ)
    return unicodedata.normalize("NFC", clean_whitespace(text))
