"""Amharic G2P backends (amh/text/g2p.py) and the text front-end that runs them (amh/text/frontend.py)."""
import re
import shutil
import subprocess
import unicodedata

import pytest

from amh.text import g2p
from amh.text.frontend import FrontendSettings, TextFrontend
from amh.text.g2p import G2PUnavailable, get_backend, parse_letter, phonemize, phonemize_batch

ETHIOPIC = re.compile("[\u1200-\u137f\u1380-\u139f\u2d80-\u2ddf\uab00-\uab2f\U0001e7e0-\U0001e7ff]")
BLOCK_LETTERS = [chr(c) for c in range(0x1200, 0x1380) if unicodedata.category(chr(c)) == "Lo"]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def hybrid():
    return get_backend("hybrid")  # builds epitran once (~3 s)


# ------------------------------------------------------------------------------------- every letter


@pytest.mark.parametrize("backend", ["rules", "hybrid"])
def test_every_letter_of_the_block_maps_to_ipa(backend, hybrid):
    assert len(BLOCK_LETTERS) == 326  # U+1200-U+137F: rows x 7 orders + labialised forms (Unicode 14)
    for letter in BLOCK_LETTERS:
        ipa = phonemize(letter, backend)
        assert ipa and not ETHIOPIC.search(ipa), (letter, unicodedata.name(letter), ipa)


@pytest.mark.parametrize("backend", ["rules", "hybrid"])
def test_no_ethiopic_letter_survives_any_block(backend, hybrid):
    letters = "".join(g2p.ethiopic_letters())
    assert not ETHIOPIC.search(phonemize(letters, backend))


def test_every_block_letter_parses_as_consonant_and_order():
    unparsed = [unicodedata.name(c) for c in BLOCK_LETTERS if parse_letter(c) is None]
    assert unparsed == []


@pytest.mark.parametrize(
    "letter, ipa",
    [
        ("ሀ", "ha"), ("ሁ", "hu"), ("ሂ", "hi"), ("ሃ", "ha"), ("ሄ", "he"), ("ሆ", "ho"),
        ("ቀ", "kʼə"), ("ጨ", "t͡ʃʼə"), ("ጸ", "t͡sʼə"), ("ኘ", "ɲə"), ("አ", "ʔa"), ("ዐ", "ʔa"), ("ሐ", "ha"), ("ኀ", "ha"), ("ኸ", "hə"),
        ("ቋ", "kʼʷa"), ("ኳ", "kʷa"), ("ጓ", "ɡʷa"), ("ኋ", "hʷa"), ("ሏ", "lʷa"), ("ሟ", "mʷa"), ("ቧ", "bʷa"),
        ("ቈ", "kʼʷə"), ("ቊ", "kʼʷi"), ("ቌ", "kʼʷe"), ("ኰ", "kʷə"), ("ጐ", "ɡʷə"), ("ጒ", "ɡʷi"),
        ("ኧ", "ʔə"), ("ቐ", "qʰə"), ("ጘ", "ŋə"), ("ዸ", "ɗə"), ("ፙ", "mʲə"), ("ሇ", "hʷa"),
    ],
)  # fmt: skip
def test_rules_letter_values(letter, ipa):
    assert phonemize(letter, "rules") == ipa


# ------------------------------------------------------------------------------------------- epenthesis


@pytest.mark.parametrize(
    "word, ipa",
    [
        ("ሰላም", "səlam"),  # a final 6th order is a coda
        ("ስም", "sɨm"),  # no word-initial clusters
        ("ልብስ", "lɨbs"),  # two final consonants when the last is an obstruent
        ("ቅርብ", "kʼɨrb"),
        ("መስክ", "məsk"),
        ("ትምህርት", "tɨmhɨrt"),
        ("አምስት", "ʔamɨst"),
        ("ስድስት", "sɨdɨst"),
        ("ክፍል", "kɨfɨl"),  # ... but not when it is a sonorant
        ("እንደምን", "ʔɨndəmɨn"),
        ("ብርሃን", "bɨrhan"),  # a coda after a bare consonant: that one takes ɨ
        ("ክርስቶስ", "kɨrɨstos"),
        ("ምክንያት", "mɨkɨnjat"),
        ("እንግሊዝኛ", "ʔɨnɡɨlizɲa"),  # vowel + two consonants: the first closes the syllable
        ("አንድነት", "ʔandɨnət"),
        ("ኢትዮጵያ", "ʔitjopʼja"),
        ("ሰውነት", "səwnət"),
        ("ቋንቋ", "kʼʷankʼʷa"),
        ("እ", "ʔɨ"),  # the glottal 6th order always sounds
    ],
)
def test_rules_epenthesis(word, ipa):
    assert phonemize(word, "rules") == ipa


def test_gemination_and_length_marks():
    assert phonemize("ዋ\u135fና", "rules") == "wːana"
    assert phonemize("ሰ\u135eው", "rules") == "səːw"


