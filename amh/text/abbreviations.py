"""Amharic abbreviations: the table (abbreviations.tsv) and their expansion in text, one token at a time.

A token is a run of Ethiopic letters joined by "/" or "." (ዶ/ር, ጠ/ሚ/ር, የፌ/ጠ/ፍ/ቤት, ዓ.ም). A token is read
as, left to right: an optional proclitic (የ, በ, ከ, ለ, እንደ ...), then keys of the table that end at a
mark or at the end of the token (ጠ/ሚ + ጽ/ቤት), the last of which may be followed by
- the rest of its own last word, when the text spells it out: ክ/ከተማ, ሊ/መንበር, አ/አበባ (the key's last
  segment is the start of the expansion's last word, so the expansion is written once: ክፍለ ከተማ);
- a suffix: ዶ/ርን, ት/ቤቶች; a suffix vowel fused with a final 6th-order letter (ት/ቤቱ, ሚ/ሩ) moves the
  expansion's last letter to the same order (ትምህርት ቤቱ, ሚኒስትሩ).
A key ending in "/" is a prefix (ም/ -> ምክትል, ገ/ -> ገብረ) and is followed by a word or another key:
ም/ጠ/ሚ -> ምክትል ጠቅላይ ሚኒስትር. A token is expanded whole or not at all: `unexpanded(text)` lists
the ones the table does not cover, so that a corpus report can count them.

Keys are looked up as written, then with homophone letters merged (ፅ/ቤት finds ጽ/ቤት), except where two
keys merge to one spelling with different expansions (አ.አ Addis Ababa, ዓ.ዓ ዓመተ ዓለም): those match only
as written.
"""
from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType

ETHIOPIC_LETTER = "\u1200-\u135a\u1380-\u138f\u2d80-\u2ddf\uab00-\uab2f"
MARKS = "./"
# Proclitics written attached to the word after them, longest first: የጠ/ሚ, በት/ቤቱ, እንደዶ/ር.
PROCLITICS = ("እንደ", "ስለ", "እነ", "ከነ", "የነ", "በ", "ከ", "ለ", "የ")
TOKEN = re.compile(f"(?<![{ETHIOPIC_LETTER}])(?<![{ETHIOPIC_LETTER}][{MARKS}])[{ETHIOPIC_LETTER}]+(?:[{MARKS}][{ETHIOPIC_LETTER}]+)+")
_KEY = re.compile(f"[{ETHIOPIC_LETTER}]+(?:[{MARKS}][{ETHIOPIC_LETTER}]+)*/?")
_SLASH_BETWEEN_LETTERS = re.compile(f"[{ETHIOPIC_LETTER}]/|/[{ETHIOPIC_LETTER}]")
_FUSED_ORDERS = (1, 3, 6)  # u, a, o: the suffix vowels that fuse with a final 6th-order letter


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
        key = unicodedata.normalize("NFC", fields[0].strip())
        if key in table:
            raise ValueError(f"{path}:{number}: {key!r} is already defined above; keep one of the two lines")
        table[key] = unicodedata.normalize("NFC", fields[1].strip())
    return table


@functools.lru_cache(maxsize=1)
def default_abbreviations() -> Mapping[str, str]:
    """The table shipped with the package (amh/text/abbreviations.tsv), read-only."""
    with resources.as_file(resources.files("amh.text") / "abbreviations.tsv") as path:
        return MappingProxyType(load_abbreviations(path))


def _order(ch: str) -> int | None:
    """The vowel order (0 = ə ... 5 = ɨ/none, 6 = o) of a letter of the main block's 7-order rows."""
    cp = ord(ch)
    return (cp - 0x1200) % 8 if 0x1200 <= cp < 0x1358 and (cp - 0x1200) % 8 < 7 else None


def _with_order(ch: str, order: int) -> str:
    return chr(ord(ch) - _order(ch) + order)


