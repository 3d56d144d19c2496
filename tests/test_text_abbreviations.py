"""Abbreviations as whole tokens (amh/text/abbreviations.py, abbreviations.tsv) and their report."""
import io
import re

import pytest

from amh.text import default_abbreviations, expand_abbreviations, normalize, unexpanded_abbreviations
from amh.text.__main__ import main as text_cli
from amh.text.abbreviations import Abbreviations


def std(text: str) -> str:
    return normalize(text, homophones=False)


# ---------------------------------------------------------------- the rest of the word, spelled out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ሊ/መንበር", "ሊቀ መንበር"),  # not ሊቀ መንበርንበር
        ("ም/ሊ/መንበሩ", "ምክትል ሊቀ መንበሩ"),
        ("አ/አበባ", "አዲስ አበባ"),  # not አዲስ አበባበባ
        ("ክ/ከተማ", "ክፍለ ከተማ"),  # not ክፍለ ከተማተማ
        ("ክ/ከተማዋ", "ክፍለ ከተማዋ"),
        ("ዋ/ሥ/አስፈጻሚው", "ዋና ሥራ አስፈጻሚው"),
        ("ጠ/ሚኒስትሩ", "ጠቅላይ ሚኒስትሩ"),
        ("ክ/ዘመን", "ክፍለ ዘመን"),
        ("ር/መስተዳድር", "ርዕሰ መስተዳድር"),
        ("ዋ/ሥ/አስፈፃሚው", "ዋና ሥራ አስፈጻሚው"),  # the word in another homophone spelling (ፃ for ጻ)
        ("ክ/ዘመናት", "ክፍለ ዘመናት"),  # the spelled-out word with a fused plural suffix
    ],
)
def test_prefix_slash_full_word_is_the_same_abbreviation(text, expected):
    assert std(text) == expected


def test_no_expansion_repeats_letters_of_the_written_word():
    # Every key of the table written with the full last word of its expansion after the slash.
    for key, expansion in default_abbreviations().items():
        if key.endswith("/") or "/" not in key:
            continue
        *_, segment = re.split("[./]", key)
        word = expansion.split(" ")[-1]
        if not word.startswith(segment) or word == segment:
            continue
        written = key[: len(key) - len(segment)] + word
        assert std(written) == std(expansion), (written, std(written))


# ---------------------------------------------------------------------------------- whole tokens


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ጠ/ሚ/ር ዐቢይ", "ጠቅላይ ሚኒስትር ዐቢይ"),
        ("በጠ/ሚ/ር ጽ/ቤት", "በጠቅላይ ሚኒስትር ጽሕፈት ቤት"),
        ("ጠ/ሚ/ጽ/ቤት", "ጠቅላይ ሚኒስትር ጽሕፈት ቤት"),  # two keys in one token
        ("የፌ/ጠ/ፍ/ቤት", "የፌዴራል ጠቅላይ ፍርድ ቤት"),
        ("የከ/ፍ/ቤት", "የከፍተኛ ፍርድ ቤት"),
        ("ም/ከንቲባ", "ምክትል ከንቲባ"),  # deputy before any title
        ("ም/ጠ/ሚ/ር", "ምክትል ጠቅላይ ሚኒስትር"),
        ("ም/ፕ/ት", "ምክትል ፕሬዚዳንት"),
        ("ም/ቤቱ", "ምክር ቤቱ"),  # a longer key wins over the ም/ prefix
        ("እ/ኤ/አ", "እንደ ኤውሮፓውያን አቆጣጠር"),
        ("እ.ኤ.አ", "እንደ ኤውሮፓውያን አቆጣጠር"),
        ("ኢትዮ ቴሌኮም አ.ማ", "ኢትዮ ቴሌኮም አክሲዮን ማኅበር"),  # not a fused ዓ.ም
        ("ዳሽን ባንክ ኃ/የተ/የግ/ማ", "ዳሽን ባንክ ኃላፊነቱ የተወሰነ የግል ማኅበር"),
        ("ሌ/ጄ ባጫ", "ሌተና ጄኔራል ባጫ"),
        ("ሻ/ቃ", "ሻለቃ"),
        ("ለሕ/ተ/ም/ቤት", "ለሕዝብ ተወካዮች ምክር ቤት"),
        ("የደ/ብ/ብ/ሕ/ክ/መ", "የደቡብ ብሔሮች ብሔረሰቦችና ሕዝቦች ክልላዊ መንግሥት"),
        ("ወ/ሮዋ", "ወይዘሮዋ"),
        ("ዶ/ርን", "ዶክተርን"),
        ("ኃ/ማርያም", "ኃይለ ማርያም"),
        ("ፌ/ፖ/ኮ", "ፌዴራል ፖሊስ ኮሚሽን"),
    ],
)
def test_tokens(text, expected):
    assert std(text) == expected


