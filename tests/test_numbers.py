"""Amharic number words and Ethiopic numerals (amh/text/numbers.py)."""
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amh.text import (
    digits_to_words,
    ethiopic_numeral_to_int,
    number_to_words,
    ordinal_to_words,
    year_to_words,
)
from amh.text.numbers import ETHIOPIC_NUMERAL_CHARS, MAX_NUMBER, ONES, TENS

CARDINALS = {
    0: "ዜሮ",
    7: "ሰባት",
    10: "አሥር",
    11: "አሥራ አንድ",
    19: "አሥራ ዘጠኝ",
    20: "ሃያ",
    21: "ሃያ አንድ",
    30: "ሠላሳ",
    45: "አርባ አምስት",
    60: "ስልሳ",
    99: "ዘጠና ዘጠኝ",
    100: "መቶ",
    101: "መቶ አንድ",
    110: "መቶ አሥር",
    200: "ሁለት መቶ",
    999: "ዘጠኝ መቶ ዘጠና ዘጠኝ",
    1000: "አንድ ሺህ",
    1987: "አንድ ሺህ ዘጠኝ መቶ ሰማንያ ሰባት",
    2016: "ሁለት ሺህ አሥራ ስድስት",
    10_000: "አሥር ሺህ",
    100_000: "መቶ ሺህ",
    1_000_000: "አንድ ሚሊዮን",
    2_500_000: "ሁለት ሚሊዮን አምስት መቶ ሺህ",
    1_000_000_000: "አንድ ቢሊዮን",
    123_456_789_012: "መቶ ሃያ ሦስት ቢሊዮን አራት መቶ ሃምሳ ስድስት ሚሊዮን ሰባት መቶ ሰማንያ ዘጠኝ ሺህ አሥራ ሁለት",
    MAX_NUMBER: "ዘጠኝ መቶ ዘጠና ዘጠኝ ቢሊዮን ዘጠኝ መቶ ዘጠና ዘጠኝ ሚሊዮን ዘጠኝ መቶ ዘጠና ዘጠኝ ሺህ ዘጠኝ መቶ ዘጠና ዘጠኝ",
}


@pytest.mark.parametrize("n, words", CARDINALS.items())
def test_cardinals(n, words):
    assert number_to_words(n) == words


ORDINALS = {
    1: "አንደኛ",
    2: "ሁለተኛ",
    3: "ሦስተኛ",
    4: "አራተኛ",
    5: "አምስተኛ",
    6: "ስድስተኛ",
    7: "ሰባተኛ",
    8: "ስምንተኛ",
    9: "ዘጠነኛ",
    10: "አሥረኛ",
    11: "አሥራ አንደኛ",
    13: "አሥራ ሦስተኛ",
    20: "ሃያኛ",
    100: "መቶኛ",
    1000: "አንድ ሺኛ",
    1_000_000: "አንድ ሚሊዮነኛ",
}


@pytest.mark.parametrize("n, words", ORDINALS.items())
def test_ordinals(n, words):
    assert ordinal_to_words(n) == words


def test_years_read_in_hundreds_like_their_ethiopic_numerals():
    assert year_to_words(1987) == "አሥራ ዘጠኝ መቶ ሰማንያ ሰባት"
    assert year_to_words(1900) == "አሥራ ዘጠኝ መቶ"
    assert year_to_words(2016) == "ሁለት ሺህ አሥራ ስድስት"
    assert year_to_words(1000) == "አንድ ሺህ"


def test_digit_by_digit():
    assert digits_to_words("0911") == "ዜሮ ዘጠኝ አንድ አንድ"
    with pytest.raises(ValueError, match="ASCII digits"):
        digits_to_words("١٢")


@pytest.mark.parametrize("bad", [-1, MAX_NUMBER + 1])
def test_out_of_range_names_the_limit(bad):
    with pytest.raises(ValueError, match="999,999,999,999"):
        number_to_words(bad)


@pytest.mark.parametrize("bad", [True, 1.5, "7"])
def test_non_int_is_a_type_error(bad):
    with pytest.raises(TypeError):
        number_to_words(bad)


LEXICON = set(ONES) | set(TENS[1:]) | {"አሥራ", "መቶ", "ሺህ", "ሚሊዮን", "ቢሊዮን"}


@given(st.integers(0, MAX_NUMBER))
@settings(max_examples=300, deadline=None)
def test_every_word_is_a_number_word(n):
    words = number_to_words(n).split(" ")
    assert set(words) <= LEXICON
    assert ordinal_to_words(n).split(" ")[:-1] == words[:-1]


ETHIOPIC = {
    "፩": 1,
    "፱": 9,
    "፲": 10,
    "፲፱": 19,
    "፺፱": 99,
    "፻": 100,
    "፻፩": 101,
    "፪፻": 200,
    "፲፻": 1000,
    "፲፱፻፹፯": 1987,
    "፳፻፲፮": 2016,
    "፼": 10_000,
    "፻፼": 1_000_000,
    "፺፱፻፺፱፼፺፱፻፺፱": 99_999_999,
    "፼፼": 100_000_000,
    "፼፻": 10_100,
}