class Abbreviations:
    """One compiled table. `expand(text)` expands every token it covers; `unexpanded(text)` lists the
    tokens with a slash between letters that it does not."""

    def __init__(self, table: Mapping[str, str], merge: Callable[[str], str], write: Callable[[str], str]):
        """`merge` is the homophone merging used for the second lookup; `write` turns an expansion into
        the output spelling (merged or standard)."""
        for key, expansion in table.items():
            if not set(MARKS).intersection(key) or set(MARKS).intersection(expansion):
                raise ValueError(
                    f"abbreviation {key!r} -> {expansion!r}: a key must contain '.' or '/' (ዶ/ር, ዓ.ም) "
                    "and its expansion neither"
                )
            if not _KEY.fullmatch(key):
                raise ValueError(
                    f"abbreviation {key!r}: a key is Ethiopic letters joined by '/' or '.' (ዶ/ር, ዓ.ም), "
                    "or a prefix ending in '/' (ገ/)"
                )
        self.exact = {k: write(v) for k, v in table.items()}
        # Where keys merge to one spelling with different expansions, the key written in merged spelling
        # wins (አ.አ over ዓ.ዓ); without one, the merged spelling matches nothing. This keeps normalize
        # idempotent: whatever a merged token matches, its unmerged spelling matched already.
        merged: dict[str, set[str]] = {}
        for k, v in table.items():
            merged.setdefault(merge(k), set()).add(self.exact[k])
        self.merged = {
            k: self.exact[k] if k in self.exact else next(iter(v))
            for k, v in merged.items()
            if k in self.exact or len(v) == 1
        }
        self.merge = merge
        self.lengths = sorted({len(k) for k in table}, reverse=True)

    # ------------------------------------------------------------------------------------- lookup

    def _lookup(self, candidate: str) -> str | None:
        found = self.exact.get(candidate)
        return found if found is not None else self.merged.get(self.merge(candidate))

    def _keys_at(self, s: str, p: int):
        """(end, key, expansion, fused order or None) of each key that starts at s[p], longest first. A
        fused key is written with its last 6th-order letter in order u/a/o (ት/ቤቱ for ት/ቤት)."""
        for length in self.lengths:
            candidate = s[p : p + length]
            if len(candidate) < length:
                continue
            expansion = self._lookup(candidate)
            if expansion is not None:
                yield p + length, candidate, expansion, None
            order = _order(candidate[-1])
            # Only slash keys fuse (ት/ቤቱ, ሚ/ሩ); a dotted key's look-alike is another word (አ.ማ is not ዓ.ም).
            if order in _FUSED_ORDERS and "/" in candidate:
                base = candidate[:-1] + _with_order(candidate[-1], 5)
                expansion = self._lookup(base)
                if expansion is not None and _order(expansion[-1]) == 5:
                    yield p + length, base, expansion, order

    def _parse(self, s: str, p: int) -> str | None:
        """The expansion of s[p:] as keys (see the module doc), or None if it is not one."""
        for end, key, expansion, fused in self._keys_at(s, p):
            if key.endswith("/"):  # a prefix: a word or another key follows
                rest = self._parse(s, end) if set(MARKS).intersection(s[end:]) else s[end:]
                if rest:
                    return expansion + " " + rest
                continue
            if fused is not None:  # ት/ቤቱ, ት/ቤቶች: the suffix follows the fused letter
                if set(MARKS).intersection(s[end:]):
                    continue
                return expansion[:-1] + _with_order(expansion[-1], fused) + s[end:]
            if end == len(s):
                return expansion
            if s[end] in MARKS:  # another key follows: ጠ/ሚ/ጽ/ቤት
                rest = self._parse(s, end + 1)
                if rest is not None:
                    return expansion + " " + rest
                continue
            tail = s[end:]
            if set(MARKS).intersection(tail):
                continue
            # The text may spell out the expansion's last word after the key's last segment (ክ/ከተማ),
            # in either homophone spelling (ዋ/ሥ/አስፈፃሚ); compared letter by letter in merged spelling.
            segment, word = re.split("[./]", key)[-1], self.merge(expansion.split(" ")[-1])
            written = segment + tail
            merged = self.merge(written)
            n = len(word)
            if word.startswith(self.merge(segment)) and len(written) >= n and merged[: n - 1] == word[:-1]:
                last = merged[n - 1]
                if last == word[-1]:
                    return expansion + written[n:]
                if _order(word[-1]) == 5 and _order(last) in _FUSED_ORDERS and _with_order(last, 5) == word[-1]:
                    return expansion[:-1] + _with_order(expansion[-1], _order(last)) + written[n:]  # ጠ/ሚኒስትሩ
            return expansion + tail  # a suffix: ዶ/ርን, ወ/ሮዋ
        return None

    def expand_token(self, token: str) -> str | None:
        """The expansion of one token, or None when the table does not cover all of it."""
        found = self._parse(token, 0)
        if found is not None:
            return found
        for proclitic in PROCLITICS:
            if token.startswith(proclitic) and len(token) > len(proclitic):
                found = self._parse(token, len(proclitic))
                if found is not None:
                    return proclitic + found
        return None

    def expand(self, text: str) -> str:
        if not self.exact:
            return text
        return TOKEN.sub(lambda m: self.expand_token(m.group()) or m.group(), text)

    def unexpanded(self, text: str) -> list[str]:
        """The tokens with a slash between Ethiopic letters that `expand` leaves as they are."""
        return [
            m.group()
            for m in TOKEN.finditer(text)
            if "/" in m.group() and self.expand_token(m.group()) is None
        ]


def has_slash_between_letters(text: str) -> bool:
    return bool(_SLASH_BETWEEN_LETTERS.search(text))
