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
MAX_DIGITS = len(str(MAX_NUMBER))  # longer digit strings are read digit by digit, never int()-converted
POINT = "ነጥብ"
PERCENT = "በመቶ"
BIRR, SANTIM, DOLLAR = "ብር", "ሳንቲም", "ዶላር"
HOUR, MINUTE, HALF = "ሰዓት", "ደቂቃ", "ተኩል"
# How a news reader says the rest: 3-4 "ከሦስት እስከ አራት", -5 "ሲቀነስ አምስት", +251 "ፕላስ ...", 1/2 "ግማሽ".
FROM, TO, MINUS, PLUS, DAY = "ከ", "እስከ", "ሲቀነስ", "ፕላስ", "ቀን"
FRACTIONS = {(1, 2): "ግማሽ", (1, 4): "ሩብ"}
PHONE_MIN_DIGITS = 9  # Ethiopian numbers have 10 digits (09.. mobile, 011 Addis Ababa), 12 with +251
CURRENCIES = {"ብር": BIRR, "etb": BIRR, "usd": DOLLAR, "$": DOLLAR, "us$": DOLLAR, "eur": "ዩሮ", "€": "ዩሮ",
              "gbp": "ፓውንድ", "£": "ፓውንድ"}  # fmt: skip
ETHIOPIAN_MONTHS = ("መስከረም", "ጥቅምት", "ኅዳር", "ታኅሣሥ", "ጥር", "የካቲት", "መጋቢት", "ሚያዝያ", "ግንቦት", "ሰኔ", "ሐምሌ", "ነሐሴ",
                    "ጳጉሜን")  # fmt: skip
