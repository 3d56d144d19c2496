"""Amharic text, from what people write to what the model reads: normalisation and the front-end.

`normalize` (punctuation, homophones, abbreviations via `abbreviations`, numbers and Ethiopic
numerals via `numbers`), `g2p` (IPA phonemisation backends), `frontend` (`TextFrontend`: normalise,
then optionally phonemise, with frozen `FrontendSettings`); `python -m amh.text` shows and reports
what the front-end does to a text. Knows nothing of XTTS, data or training.
"""
from amh.text.normalize import (
    default_abbreviations,
    expand_abbreviations,
    load_abbreviations,
    merge_homophones,
    normalize,
    unexpanded_abbreviations,
)
from amh.text.numbers import (
    digits_to_words,
    ethiopic_numeral_to_int,
    expand_numbers,
    number_to_words,
    ordinal_to_words,
    year_to_words,
)

__all__ = [
    "default_abbreviations",
    "digits_to_words",
    "ethiopic_numeral_to_int",
    "expand_abbreviations",
    "expand_numbers",
    "load_abbreviations",
    "merge_homophones",
    "normalize",
    "number_to_words",
    "ordinal_to_words",
    "unexpanded_abbreviations",
    "year_to_words",
]
