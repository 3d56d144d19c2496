"""Amharic normalisation (amh/text/normalize.py) and the `python -m amh.text` CLI."""
import io
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amh.text import default_abbreviations, load_abbreviations, merge_homophones, normalize
from amh.text.normalize import unexpanded_abbreviations
from amh.text.__main__ import main as text_cli

# ------------------------------------------------------------------------------------------ punctuation


def test_ethiopic_punctuation_maps_to_latin():
    assert normalize("ሰላም፡ለሁሉ፡ይሁን።") == "ሰላም ለሁሉ ይሁን."
    assert normalize("ነው፣ ግን፤ እንዲህ፥ ብሎ፦ ማን፧ አለ፨") == "ነው, ግን; እንዲህ: ብሎ: ማን? አለ."


def test_double_wordspace_is_a_full_stop_and_sentences_stay_apart():
    assert normalize("ደህና ነው፡፡ሰላም ነው።እንሂድ") == "ደህና ነው. ሰላም ነው. እንሂድ"


def test_latin_punctuation_kept_and_whitespace_collapsed():
    assert normalize("  እንዴት   ነህ ?\tደህና\u00a0ነኝ !\n") == "እንዴት ነህ? ደህና ነኝ!"
    assert normalize("«ና» አለ - (ቶሎ)") == "«ና» አለ - (ቶሎ)"


def test_output_is_nfc_without_format_characters():
    assert normalize("cafe\u0301 \u200bቡና") == "café ቡና"
    assert unicodedata.is_normalized("NFC", normalize("e\u0301"))


# ------------------------------------------------------------------------------------------- homophones

HOMOPHONE_ROWS = [(0x1210, 0x1200), (0x1280, 0x1200), (0x12B8, 0x1200), (0x1220, 0x1230), (0x12D0, 0x12A0), (0x1340, 0x1338)]
LARYNGEAL_ROWS = (0x1200, 0x12A0)  # ሀ, አ: their 4th order (ሃ, ኣ) is said like the 1st


@pytest.mark.parametrize("source, target", HOMOPHONE_ROWS)
def test_homophone_rows_merge_in_all_seven_orders(source, target):
    for order in range(7):
        # ha and ʔa are one sound in the 1st and 4th order of the laryngeal rows: both go to the 1st.
        expected = target if order == 3 and target in LARYNGEAL_ROWS else target + order
        assert merge_homophones(chr(source + order)) == chr(expected)


def test_laryngeal_first_and_fourth_orders_merge():
    assert merge_homophones("ሃ ኣ ዓ ሓ ኃ ኻ") == "ሀ አ አ ሀ ሀ ሀ"
    assert merge_homophones("ሀገር ሃገር") == "ሀገር ሀገር"  # one word, one spelling
    assert merge_homophones("ዓለም ኣለም አለም ዐለም") == "አለም አለም አለም አለም"
    assert normalize("ሃያ") == normalize("ሀያ") == "ሀያ"


def test_old_labialised_sixth_orders_are_the_plain_second_order():
    assert merge_homophones("ቍጥር ኵሉ ጕዳይ ኍ") == "ቁጥር ኩሉ ጉዳይ ሁ"
    assert merge_homophones("ቀ ቈ ኰ") == "ቀ ቈ ኰ"  # the other labialised letters are distinct sounds


def test_labialised_homophones_merge():
    assert merge_homophones("ኋ ዃ ኇ ሧ ፇ") == "ሗ ሗ ሗ ሷ ጿ"
    assert merge_homophones("ዀ ዂ ዄ ዅ") == "ኈ ኊ ኌ ሁ"


def test_homophone_merging_is_switchable():
    text = "ፀሐይ ስትጠልቅ ውሻው ጮኸ፤ ከሠላሳ ዓመት በኋላ ወደ ሐረር ተመለሰ።"
    assert normalize(text) == "ጸሀይ ስትጠልቅ ውሻው ጮሀ; ከሰላሳ አመት በሗላ ወደ ሀረር ተመለሰ."
    assert normalize(text, homophones=False) == "ፀሐይ ስትጠልቅ ውሻው ጮኸ; ከሠላሳ ዓመት በኋላ ወደ ሐረር ተመለሰ."


