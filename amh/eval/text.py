"""Text as it is compared for CER/WER: the project's normaliser on both sides, then no punctuation.

A recogniser writes numbers as words or digits, may spell a homophone letter either way (ሀ/ሐ/ኀ) and
punctuates as it likes; none of that is an error of the TTS model. So the reference sentence and the
transcript both go through `amh.text.normalize` (homophones merged, numbers and abbreviations
expanded, Latin lower-cased) and then lose every punctuation mark and symbol, so that only the words
are scored.
"""
from __future__ import annotations

import re
import unicodedata

from amh.text import normalize

_SPACES = re.compile(r"\s+")


def scoring_text(text: str) -> str:
    """`"ዶ/ር አበበ 25 ብር ከፈሉ።"` -> `"ዶክተር አበበ ሃያ አምስት ብር ከፈሉ"`; idempotent."""
    text = normalize(text, homophones=True, expand_numbers=True, expand_abbreviations=True, latin="keep",
                     lowercase_latin=True)
    # Marks become spaces, not nothing: "ነው.ሰላም" is two words.
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return _SPACES.sub(" ", text).strip()