GREGORIAN_MONTHS = ("ጃንዋሪ", "ፌብሩዋሪ", "ማርች", "ኤፕሪል", "ሜይ", "ጁን", "ጁላይ", "ኦገስት", "ሴፕቴምበር", "ኦክቶበር", "ኖቬምበር",
                    "ዲሴምበር")  # fmt: skip
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
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > MAX_DIGITS:
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

    An invalid run, or one above MAX_NUMBER (፼፼፼፼ ...), is converted numeral by numeral; a space keeps
    the result apart from adjacent digits.
    """

    def convert(m: re.Match) -> str:
        run = m.group()
        try:
            value = ethiopic_numeral_to_int(run)
        except ValueError:
            value = None
        if value is not None and value <= MAX_NUMBER:
            out = str(value)
        else:
            out = " ".join(str(ethiopic_numeral_to_int(ch)) for ch in run)
        before = m.string[m.start() - 1] if m.start() else ""
        after = m.string[m.end()] if m.end() < len(m.string) else ""
        return (" " if before.isdigit() else "") + out + (" " if after.isdigit() else "")

    return _ETHIOPIC_RUN.sub(convert, text)


_ETHIOPIC_RUN = re.compile(f"[{ETHIOPIC_NUMERAL_CHARS}]+")
_E = "\u1200-\u135a"  # Ethiopic letters of the main block

# One number in running text, with the context that changes how it is read. Digit groups are separated
# by "," or a space ("8,500", "10 000"); "." is the decimal point, as in Ethiopian usage. Abbreviations
# are expanded before numbers, so a year mark is written out (ዓመተ ምሕረት, merged: አመተ ምህረት).
_YEAR_MARK = r"\s?(?:[ዓኣአ](?:\.[ምዓኣአ]|/ም|መተ)|እ\.ኤ\.[አኣ]|እንደ\s[ኤአ]ውሮፓውያን)"
_CURRENCY_BEFORE = r"(?P<cur_before>(?:(?i:us\$|usd|etb|eur|gbp)\s?|[$€£]\s?))"
_CURRENCY_AFTER = r"(?P<cur_after>\s?(?:ብር(?![" + _E + r"])|(?i:etb|usd|eur|gbp)(?![A-Za-z])))"
# A suffix written on a number: 1950ዎቹ, 2ቱ (ሁለቱ), 5ና; a letter that starts a new word (5ሰዎች) is not one.
_SUFFIX = r"(?P<suffix>[ዎውዋንምናቱቷቶሩራሮዱዳዶኙኟኞ][" + _E + r"]*)"
_NUMBER = re.compile(
    _CURRENCY_BEFORE + "?"
    r"(?P<int>\d{1,3}(?:[, ]\d{3})+(?!\d)|\d+)"
    r"(?:\.(?P<frac>\d+))?"
    r"(?:(?P<percent>\s?%)|" + _CURRENCY_AFTER + r"|(?P<ordinal>ኛ[" + _E + r"]*)|" + _SUFFIX + ""
    r"|(?=(?P<year>" + _YEAR_MARK + ")))?",
    re.ASCII,  # ASCII digits only: other scripts' digits are left alone, not misread
)
_HOUR_WORD = r"(?P<hour_word>\s?ሰ[ዓአኣ]ት(?![" + _E + "]))"
_TIME = re.compile(r"(?<![\d:])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?![\d:])" + _HOUR_WORD + "?", re.ASCII)
# Phone numbers: a leading 0 or +country code, then digit groups ("0911 23 45 67", "+251 11 551 2345").
_PHONE = re.compile(r"(?<![\d+.,/])(?P<phone>(?:\+\d{1,3}|0\d{1,3})(?:[ -]\d{2,4}){2,4}|\+\d{9,14})(?![\d.,/-])")
# dd/mm/yyyy, dd.mm.yyyy, dd-mm-yyyy (the same mark twice) and yyyy-mm-dd.
_DATE = re.compile(
    r"(?<![\d/.,-])(?:(?P<d>\d{1,2})(?P<sep>[/.-])(?P<m>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
    r"|(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2}))(?![\d/.,-]|\.\d)"
)
_GREGORIAN_MARK = re.compile(r"(?:እንደ\s[ኤአ]ውሮፓውያን\s[አኣ]ቆጣጠር|እ\.ኤ\.[አኣ])\s?[በከለየ]?$")
_ETHIOPIAN_AFTER = re.compile(r"\s?(?:[ዓኣአ]መተ|[ዓኣአ]\.ም)")
_FRACTION = re.compile(r"(?<![\d/.,])(?P<n>\d{1,3})/(?P<d>[1-9]\d{0,2})(?![\d/]|[.,]\d)")
_RANGE = re.compile(
    r"(?<![" + _E + r"\d.,:/-])(?P<pre>[በከለየ])?(?P<a>\d+(?:[.,:]\d+)*)\s?[-–]\s?(?P<b>\d+(?:[.,:]\d+)*)(?![\d-])"
)
# A minus starts a word, or follows a one-letter proclitic (ከ-5 "from minus five").
_NEGATIVE = re.compile(r"(?:(?<![\w)\].,-])|(?<=[በከለየ])(?<!\w[በከለየ]))[-−](?=\d)")
_DIGIT_SLASH = re.compile(r"(?<=\d)/(?=\d)")
_WORD_HYPHEN_DIGIT = re.compile(r"(?<=[^\W\d_])-(?=\d)")  # COVID-19: a name and its number


def _is_ethiopic_letter(ch: str) -> bool:
    return "\u1200" <= ch <= "\u135a" or "\u2d80" <= ch <= "\u2ddf" or "\uab00" <= ch <= "\uab2f"


def _currency(m: re.Match) -> str | None:
    code = (m.group("cur_before") or m.group("cur_after") or "").strip().lower()
    return CURRENCIES[code] if code else None


def _money_words(digits: str, frac: str | None, unit: str) -> str:
    """"25.50 ብር" -> ሃያ አምስት ብር ከሃምሳ ሳንቲም: one or two decimals are santim (cents)."""
    if frac and len(frac) <= 2:
        cents = int(frac.ljust(2, "0"))
        if not digits.strip("0"):
            return f"{number_to_words(cents)} {SANTIM}"
        return f"{_integer_to_words(digits)} {unit}" + (f" {AND}{number_to_words(cents)} {SANTIM}" if cents else "")
    words = decimal_to_words(digits, frac) if frac else _integer_to_words(digits)
    return f"{words} {unit}"


def _with_suffix(words: str, suffix: str) -> str:
    """Write a suffix on the last number word; a suffix vowel of the word's own 6th-order consonant
    fuses with it: ሁለት + ቱ -> ሁለቱ, አሥር + ሩ -> አሥሩ, ሃምሳ + ዎቹ -> ሃምሳዎቹ."""
    last, first = ord(words[-1]), ord(suffix[0])
    if 0x1200 <= last < 0x1358 and (last - 0x1200) % 8 == 5 and (first - 0x1200) // 8 == (last - 0x1200) // 8:
        return words[:-1] + suffix
    return words + suffix


def _number_words(m: re.Match) -> str:
    raw = m.group("int")
    digits = re.sub(r"[, ]", "", raw)
    frac = m.group("frac")
    if (unit := _currency(m)) is not None:
        return _money_words(digits, frac, unit)
    suffix = m.group("suffix")
    # "በ1987" (in 1987), "1987 ዓ.ም" are years, and so is a decade (1950ዎቹ); a plain 1987 is a cardinal.
    reads_as_year = (
        len(raw) == 4
        and not frac
        and (m.group("year") or _proclitic_before(m.string, m.start()) == "በ" or (suffix and suffix[0] == "ዎ"))
    )
    if frac:
        words = decimal_to_words(digits, frac)
    elif m.group("ordinal") and not (len(digits) > 1 and digits[0] == "0") and len(digits) <= MAX_DIGITS:
        return ordinal_to_words(int(digits)) + m.group("ordinal")[1:]  # 5ኛው -> አምስተኛው
    elif reads_as_year and 1100 <= int(digits) <= 1999:
        words = year_to_words(int(digits))
    else:
        words = _integer_to_words(digits)
        if m.group("ordinal"):
            words += " " + m.group("ordinal")
    if suffix:
        words = _with_suffix(words, suffix)
    return f"{words} {PERCENT}" if m.group("percent") else words


def _time_words(m: re.Match) -> str:
    """3:30 -> ሦስት ሰዓት ተኩል; the hour word written after the time (3:30 ሰዓት) is the one read."""
    hour, minute = int(m.group("h")), int(m.group("m"))
    words = f"{number_to_words(hour)} {HOUR}"
    if minute == 30:
        return f"{words} {HALF}"
    return words + (f" {AND}{number_to_words(minute)} {MINUTE}" if minute else "")


def _phone_words(m: re.Match) -> str:
    """Each digit group digit by digit, the groups apart: "+251 11 ..." -> "ፕላስ ሁለት አምስት አንድ አንድ አንድ ..."."""
    phone = m.group("phone")
    groups = re.findall(r"\d+", phone)
    if sum(map(len, groups)) < PHONE_MIN_DIGITS:  # "05 10 15" is a list of numbers, not a phone number
        return phone
    groups = [digits_to_words(g) for g in groups]
    return (f"{PLUS} " if phone.startswith("+") else "") + " ".join(groups)


def _date_words(m: re.Match) -> str:
    """"12/05/2016" -> "ጥር አሥራ ሁለት ቀን ሁለት ሺህ አሥራ ስድስት" (month, day ቀን, year, as news is read).

    The calendar is Gregorian when the text marks it (እ.ኤ.አ before the date) or the date is written
    yyyy-mm-dd, else Ethiopian (the calendar of Amharic news; ዓ.ም after the date confirms it). A day or
    month out of range is not a date: its numbers are read one after the other."""
    iso = m.group("iy") is not None
    day, month, year = (m.group("id"), m.group("im"), m.group("iy")) if iso else (m.group("d"), m.group("m"), m.group("y"))
    gregorian = iso or bool(_GREGORIAN_MARK.search(m.string[max(0, m.start() - 40) : m.start()]))
    gregorian = gregorian and not _ETHIOPIAN_AFTER.match(m.string, m.end())
    months = GREGORIAN_MONTHS if gregorian else ETHIOPIAN_MONTHS
    d, mo = int(day), int(month)
    if not (1 <= mo <= len(months) and 1 <= d <= (31 if gregorian else 30 if mo <= 12 else 6)):
        return " ".join(_integer_to_words(part) for part in (day, month, year))
    y = int(year)
    year_words = year_to_words(y) if len(year) == 4 else _integer_to_words(year)
    return f"{months[mo - 1]} {number_to_words(d)} {DAY} {year_words}"


def _fraction_words(m: re.Match) -> str:
    """1/2 ግማሽ, 1/4 ሩብ, 3/4 ሦስት አራተኛ (n d-th); a / b with a >= b is two numbers (24/7)."""
    n, d = int(m.group("n")), int(m.group("d"))
    if (n, d) in FRACTIONS:
        return FRACTIONS[(n, d)]
    if n == 0 or n >= d or (len(m.group("n")) > 1 and m.group("n")[0] == "0"):
        return f"{_integer_to_words(m.group('n'))} {_integer_to_words(m.group('d'))}"
    return f"{number_to_words(n)} {ordinal_to_words(d)}"


def _range(m: re.Match) -> str:
    """3-4 -> ከ3 እስከ 4 (the numbers are read after): a range is "from ... to"; another proclitic
    (በ3-4 ቀናት) keeps its place."""
    pre = m.group("pre") or FROM
    return f"{pre}{m.group('a')} {TO} {m.group('b')}"


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
    """Read out Ethiopic numerals and digits in text: phone numbers (digit groups), dates (12/05/2016),
    ranges (3-4, ከ10-15: ከ ... እስከ ...), negative numbers (-5), fractions (1/2, 3/4), times (3:30),
    money (25.50 ብር, $5, 100 ETB), percentages, decimals, ordinals (5ኛ), years (በ1987, 1987 ዓ.ም),
    numbers with a suffix (1950ዎቹ, 2ቱ) and plain numbers. No ASCII digit or Ethiopic numeral is left,
    nor a slash or hyphen between digits; other scripts' digits are not read."""
    text = ethiopic_numerals_to_digits(text)
    text = _PHONE.sub(_spaced(_phone_words), text)
    text = _DATE.sub(_spaced(_date_words), text)
    text = _RANGE.sub(_range, text)
    text = _NEGATIVE.sub(MINUS + " ", text)
    text = _FRACTION.sub(_spaced(_fraction_words), text)
    text = _DIGIT_SLASH.sub(" ", text)
    text = _WORD_HYPHEN_DIGIT.sub(" ", text)
    text = _TIME.sub(_spaced(_time_words), text)
    return _NUMBER.sub(_spaced(_number_words), text)