def test_merge_targets_are_never_sources():
    for ch in map(chr, range(0x1200, 0x1360)):
        assert merge_homophones(merge_homophones(ch)) == merge_homophones(ch)


# ---------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "text, merged, standard",
    [
        ("30", "ሰላሳ", "ሠላሳ"),
        ("10", "አስር", "አሥር"),
        ("3.5", "ሶስት ነጥብ አምስት", "ሦስት ነጥብ አምስት"),
        ("0.05", "ዜሮ ነጥብ ዜሮ አምስት", "ዜሮ ነጥብ ዜሮ አምስት"),
        ("15%", "አስራ አምስት በመቶ", "አሥራ አምስት በመቶ"),
        ("2.5 %", "ሁለት ነጥብ አምስት በመቶ", "ሁለት ነጥብ አምስት በመቶ"),
        ("25.50 ብር", "ሀያ አምስት ብር ከሀምሳ ሳንቲም", "ሃያ አምስት ብር ከሃምሳ ሳንቲም"),
        ("0.75 ብር", "ሰባ አምስት ሳንቲም", "ሰባ አምስት ሳንቲም"),
        ("$5", "አምስት ዶላር", "አምስት ዶላር"),
        ("8,500 ብር", "ስምንት ሺህ አምስት መቶ ብር", "ስምንት ሺህ አምስት መቶ ብር"),
        ("10 000", "አስር ሺህ", "አሥር ሺህ"),
        ("1,000,000", "አንድ ሚሊዮን", "አንድ ሚሊዮን"),
        ("0911", "ዜሮ ዘጠኝ አንድ አንድ", "ዜሮ ዘጠኝ አንድ አንድ"),
        ("3:30", "ሶስት ሰአት ተኩል", "ሦስት ሰዓት ተኩል"),
        ("8:15", "ስምንት ሰአት ከአስራ አምስት ደቂቃ", "ስምንት ሰዓት ከአሥራ አምስት ደቂቃ"),
        ("5ኛው ቀን", "አምስተኛው ቀን", "አምስተኛው ቀን"),
        ("በ1987 ዓ.ም", "በአስራ ዘጠኝ መቶ ሰማንያ ሰባት አመተ ምህረት", "በአሥራ ዘጠኝ መቶ ሰማንያ ሰባት ዓመተ ምሕረት"),
        ("2016 ዓ.ም", "ሁለት ሺህ አስራ ስድስት አመተ ምህረት", "ሁለት ሺህ አሥራ ስድስት ዓመተ ምሕረት"),
        ("1987 ሰዎች", "አንድ ሺህ ዘጠኝ መቶ ሰማንያ ሰባት ሰዎች", "አንድ ሺህ ዘጠኝ መቶ ሰማንያ ሰባት ሰዎች"),
    ],
)
def test_numbers_in_text(text, merged, standard):
    assert normalize(text) == merged
    assert normalize(text, homophones=False) == standard


def test_ethiopic_numerals_in_text():
    assert normalize("እኔ የተወለድኩት በ፲፱፻፹፯ ዓ.ም ነው።", homophones=False) == (
        "እኔ የተወለድኩት በአሥራ ዘጠኝ መቶ ሰማንያ ሰባት ዓመተ ምሕረት ነው."
    )
    assert normalize("ቤተ ክርስቲያኑ በ፲፫ኛው ክ/ዘ ተሠራ።", homophones=False) == "ቤተ ክርስቲያኑ በአሥራ ሦስተኛው ክፍለ ዘመን ተሠራ."
    assert normalize("ከ፲ እስከ ፻") == "ከአስር እስከ መቶ"
    assert normalize("፩፩") == "አንድ አንድ"  # not a valid numeral: read numeral by numeral


