"""The Amharic text front-end: `TextFrontend(settings)(text)` normalises, then optionally phonemises.

Training, vocabulary extension and inference must see text through the same front-end, so its settings
are one frozen, serialisable object (`FrontendSettings.to_dict()` is what an export stores).
"""
from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

from amh.text import g2p
from amh.text import normalize
from amh.text.normalize import LATIN_MODES, load_abbreviations

LANGUAGE = "am"
LANGUAGE_ALIASES = frozenset({"am", "amh"})


def canonical_language(code: str) -> str:
    """"am", "amh", "AM", "am-ET", "amh_Ethi" -> "am"; any other code is returned unchanged."""
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"expected a language code such as 'am', got {code!r}")
    base = code.strip().replace("_", "-").split("-")[0].lower()
    return LANGUAGE if base in LANGUAGE_ALIASES else code


@dataclass(frozen=True)
class FrontendSettings:
    """How Amharic text is prepared for the tokenizer.

    language            canonical code "am" ("amh" is accepted and stored as "am")
    homophones          merge letters Amharic pronounces alike (ሐ ኀ ኸ -> ሀ, ሠ -> ሰ, ዐ -> አ, ፀ -> ጸ,
                        ሃ -> ሀ, ኣ -> አ, ቍ -> ቁ: docs/text.md)
    g2p                 None keeps Ethiopic script; a backend name of amh.text.g2p.BACKENDS writes IPA
    expand_numbers      read digits and Ethiopic numerals out in words
    expand_abbreviations expand ዶ/ር, ት/ቤት, ዓ.ም ... (amh/text/abbreviations.tsv + extra_abbreviations)
    latin               "keep" Latin letters (XTTS's vocab has them) or "drop" them
    lowercase_latin     lower-case kept Latin letters (XTTS's vocab is lower-case)
    extra_abbreviations your own abbreviations, given as a dict or a TSV path and stored as (key, value)
                        pairs, so that an export carries them
    """

    language: str = LANGUAGE
    homophones: bool = True
    g2p: str | None = None
    expand_numbers: bool = True
    expand_abbreviations: bool = True
    latin: str = "keep"
    lowercase_latin: bool = True
    extra_abbreviations: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if canonical_language(self.language) != LANGUAGE:
            raise ValueError(f"language={self.language!r}: this front-end is for Amharic, use 'am' (or 'amh')")
        object.__setattr__(self, "language", LANGUAGE)
        for name in ("homophones", "expand_numbers", "expand_abbreviations", "lowercase_latin"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected true or false")
        if self.g2p is not None and self.g2p not in g2p.BACKENDS:
            raise ValueError(f"g2p={self.g2p!r}: expected None (Ethiopic script) or one of {', '.join(g2p.BACKENDS)}")
        if self.latin not in LATIN_MODES:
            raise ValueError(f"latin={self.latin!r}: expected one of {', '.join(LATIN_MODES)}")
        object.__setattr__(self, "extra_abbreviations", _abbreviation_pairs(self.extra_abbreviations))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["extra_abbreviations"] = dict(self.extra_abbreviations)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> FrontendSettings:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown front-end setting(s) {unknown}; valid keys are {', '.join(valid)}")
        return cls(**d)


def _abbreviation_pairs(extra) -> tuple[tuple[str, str], ...]:
    if isinstance(extra, (str, os.PathLike)):
        extra = load_abbreviations(extra)
    items = extra.items() if isinstance(extra, Mapping) else extra
    try:
        pairs = {unicodedata.normalize("NFC", k): unicodedata.normalize("NFC", v) for k, v in items}
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"extra_abbreviations: expected a dict, (key, value) pairs or a TSV path, got {extra!r}"
        ) from e
    return tuple(sorted(pairs.items()))


class TextFrontend:
    """normalise (amh.text.normalize), then G2P (amh.text.g2p) when `settings.g2p` is set."""

    def __init__(self, settings: FrontendSettings = FrontendSettings()):
        self.settings = settings

    def normalize(self, text: str) -> str:
        s = self.settings
        return normalize(
            text,
            homophones=s.homophones,
            expand_numbers=s.expand_numbers,
            expand_abbreviations=s.expand_abbreviations,
            latin=s.latin,
            lowercase_latin=s.lowercase_latin,
            extra_abbreviations=dict(s.extra_abbreviations),
        )

    def __call__(self, text: str) -> str:
        text = self.normalize(text)
        return g2p.phonemize(text, self.settings.g2p) if self.settings.g2p else text

    def batch(self, texts: Sequence[str]) -> list[str]:
        """Many texts at once; G2P backends that run a program (espeak) run it once for the batch."""
        normalised = [self.normalize(t) for t in texts]
        return g2p.phonemize_batch(normalised, self.settings.g2p) if self.settings.g2p else normalised

    def __repr__(self) -> str:
        return f"TextFrontend({self.settings!r})"
