"""How numbers in running text are read (amh/text/numbers.py expand_numbers, through normalize): long
digit runs, times, dates, fractions, negatives, ranges, suffixes, currencies, phone numbers."""
import re

import pytest

from amh.text import normalize
from amh.text.numbers import expand_numbers


def std(text: str) -> str:
    return normalize(text, homophones=False)


def no_marks_left(out: str) -> bool:
    return not re.search(r"[0-9]|(?<=\w)[/\-]|[/\-](?=\w)", out)


# ------------------------------------------------------------------------------- long digit runs


@pytest.mark.parametrize("n", [13, 4301, 5000, 20_000])
def test_long_digit_runs_are_read_digit_by_digit(n):
    out = std("7" * n)
    assert out == " ".join(["ሰባት"] * n)


def test_long_runs_in_every_number_context_never_raise():
    run = "9" * 4400
    for text in (run + "ኛ", run + " ብር", "$" + run, run + ".5 ብር", run + "%", "0." + run, run + "ዎቹ"):
        out = std(text)
        assert out.count("ዘጠኝ") >= 4400 and no_marks_left(out), text[-8:]


def test_huge_ethiopic_numerals_are_read_numeral_by_numeral():
    assert std("፼" * 1200) == " ".join(["አሥር ሺህ"] * 1200)
    assert std("፲፱፻፹፯") == "አንድ ሺህ ዘጠኝ መቶ ሰማንያ ሰባት"  # a valid one is still a number


# ----------------------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    "text, expected",
    [
        ("በ3:30 ሰዓት", "በሦስት ሰዓት ተኩል"),
        ("ከቀኑ 8:00 ሰዓት ላይ", "ከቀኑ ስምንት ሰዓት ላይ"),
        ("2:15 ሰዓት", "ሁለት ሰዓት ከአሥራ አምስት ደቂቃ"),
        ("3:30", "ሦስት ሰዓት ተኩል"),
        ("ከ2:00-4:00 ሰዓት", "ከሁለት ሰዓት እስከ አራት ሰዓት"),
        ("3:30 ሰዓቱ", "ሦስት ሰዓት ተኩል ሰዓቱ"),  # another word, not the hour word
    ],
)
def test_times_say_the_hour_word_once(text, expected):
    assert std(text) == expected


def test_time_hour_word_in_merged_spelling():
    assert normalize("በ3:30 ሰዓት") == "በሶስት ሰአት ተኩል"


# ----------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12/05/2016 ዓ.ም", "ጥር አሥራ ሁለት ቀን ሁለት ሺህ አሥራ ስድስት ዓመተ ምሕረት"),
        ("በ01/01/2016", "በመስከረም አንድ ቀን ሁለት ሺህ አሥራ ስድስት"),  # leading zeros
        ("12.05.2016", "ጥር አሥራ ሁለት ቀን ሁለት ሺህ አሥራ ስድስት"),
        ("3/13/2015", "ጳጉሜን ሦስት ቀን ሁለት ሺህ አሥራ አምስት"),
        ("እ.ኤ.አ 25/12/2023", "እንደ ኤውሮፓውያን አቆጣጠር ዲሴምበር ሃያ አምስት ቀን ሁለት ሺህ ሃያ ሦስት"),
        ("2024-05-12", "ሜይ አሥራ ሁለት ቀን ሁለት ሺህ ሃያ አራት"),
        ("12/05/1987", "ጥር አሥራ ሁለት ቀን አሥራ ዘጠኝ መቶ ሰማንያ ሰባት"),
        ("45/20/2016", "አርባ አምስት ሃያ ሁለት ሺህ አሥራ ስድስት"),  # not a date: three numbers
    ],
)
def test_dates(text, expected):
    assert std(text) == expected