def test_non_letters_pass_through():
    assert phonemize("ሰላም, WhatsApp 3?", "rules") == "səlam, WhatsApp 3?"


# ----------------------------------------------------------------------------------------------- hybrid


def test_hybrid_takes_epitrans_values_with_the_rules_structure(hybrid):
    assert hybrid.phonemize("ኸ") == "xə"  # epitran's x where the rules use Amharic h
    assert hybrid.phonemize("ቈ ሧ ቊ") == "kʼʷə sʷa kʼʷi"  # epitran: kʼʷe, swa, unconverted
    assert hybrid.phonemize("ትምህርት") == "tɨmhɨrt"  # the rules' epenthesis, not epitran's


def test_laryngeal_first_order_is_a_and_vowel_letters_keep_their_glottal_stop(hybrid):
    # Amharic says ሀ ሐ ኀ አ ዐ like ሃ ሓ ኃ ኣ ዓ (ha, ʔa), and a vowel letter starts with ʔ, also after a
    # proclitic inside a word: ለዓለም is ləʔaləm, not the hiatus ləaləm (espeak-ng agrees on all three).
    for backend in ("hybrid", "rules"):
        assert phonemize("ሀገር ሐረር ኀይል", backend) == "haɡər harər hajɨl"
        assert phonemize("አበበ ዐይን ሃያ ኣለ", backend) == "ʔabəbə ʔajɨn haja ʔalə"
        assert phonemize("ሰላም ለዓለም የአገር", backend) == "səlam ləʔaləm jəʔaɡər"
    assert phonemize("ኧረ", "hybrid") == "ʔərə"  # GLOTTAL WA: the interjection's ʔə
    assert phonemize("እንደ", "hybrid") == "ʔɨndə"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_hybrid_agrees_with_espeak_on_laryngeals_and_glottal_stops(hybrid):
    words = ["ሀገር", "ለዓለም", "ሐረር", "አለ", "የአገር", "ዐይን"]
    assert phonemize_batch(words, "hybrid") == phonemize_batch(words, "espeak")


def test_hybrid_is_the_default_backend(hybrid):
    assert g2p.DEFAULT_BACKEND == "hybrid"
    assert phonemize("ሰላም") == hybrid.phonemize("ሰላም")


def test_epitran_backend_is_epitran_unchanged(hybrid):
    # epitran's own conventions: ɨ after every 6th order but the last of a word, no glottal stop.
    assert phonemize("ኢትዮጵያ ትልቅ አገር ናት", "epitran") == "itɨjopʼɨja tɨlɨkʼ əɡər nat"
    assert phonemize("ቊ", "epitran") == "ቊ"  # no entry in amh-Ethi: left unconverted (hybrid's job)
    assert get_backend("epitran") is get_backend("epitran")


# ----------------------------------------------------------------------------------------------- espeak


@needs_espeak
def test_espeak_batch_runs_one_process_and_keeps_punctuation(monkeypatch):
    backend = get_backend("espeak")
    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    lines = ["ሰላም, እንዴት ነህ?", "", "ትምህርት ቤት.", "...", "ልጆቹ ኳስ ይጫወታሉ"] * 20
    out = backend.phonemize_batch(lines)
    assert len(calls) == 1
    assert len(out) == len(lines)
    assert out[0].startswith("səlam,") and out[0].endswith("?")
    assert out[1] == "" and out[3] == "..."
    assert not any(ETHIOPIC.search(o) or "ˈ" in o for o in out)


@needs_espeak
def test_phonemize_batch_matches_single_calls_for_every_backend(hybrid):
    texts = ["ሰላም ነው?", "ትምህርት ቤት ሄደ.", "ቋንቋ"]
    for backend in ("rules", "hybrid", "epitran", "espeak"):
        assert phonemize_batch(texts, backend) == [phonemize(t, backend) for t in texts]


# ------------------------------------------------------------------------------------------- transphone


def test_transphone_missing_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_transphone(name, *args, **kwargs):
        if name == "transphone":
            raise ImportError("No module named 'transphone'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transphone)
    with pytest.raises(G2PUnavailable, match=r"pip install 'amh-xtts\[transphone\]'.*backend='hybrid'"):
        g2p.TransphoneBackend()


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="hybrid, rules, epitran, espeak, transphone"):
        phonemize("ሰላም", "festival")


# ---------------------------------------------------------------------------------------------- frontend


def test_frontend_normalises_then_phonemises(hybrid):
    assert TextFrontend(FrontendSettings())("ሰላም፡ለዓለም። 5 ብር") == "ሰላም ለአለም. አምስት ብር"
    rules = TextFrontend(FrontendSettings(g2p="rules"))
    assert rules("ሰላም፡ለዓለም። 5 ብር") == "səlam ləʔaləm. ʔamɨst bɨr"
    assert rules.batch(["ሰላም።", "WhatsApp ላይ"]) == ["səlam.", "whatsapp laj"]