@pytest.mark.parametrize("numeral, value", ETHIOPIC.items())
def test_ethiopic_numerals(numeral, value):
    assert ethiopic_numeral_to_int(numeral) == value


@pytest.mark.parametrize(
    "numeral, message",
    [
        ("፲a", r"'a' \(U\+0061\) at position 1 is not an Ethiopic numeral"),
        ("፩፩", "'፩' at position 1 is out of place"),
        ("፱፲", "'፲' at position 1 is out of place"),
        ("፻፻", "'፻' at position 1 is out of place"),
        ("", "non-empty"),
    ],
)
def test_invalid_ethiopic_numerals_name_the_character(numeral, message):
    with pytest.raises(ValueError, match=message):
        ethiopic_numeral_to_int(numeral)


def _to_ethiopic(n: int) -> str:
    """How Ethiopic numerals write n: myriad groups joined by ፼, hundreds marked by ፻, no zero."""

    def pair(v: int) -> str:
        tens, unit = divmod(v, 10)
        return (chr(0x1371 + tens) if tens else "") + (chr(0x1368 + unit) if unit else "")

    def group(g: int) -> str:
        hundreds, rest = divmod(g, 100)
        return (pair(hundreds) if hundreds > 1 else "") + ("፻" if hundreds else "") + pair(rest)

    groups = []
    while n:
        n, g = divmod(n, 10_000)
        groups.append(g)
    return "፼".join(group(g) for g in reversed(groups))


@given(st.integers(1, MAX_NUMBER))
@settings(max_examples=500, deadline=None)
def test_ethiopic_numerals_round_trip(n):
    assert ethiopic_numeral_to_int(_to_ethiopic(n)) == n


def _canonical_ethiopic(n: int) -> str:
    """The reference writing of n: Daniel Yacob's algorithm (geez.org; ICU's %ethiopic and abyssinica
    write the same), two digits at a time, ፻ after the odd pairs, ፼ after the even ones, a lone ፩
    left out before a marker."""
    digits = str(n)
    digits = "0" * (len(digits) % 2) + digits
    pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
    out = []
    for k, pair in enumerate(pairs):
        place = len(pairs) - 1 - k  # pairs after this one
        tens, unit = int(pair[0]), int(pair[1])
        marker = "" if place == 0 else "፼" if place % 2 == 0 else ("፻" if tens or unit else "")
        if not (tens == 0 and unit == 1 and len(digits) > 2 and (marker == "፻" or k == 0)):
            out.append((chr(0x1371 + tens) if tens else "") + (chr(0x1368 + unit) if unit else ""))
        out.append(marker)
    return "".join(out)


def _without_explicit_one(numeral: str) -> str:
    return re.sub("(?<![፲-፺])፩(?=[፻፼])", "", numeral)


def test_every_accepted_numeral_is_the_reference_writing_of_its_value():
    # All 8,420 strings of up to three numerals: each one accepted is written as the reference writes
    # its value (up to an explicit ፩ before ፻/፼), so no ill-ordered sequence is given a value.
    symbols = list(ETHIOPIC_NUMERAL_CHARS)
    accepted = 0
    for length in (1, 2, 3):
        for chars in itertools.product(symbols, repeat=length):
            numeral = "".join(chars)
            try:
                value = ethiopic_numeral_to_int(numeral)
            except ValueError:
                continue
            accepted += 1
            assert _without_explicit_one(numeral) == _without_explicit_one(_canonical_ethiopic(value)), numeral
    assert accepted > 500


@pytest.mark.parametrize(
    "numeral, message",
    [
        ("፻፲፻", "'፻' at position 2 is out of place"),  # two hundreds in one myriad group (abyssinica: 11000)
        ("፭፲", "'፲' at position 1 is out of place"),  # unit before tens
        ("፲፻፳፻፼", "'፻' at position 3 is out of place"),
        ("፲፲፼", "'፲' at position 1 is out of place"),
        ("፼፭፲", "'፲' at position 2 is out of place"),  # inside the group after ፼
    ],
)
def test_ill_ordered_groups_are_refused(numeral, message):
    with pytest.raises(ValueError, match=message):
        ethiopic_numeral_to_int(numeral)


@pytest.mark.parametrize("numeral, value", [("፼፻", 10_100), ("፻፼", 1_000_000), ("፭፼፻", 50_100), ("፭፻፼", 5_000_000)])
def test_myriad_then_hundred_is_the_reference_reading(numeral, value):
    # ፼ ends a myriad group and ፻ starts the next one: ፼፻ is how the reference writes 10,100, and
    # 1,000,000 is ፻፼ (the hundred of the group before ፼), never ፼፻.
    assert ethiopic_numeral_to_int(numeral) == value
    assert _canonical_ethiopic(value) == numeral