def test_numbers_are_separated_from_words_except_after_proclitics():
    assert normalize("ሰዎች5") == "ሰዎች አምስት"
    assert normalize("ከ50 ሳንቲም") == "ከሀምሳ ሳንቲም"
    assert normalize("የ2 ልጆች") == "የሁለት ልጆች"


def test_numbers_can_be_kept():
    assert normalize("በ፲፱፻፹፯ 5%", expand_numbers=False) == "በ፲፱፻፹፯ 5%"


# ---------------------------------------------------------------------------------------- abbreviations


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ዶ/ር አበራ", "ዶክተር አበራ"),
        ("ወ/ሮ አልማዝ እና ወ/ሪት ሄለን", "ወይዘሮ አልማዝ እና ወይዘሪት ሄለን"),
        ("ፕ/ር መስፍን", "ፕሮፌሰር መስፍን"),
        ("የጠ/ሚ ጽ/ቤት", "የጠቅላይ ሚኒስትር ጽህፈት ቤት"),
        ("ም/ቤቱ", "ምክር ቤቱ"),
        ("በት/ቤቱ", "በትምህርት ቤቱ"),
        ("ት/ቤቶች", "ትምህርት ቤቶች"),
        ("አ.አ ዩኒቨርሲቲ", "አዲስ አበባ ዩኒቨርሲቲ"),
        ("ወ/ሮዋ", "ወይዘሮዋ"),
        ("ገ/ማርያም", "ገብረ ማርያም"),
        ("99 ኪ.ሜ", "ዘጠና ዘጠኝ ኪሎ ሜትር"),
        ("1996 ዓ.ም.", "አስራ ዘጠኝ መቶ ዘጠና ስድስት አመተ ምህረት."),
        ("500 ዓ.ዓ", "አምስት መቶ አመተ አለም"),
        ("ኃ/ሥላሴ", "ሀይለ ስላሴ"),
    ],
)
def test_abbreviations(text, expected):
    assert normalize(text) == expected


def test_abbreviations_inside_words_are_not_expanded_and_their_slash_is_not_kept():
    assert normalize("ሰዶ/ር") == "ሰዶ ር"  # not ሰዶክተር; and no "/" for the model to learn
    assert unexpanded_abbreviations("ሰዶ/ር ዶ/ር") == ["ሰዶ/ር"]
    assert normalize("ዶ/ር", expand_abbreviations=False) == "ዶ/ር"


def test_extra_abbreviations_from_dict_and_tsv(tmp_path):
    assert normalize("ሆ/ል ገባ", extra_abbreviations={"ሆ/ል": "ሕክምና ቤት"}, homophones=False) == "ሕክምና ቤት ገባ"
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("# mine\nኢ.ኦ.ቤ\tኢትዮጵያ ኦርቶዶክስ ቤተ ክርስቲያን\n", encoding="utf-8")
    assert normalize("ኢ.ኦ.ቤ", extra_abbreviations=tsv) == "ኢትዮጵያ ኦርቶዶክስ ቤተ ክርስቲያን"


def test_bad_abbreviation_file_names_file_and_line(tmp_path):
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("ዶ/ር\tዶክተር\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: expected 'abbreviation<TAB>expansion'"):
        load_abbreviations(tsv)


def test_shipped_table_has_the_common_abbreviations():
    table = default_abbreviations()
    for key in ("ዓ.ም", "ዓ.ዓ", "ት/ቤት", "ዶ/ር", "ወ/ሮ", "ወ/ሪት", "ፕ/ር", "ጠ/ሚ", "ም/ቤት", "አ.አ"):
        assert key in table


# ------------------------------------------------------------------------------------------------ Latin


def test_latin_kept_lowercased_or_dropped():
    assert normalize("ስልኬ ላይ WhatsApp የለም") == "ስልኬ ላይ WhatsApp የለም"
    assert normalize("ስልኬ ላይ WhatsApp የለም", lowercase_latin=True) == "ስልኬ ላይ whatsapp የለም"
    assert normalize("ስልኬ ላይ WhatsApp የለም", latin="drop") == "ስልኬ ላይ የለም"
    with pytest.raises(ValueError, match="keep"):
        normalize("x", latin="transliterate")


