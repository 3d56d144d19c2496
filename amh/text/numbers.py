"""Amharic number words: cardinals, ordinals, years, decimals, Ethiopic numerals, and their expansion in text.

The functions here return the standard spelling (ሦስት, አሥር, ሠላሳ); `amh.text.normalize` merges homophone
letters afterwards when asked to, so its output stays idempotent.
"""
from __future__ import annotations

import re

ONES = ("ዜሮ", "አንድ", "ሁለት", "ሦስት", "አራት", "አምስት", "ስድስት", "ሰባት", "ስምንት", "ዘጠኝ")
TENS = ("", "አሥር", "ሃያ", "ሠላሳ", "አርባ", "ሃምሳ", "ስልሳ", "ሰባ", "ሰማንያ", "ዘጠና")
TEEN = "አሥራ"  # 11-19 are "ten-and" + unit: አሥራ አንድ
HUNDRED = "መቶ"
SCALES = ((10**9, "ቢሊዮን"), (10**6, "ሚሊዮን"), (10**3, "ሺህ"))
MAX_NUMBER = 999_999_999_999
POINT = "ነጥብ"
PERCENT = "በመቶ"
BIRR, SANTIM, DOLLAR = "ብር", "ሳንቲም", "ዶላር"
HOUR, MINUTE, HALF = "ሰዓት", "ደቂቃ", "ተኩል"
AND = "ከ"  # "25 birr and 50 santim": ሃያ አምስት ብር ከሃምሳ ሳንቲም (a proclitic, written attached)

# Single-letter proclitics (in, from, to, of) are written attached to the word after them: በ5 -> በአምስት.
PROCLITICS = frozenset("በከለየ")

ETHIOPIC_DIGITS = {chr(0x1369 + i): i + 1 for i in range(9)}  # ፩..፱
ETHIOPIC_TENS = {chr(0x1372 + i): 10 * (i + 1) for i in range(9)}  # ፲..፺
ETHIOPIC_HUNDRED, ETHIOPIC_MYRIAD = "፻", "፼"
ETHIOPIC_NUMERAL_CHARS = "".join(ETHIOPIC_DIGITS) + "".join(ETHIOPIC_TENS) + ETHIOPIC_HUNDRED + ETHIOPIC_MYRIAD


def _check_number(n: int, low: int = 0) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"expected an int, got {type(n).__name__} {n!r}")
    if not low <= n <= MAX_NUMBER:
        raise ValueError(
            f"{n} is outside {low}..{MAX_NUMBER:,}; read longer digit strings digit by digit with digits_to_words()"
        )


def _below_hundred(n: int) -> list[str]:
    if n < 10:
        return [ONES[n]]
    tens, unit = divmod(n, 10)
    if tens == 1:
        return [TENS[1]] if unit == 0 else [TEEN, ONES[unit]]
    return [TENS[tens]] + ([ONES[unit]] if unit else [])