def test_homophone_spellings_of_a_key_match():
    assert std("ፅ/ቤት") == "ጽሕፈት ቤት"  # ፅ for ጽ
    assert std("አ.ም") == std("ኣ.ም") == std("ዓ.ም") == "ዓመተ ምሕረት"
    # two keys that merge to one spelling keep their own expansions when written as in the table
    assert std("ዓ.ዓ") == "ዓመተ ዓለም" and std("አ.አ") == "አዲስ አበባ"


def test_unknown_slash_forms_are_reported_and_not_kept():
    text = "የሰ/ዘ/ቢሮ ኃላፊ ዶ/ር አበበ"
    assert unexpanded_abbreviations(text) == ["የሰ/ዘ/ቢሮ"]
    out = normalize(text)
    assert "/" not in out and out == "የሰ ዘ ቢሮ ሀላፊ ዶክተር አበበ"
    assert normalize(out) == out


def test_expand_abbreviations_keeps_its_api():
    assert expand_abbreviations("ዶ/ር") == "ዶክተር"
    assert expand_abbreviations("ጽ/ቤት", homophones=True) == "ጽህፈት ቤት"
    assert expand_abbreviations("ኢ.ኦ", {"ኢ.ኦ": "ኢትዮጵያ ኦርቶዶክስ"}) == "ኢትዮጵያ ኦርቶዶክስ"


def test_bad_keys_name_the_key():
    with pytest.raises(ValueError, match=r"'ዶ//ር'"):
        Abbreviations({"ዶ//ር": "ዶክተር"}, str, str)


def test_duplicate_key_in_a_file_names_file_and_line(tmp_path):
    tsv = tmp_path / "dup.tsv"
    tsv.write_text("ዶ/ር\tዶክተር\nዶ/ር\tዶክትር\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dup\.tsv:2: 'ዶ/ር' is already defined"):
        normalize("ዶ/ር", extra_abbreviations=tsv)


def test_the_table_grew_and_every_entry_round_trips():
    table = default_abbreviations()
    assert len(table) >= 130
    for key in ("እ/ኤ/አ", "ጠ/ሚ/ር", "ፍ/ቤት", "ጽ/ቤት", "ም/", "ሌ/ጄ", "ኃ/የተ/የግ/ማ", "ው/ጉ/ሚ", "ደ/ብርሃን", "ሊ/ጳ"):
        assert key in table
    for key, expansion in table.items():
        if key.endswith("/"):
            assert std(key + "ማርያም") == std(expansion + " ማርያም")
        else:
            out = std(key)
            assert out == std(expansion) and not re.search("[./]", out), (key, out)


def test_report_counts_unexpanded_abbreviations_and_left_marks(monkeypatch, capsys):
    stdin = "ሰዶ/ር መጣ።\nየሰ/ዘ/ቢሮ እና ሰዶ/ር\nዶ/ር 3-4 ሰዎች\nwi-fi አለ\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert text_cli(["--report"]) == 0
    out = capsys.readouterr().out
    assert "unexpanded abbreviations (slash between Ethiopic letters, not in the table; read as a space): " \
        "3 in 2 lines, 2 distinct" in out
    assert "  ሰዶ/ር: 2x, first in line(s) 1, 2" in out
    assert "  የሰ/ዘ/ቢሮ: 1x, first in line(s) 2" in out
    assert "slash/hyphen/minus forms left in the normalised text: 1 in 1 lines, 1 distinct" in out
    assert "  wi-fi: 1x, first in line(s) 4" in out
