"""Amharic text normalisation: punctuation, homophones, numbers, Ethiopic numerals, abbreviations."""
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