def _below_thousand(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = []
    if hundreds:
        # A bare hundred is "መቶ", not "አንድ መቶ"; thousands keep their "አንድ" (አንድ ሺህ).
        words += [HUNDRED] if hundreds == 1 else [ONES[hundreds], HUNDRED]
    if rest:
        words += _below_hundred(rest)
    return words


def number_to_words(n: int) -> str:
    """Cardinal number in Amharic words, 0 ... 999,999,999,999: 1987 -> "አንድ ሺህ ዘጠኝ መቶ ሰማንያ ሰባት"."""
    _check_number(n)
    if n == 0:
        return ONES[0]
    words: list[str] = []
    for scale, name in SCALES:
        count, n = divmod(n, scale)
        if count:
            words += _below_thousand(count) + [name]
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def _ordinal_word(word: str) -> str:
    """Add the ordinal suffix -ኛ: a final 6th-order letter takes the 1st order (አንድ -> አንደኛ)."""
    if word == "ሺህ":
        return "ሺኛ"
    if word == "ዘጠኝ":
        return "ዘጠነኛ"  # the palatal ኝ is written ነ before -ኛ
    last = ord(word[-1])
    if 0x1200 <= last < 0x1360 and (last - 0x1200) % 8 == 5:
        return word[:-1] + chr(last - 5) + "ኛ"
    return word + "ኛ"


def ordinal_to_words(n: int) -> str:
    """Ordinal number in Amharic words: 1 -> "አንደኛ", 2 -> "ሁለተኛ", 20 -> "ሃያኛ"."""
    _check_number(n)
    words = number_to_words(n).split(" ")
    words[-1] = _ordinal_word(words[-1])
    return " ".join(words)


def year_to_words(n: int) -> str:
    """A year: 1100-1999 are read in hundreds like their Ethiopic numerals (፲፱፻፹፯ = 19 x 100 + 87),
    1987 -> "አሥራ ዘጠኝ መቶ ሰማንያ ሰባት"; other years read as cardinals (2016 -> "ሁለት ሺህ አሥራ ስድስት")."""
    _check_number(n)
    if 1100 <= n <= 1999:
        hundreds, rest = divmod(n, 100)
        return " ".join(_below_hundred(hundreds) + [HUNDRED] + (_below_hundred(rest) if rest else []))
    return number_to_words(n)


def digits_to_words(digits: str) -> str:
    """Read a digit string one digit at a time (phone numbers, leading zeros): "091" -> "ዜሮ ዘጠኝ አንድ"."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"expected ASCII digits, got {digits!r}")
    return " ".join(ONES[int(d)] for d in digits)


def decimal_to_words(integer: str, fraction: str) -> str:
    """"3", "14" -> "ሦስት ነጥብ አንድ አራት": the fraction is read digit by digit, so 0.05 keeps its zero."""
    return f"{_integer_to_words(integer)} {POINT} {digits_to_words(fraction)}"


def _integer_to_words(digits: str) -> str:
    """A digit string as a cardinal when it reads as one, else digit by digit (leading zero, too long)."""
    if (len(digits) > 1 and digits[0] == "0") or int(digits) > MAX_NUMBER:
        return digits_to_words(digits)
    return number_to_words(int(digits))


def ethiopic_numeral_to_int(s: str) -> int:
    """Value of an Ethiopic numeral: "፲፱፻፹፯" -> 1987, "፻" -> 100, "፼" -> 10000, "፻፼" -> 1,000,000.

    Numbers are written in myriad groups (0-9999) of the form `[tens][unit]፻[tens][unit]`: a tens+unit
    pair before ፻ counts hundreds (፲፱፻፹፯ = 19 x 100 + 87), and each ፼ multiplies everything written
    before it by 10,000 (፺፱፻፺፱፼፺፱፻፺፱ = 99,999,999; ፼፼ = 10^8). A marker with no number before it
    counts once (፻ = 100).
    """
    if not isinstance(s, str) or not s:
        raise ValueError(f"expected a non-empty Ethiopic numeral, got {s!r}")
    total = group = 0  # value before the last ፼; hundreds of the current myriad group
    tens = unit = 0  # the current pair
    hundred_seen = False
    for i, ch in enumerate(s):
        if ch in ETHIOPIC_TENS and not (tens or unit):
            tens = ETHIOPIC_TENS[ch]
        elif ch in ETHIOPIC_DIGITS and not unit:
            unit = ETHIOPIC_DIGITS[ch]
        elif ch == ETHIOPIC_HUNDRED and not hundred_seen:
            group, tens, unit, hundred_seen = ((tens + unit) or 1) * 100, 0, 0, True
        elif ch == ETHIOPIC_MYRIAD:
            total = ((total + group + tens + unit) or 1) * 10_000
            group, tens, unit, hundred_seen = 0, 0, 0, False
        else:
            raise ValueError(_numeral_error(s, i))
    return total + group + tens + unit


def _numeral_error(s: str, i: int) -> str:
    ch = s[i]
    if ch not in ETHIOPIC_NUMERAL_CHARS:
        return f"invalid Ethiopic numeral {s!r}: {ch!r} (U+{ord(ch):04X}) at position {i} is not an Ethiopic numeral"
    return (
        f"invalid Ethiopic numeral {s!r}: {ch!r} at position {i} is out of place "
        "(a myriad group is [tens][unit]፻[tens][unit], then ፼; e.g. ፲፱፻፹፯ = 1987)"
    )


def ethiopic_numerals_to_digits(text: str) -> str:
    """Replace each run of Ethiopic numerals with ASCII digits ("በ፲፱፻፹፯" -> "በ1987").

    An invalid run is converted numeral by numeral; a space keeps the result apart from adjacent digits.
    """

    def convert(m: re.Match) -> str:
        run = m.group()
        try:
            out = str(ethiopic_numeral_to_int(run))
        except ValueError:
            out = " ".join(str(ethiopic_numeral_to_int(ch)) for ch in run)
        before = m.string[m.start() - 1] if m.start() else ""
        after = m.string[m.end()] if m.end() < len(m.string) else ""
        return (" " if before.isdigit() else "") + out + (" " if after.isdigit() else "")

    return _ETHIOPIC_RUN.sub(convert, text)


_ETHIOPIC_RUN = re.compile(f"[{ETHIOPIC_NUMERAL_CHARS}]+")

# One number in running text, with the context that changes how it is read. Digit groups are separated
# by "," or a space ("8,500", "10 000"); "." is the decimal point, as in Ethiopian usage.
_YEAR_MARK = r"\s?(?:[ዓኣ](?:\.[ምዓኣ]|/ም|መተ)|እ\.ኤ\.[አኣ])"
_NUMBER = re.compile(
    r"(?P<dollar>\$\s?)?"
    r"(?P<int>\d{1,3}(?:[, ]\d{3})+(?!\d)|\d+)"
    r"(?:\.(?P<frac>\d+))?"
    r"(?:(?P<percent>\s?%)|(?P<birr>\s?ብር)(?![\u1200-\u135a])|(?P<ordinal>ኛ[\u1200-\u135a]*)"
    r"|(?=(?P<year>" + _YEAR_MARK + ")))?",
    re.ASCII,  # ASCII digits only: other scripts' digits are left alone, not misread
)
_TIME = re.compile(r"(?<![\d:])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?![\d:])", re.ASCII)


def _is_ethiopic_letter(ch: str) -> bool:
    return "\u1200" <= ch <= "\u135a" or "\u2d80" <= ch <= "\u2ddf" or "\uab00" <= ch <= "\uab2f"


def _money_words(digits: str, frac: str | None, unit: str) -> str:
    """"25.50 ብር" -> ሃያ አምስት ብር ከሃምሳ ሳንቲም: one or two decimals are santim (cents)."""
    if frac and len(frac) <= 2:
        cents = int(frac.ljust(2, "0"))
        if int(digits) == 0:
            return f"{number_to_words(cents)} {SANTIM}"
        return f"{_integer_to_words(digits)} {unit}" + (f" {AND}{number_to_words(cents)} {SANTIM}" if cents else "")
    words = decimal_to_words(digits, frac) if frac else _integer_to_words(digits)
    return f"{words} {unit}"


def _number_words(m: re.Match) -> str:
    raw = m.group("int")
    digits = re.sub(r"[, ]", "", raw)
    frac = m.group("frac")
    if m.group("dollar") or m.group("birr"):
        return _money_words(digits, frac, DOLLAR if m.group("dollar") else BIRR)
    # "በ1987" (in 1987) and "1987 ዓ.ም" are years; a plain 1987 is a cardinal.
    reads_as_year = len(raw) == 4 and not frac and (m.group("year") or _proclitic_before(m.string, m.start()) == "በ")
    if frac:
        words = decimal_to_words(digits, frac)
    elif m.group("ordinal") and not (len(digits) > 1 and digits[0] == "0") and int(digits) <= MAX_NUMBER:
        return ordinal_to_words(int(digits)) + m.group("ordinal")[1:]  # 5ኛው -> አምስተኛው
    elif reads_as_year and 1100 <= int(digits) <= 1999:
        words = year_to_words(int(digits))
    else:
        words = _integer_to_words(digits)
        if m.group("ordinal"):
            words += " " + m.group("ordinal")
    return f"{words} {PERCENT}" if m.group("percent") else words


def _time_words(m: re.Match) -> str:
    hour, minute = int(m.group("h")), int(m.group("m"))
    words = f"{number_to_words(hour)} {HOUR}"
    if minute == 30:
        return f"{words} {HALF}"
    return words + (f" {AND}{number_to_words(minute)} {MINUTE}" if minute else "")


def _proclitic_before(text: str, start: int) -> str:
    """The one-letter proclitic written right before `start` ("በ" in "በ5"), or ""."""
    if start and text[start - 1] in PROCLITICS and (start < 2 or not _is_ethiopic_letter(text[start - 2])):
        return text[start - 1]
    return ""


def _spaced(words_of):
    """Wrap a replacement so that it is separated from neighbouring letters and digits by a space,
    except after a one-letter proclitic (በ, ከ, ለ, የ), which Amharic writes attached. Also after "."
    and "/": "አ.5" must not become "አ.አምስት", where a second pass would find the abbreviation አ.አ."""

    def replace(m: re.Match) -> str:
        text, start, end = m.string, m.start(), m.end()
        before = text[start - 1] if start else ""
        after = text[end] if end < len(text) else ""
        space_before = (before.isalnum() or before in (".", "/")) and not _proclitic_before(text, start)
        space_after = after.isalnum()
        return (" " if space_before else "") + words_of(m) + (" " if space_after else "")

    return replace


def expand_numbers(text: str) -> str:
    """Read out Ethiopic numerals and digits in text: times (3:30), money (25.50 ብር, $5), percentages,
    decimals, ordinals (5ኛ), years (በ1987, 1987 ዓ.ም) and plain numbers. No ASCII digit or Ethiopic numeral
    is left; other scripts' digits are not read."""
    text = ethiopic_numerals_to_digits(text)
    text = _TIME.sub(_spaced(_time_words), text)
    return _NUMBER.sub(_spaced(_number_words), text)