# ------------------------------------------------------------------------------------------ idempotence

LETTERS = [chr(c) for c in range(0x1200, 0x135B) if unicodedata.category(chr(c)) == "Lo"]
SYMBOLS = [chr(c) for c in range(0x135D, 0x137D)] + list("0123456789 .,/%$:;-?!\u00a0\taZé")
PIECES = sorted(default_abbreviations()) + ["ብር", "ኛው", "ዓ.ም", "፡፡", "በ", "ከ", " ", "1987", "25.50", "10 000"] + [
    "12/05/2016", "3-4", "-5", "1/2", "3:30", " ሰዓት", "ዎቹ", "ቱ", "ETB", "USD", "+251 11 551 2345", "0911-23-45-67",
    "ሃ", "ኣ", "ዓ", "ቍ", "መንበር", "ከተማ", "/", "-",
]  # fmt: skip
amharic_ish = st.lists(
    st.one_of(st.text(st.sampled_from(LETTERS + SYMBOLS), max_size=6), st.sampled_from(PIECES)), max_size=12
).map("".join)


@given(amharic_ish, st.booleans(), st.sampled_from(["keep", "drop"]))
@settings(max_examples=600, deadline=None)
def test_normalize_is_idempotent(text, homophones, latin):
    once = normalize(text, homophones=homophones, latin=latin, lowercase_latin=True)
    assert normalize(once, homophones=homophones, latin=latin, lowercase_latin=True) == once


@given(amharic_ish)
@settings(max_examples=300, deadline=None)
def test_normalize_leaves_no_digits_numerals_or_ethiopic_punctuation(text):
    out = normalize(text)
    assert not re.search("[0-9\u1360-\u137c]", out)
    assert out == out.strip() and "  " not in out


def test_demo_sentences_normalise_idempotently():
    from amh.fixtures.demo_corpus import load_sentences

    for sentence in load_sentences():
        once = normalize(sentence)
        assert normalize(once) == once
        assert not re.search("[0-9\u1360-\u137c/]", once), once


# -------------------------------------------------------------------------------------------------- CLI


def _cli(monkeypatch, capsys, stdin: str, *args: str) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert text_cli(list(args)) == 0
    return capsys.readouterr().out


def test_cli_normalises_lines(monkeypatch, capsys):
    out = _cli(monkeypatch, capsys, "ሰላም፡ለዓለም።\nዶ/ር አበራ 5 ብር ከፈለ።\n")
    assert out == "ሰላም ለአለም.\nዶክተር አበራ አምስት ብር ከፈለ.\n"


def test_cli_phonemises(monkeypatch, capsys):
    assert _cli(monkeypatch, capsys, "ሰላም።\n", "--g2p", "rules") == "səlam.\n"


def test_cli_report(monkeypatch, capsys):
    out = _cli(monkeypatch, capsys, "ሰላም።\n፲፱፻፹፯ እና 25 😀\nhello\n😀 ሀ ب\n", "--report")
    assert "lines: 4" in out
    assert "lines changed by normalisation: 2 (50.0%)" in out
    assert "numbers: 2 in 1 lines (1 in digits, 1 in Ethiopic numerals)" in out
    assert "unknown characters (not Ethiopic, Latin, digits or punctuation): 2" in out
    assert "U+1F600 '😀' GRINNING FACE: 2x, first in line(s) 2, 4" in out
    assert "U+0628 'ب' ARABIC LETTER BEH: 1x, first in line(s) 4" in out


def test_abbreviation_keys_need_a_mark():
    with pytest.raises(ValueError, match="must contain '.' or '/'"):
        normalize("ኢትዮ", extra_abbreviations={"ኢትዮ": "ኢትዮጵያ"})