# ------------------------------------------------------------------- fractions, negatives, ranges


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1/2", "ግማሽ"),
        ("1/4 ኪሎ", "ሩብ ኪሎ"),
        ("3/4", "ሦስት አራተኛ"),
        ("2/3 የሚሆኑት", "ሁለት ሦስተኛ የሚሆኑት"),
        ("1/10", "አንድ አሥረኛ"),
        ("24/7", "ሃያ አራት ሰባት"),
        ("-5 ዲግሪ", "ሲቀነስ አምስት ዲግሪ"),
        ("ወደ −2.5", "ወደ ሲቀነስ ሁለት ነጥብ አምስት"),
        ("(-3)", "(ሲቀነስ ሦስት)"),
        ("ከ-5 እስከ 30", "ከሲቀነስ አምስት እስከ ሠላሳ"),
        ("3-4 ቀናት", "ከሦስት እስከ አራት ቀናት"),
        ("ከ10-15 ቀናት", "ከአሥር እስከ አሥራ አምስት ቀናት"),
        ("በ3 - 4 ሰዓት", "በሦስት እስከ አራት ሰዓት"),
        ("20-30%", "ከሃያ እስከ ሠላሳ በመቶ"),
        ("ከ1990-1995", "ከአንድ ሺህ ዘጠኝ መቶ ዘጠና እስከ አንድ ሺህ ዘጠኝ መቶ ዘጠና አምስት"),
        ("COVID-19", "COVID አሥራ ዘጠኝ"),
    ],
)
def test_fractions_negatives_ranges(text, expected):
    assert std(text) == expected


# ---------------------------------------------------------------------------- suffixes, currency


@pytest.mark.parametrize(
    "text, expected",
    [
        ("በ1950ዎቹ", "በአሥራ ዘጠኝ መቶ ሃምሳዎቹ"),
        ("1990ዎቹ", "አሥራ ዘጠኝ መቶ ዘጠናዎቹ"),
        ("2ቱ ልጆች", "ሁለቱ ልጆች"),
        ("10ሩ", "አሥሩ"),
        ("100ዎቹ", "መቶዎቹ"),
        ("5ና 6", "አምስትና ስድስት"),
        ("5ሰዎች", "አምስት ሰዎች"),  # a new word, not a suffix
        ("5ኛው", "አምስተኛው"),
        ("100 ETB", "መቶ ብር"),
        ("ETB 5,750", "አምስት ሺህ ሰባት መቶ ሃምሳ ብር"),
        ("1 USD = 57.50 ETB", "አንድ ዶላር = ሃምሳ ሰባት ብር ከሃምሳ ሳንቲም"),
        ("USD 20", "ሃያ ዶላር"),
        ("€5", "አምስት ዩሮ"),
        ("$100", "መቶ ዶላር"),
    ],
)
def test_suffixes_and_currencies(text, expected):
    assert std(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0911-23-45-67", "ዜሮ ዘጠኝ አንድ አንድ ሁለት ሦስት አራት አምስት ስድስት ሰባት"),
        ("0911 23 45 67", "ዜሮ ዘጠኝ አንድ አንድ ሁለት ሦስት አራት አምስት ስድስት ሰባት"),
        ("+251 11 551 2345", "ፕላስ ሁለት አምስት አንድ አንድ አንድ አምስት አምስት አንድ ሁለት ሦስት አራት አምስት"),
        ("+251911234567", "ፕላስ ሁለት አምስት አንድ ዘጠኝ አንድ አንድ ሁለት ሦስት አራት አምስት ስድስት ሰባት"),
        ("በ011-551-2345 ይደውሉ", "በዜሮ አንድ አንድ አምስት አምስት አንድ ሁለት ሦስት አራት አምስት ይደውሉ"),
        ("05 10 15", "ዜሮ አምስት አሥር አሥራ አምስት"),  # too short for a phone number: three numbers
    ],
)
def test_phone_numbers_are_digit_groups(text, expected):
    assert std(text) == expected


def test_a_news_paragraph_leaves_no_digit_slash_or_hyphen():
    news = (
        "ጠ/ሚ/ር ዐቢይ በ3:30 ሰዓት በ12/05/2016 ዓ.ም ከ10-15 ቀናት ውስጥ 3/4 የሚሆነው በ1950ዎቹ የተጀመረው "
        "ከ-5 እስከ 30 ዲግሪ፣ 1 USD = 57.50 ETB፣ ለ0911-23-45-67 ይደውሉ። የአ/አበባ ክ/ከተማ ም/ሊ/መንበር"
    )
    for homophones in (True, False):
        out = normalize(news, homophones=homophones)
        assert no_marks_left(out), out
        assert normalize(out, homophones=homophones) == out


def test_expand_numbers_alone_leaves_no_digits():
    assert not re.search("[0-9]", expand_numbers("12/05/2016 3-4 -5 1/2 0911 23 45 67 1950ዎቹ"))
