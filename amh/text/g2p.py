"""Amharic grapheme-to-phoneme conversion (IPA), one interface over several backends.

    phonemize("ሰላም ለዓለም")                   -> "səlam ləʔaləm"  (hybrid, the default)
    phonemize("ሰላም ለዓለም", backend="rules")  -> "səlam ləʔaləm"
    phonemize_batch(lines, backend="espeak")  -> one espeak-ng process for all lines

Backends (BACKENDS):
  rules       pure Python, from the structure of the syllabary: every Ethiopic letter is a consonant row
              x a vowel order (ə u i a e ɨ o), plus labialised (ʷ) and palatalised (ʲ) forms. Rows and
              orders are read from the letters' Unicode names (ETHIOPIC SYLLABLE QWAA = q + ʷ + a), so
              every letter of the Ethiopic blocks gets a value; Amharic values are used where Amharic
              merged old sounds (ሐ ኀ ኸ -> h, ዐ -> ʔ, ሠ -> s, ፀ -> t͡sʼ; the 1st order of ሀ ሐ ኀ አ ዐ is a,
              as Amharic says it), the sound of the language the letter was added for elsewhere (ቐ qʰ,
              ጘ ŋ, ዸ ɗ, ⶠ ʂ). The 6th order (ɨ or no vowel) is decided by the epenthesis rules of
              `_takes_vowel`.
  epitran     the epitran library's `amh-Ethi` map, as it is (works offline). It leaves letters it has no
              entry for (ቊ ቌ ዸ ...) unconverted, and keeps ɨ after every 6th-order letter but the last.
  hybrid      (default) epitran's consonant and vowel values, with the rules' epenthesis, labialisation,
              vowel orders and glottal stop (epitran writes none: አ = ə, ለዓለም = ləaləm); letters
              epitran leaves unconverted, or spells against the syllabary (ቈ as kʼʷe instead of kʼʷə,
              ኧ as wa), come from the rules. No Ethiopic letter survives it.
  espeak      espeak-ng's Amharic voice (`-v am`), all texts of a batch through one process; stress
              marks dropped and its ejective mark "`" written "ʼ".
  transphone  the optional `transphone` package (pip install 'amh-xtts[transphone]'); it downloads its
              model on first use, so it does not work offline.

Limits of `rules`/`hybrid`, which no spelling-based G2P avoids: gemination is not written in the script
(ዋና "main" and ዋና "swimming" differ only in it), so it is rendered only where the optional mark ፟ is
written; the epenthetic ɨ follows the rules below, not a lexicon, so a few words get one ɨ too many or
too few.
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

BACKENDS = ("hybrid", "rules", "epitran", "espeak", "transphone")
DEFAULT_BACKEND = "hybrid"


class G2PUnavailable(RuntimeError):
    """A backend's program, package or model is missing; the message says how to install it."""


# ------------------------------------------------------------------------------------ the syllabary

# Consonant codes of the Unicode names -> IPA (Amharic values where Amharic merged old sounds).
CONSONANTS = {
    "H": "h", "L": "l", "HH": "h", "M": "m", "SZ": "s", "R": "r", "S": "s", "SH": "ʃ", "Q": "kʼ",
    "QH": "qʰ", "B": "b", "V": "v", "T": "t", "C": "t͡ʃ", "X": "h", "N": "n", "NY": "ɲ", "GLOTTAL": "ʔ",
    "K": "k", "KX": "h", "W": "w", "PHARYNGEAL": "ʔ", "Z": "z", "ZH": "ʒ", "Y": "j", "D": "d", "DD": "ɗ",
    "J": "d͡ʒ", "G": "ɡ", "GG": "ŋ", "TH": "tʼ", "CH": "t͡ʃʼ", "PH": "pʼ", "TS": "t͡sʼ", "TZ": "t͡sʼ",
    "F": "f", "P": "p",
    # Ethiopic Extended/-A: Bench's retroflex series, Gumuz/Gamo implosives and affricates.
    "SS": "ʂ", "CC": "ʈ͡ʂ", "ZZ": "ʐ", "CCH": "ʈ͡ʂʼ", "BB": "ɓ", "DDH": "ɗ", "DZ": "d͡z",
}  # fmt: skip
VOWELS = {"A": "ə", "U": "u", "I": "i", "AA": "a", "EE": "e", "E": "ɨ", "O": "o"}
SIXTH = "E"  # the 6th order: ɨ or no vowel at all
SECONDARY = {"W": "ʷ", "Y": "ʲ"}
# Amharic says the 1st order of the laryngeal rows as a, like their 4th: ሀ = ሃ = ha, አ = ኣ = ʔa (ኸ, a
# velar in Ge'ez spelling, keeps ə; ኧ, GLOTTAL WA, is the interjection's ʔə).
LARYNGEALS = frozenset({"H", "HH", "X", "GLOTTAL", "PHARYNGEAL"})
GLOTTALS = frozenset({"GLOTTAL", "PHARYNGEAL"})  # the "vowel letters" አ ዐ rows: ʔ + vowel
# Amharic reads ኧ (GLOTTAL WA) as ʔə, in interjections like ኧረ.
OVERRIDES = {"ኧ": ("GLOTTAL", "", "A")}
ETHIOPIC_LETTER_RANGES = ((0x1200, 0x135A), (0x1380, 0x138F), (0x2D80, 0x2DDF), (0xAB00, 0xAB2F), (0x1E7E0, 0x1E7FF))
GEMINATION, VOWEL_LENGTH, GEMINATION_AND_LENGTH = "\u135f", "\u135e", "\u135d"
_WORD = re.compile("[\u1200-\u135f\u1380-\u138f\u2d80-\u2ddf\uab00-\uab2f\U0001e7e0-\U0001e7ff]+")
_CODES = sorted(CONSONANTS, key=len, reverse=True)


@dataclass(frozen=True)
class Letter:
    """What a letter's position in the syllabary says: consonant code, ʷ/ʲ, vowel order code."""

    code: str
    secondary: str
    order: str


@dataclass(frozen=True)
class Segment:
    """A letter's sound: consonant (may be "" for a vowel letter) + vowel; `sixth`: the vowel is ɨ or none."""

    consonant: str
    vowel: str
    sixth: bool = False
    geminate: bool = False
    long: bool = False


def ethiopic_letters() -> list[str]:
    """Every assigned letter (not numeral, punctuation or mark) of the Ethiopic blocks."""
    return [
        chr(cp)
        for lo, hi in ETHIOPIC_LETTER_RANGES
        for cp in range(lo, hi + 1)
        if unicodedata.category(chr(cp)) == "Lo"
    ]


def parse_letter(ch: str) -> Letter | None:
    """Read a letter's Unicode name as consonant x order: ቋ QWAA -> Letter("Q", "ʷ", "AA").

    Unicode writes the 1st order as A and the 4th as AA, except in the 8th column of the main block's
    plain rows (ሏ LWA, ሟ MWA), where WA is lʷa; OA is the same labialised a (ሇ HOA = hʷa).
    None for a letter whose consonant code is not in CONSONANTS.
    """
    if ch in OVERRIDES:
        return Letter(*OVERRIDES[ch])
    name = unicodedata.name(ch, "")
    if not name.startswith("ETHIOPIC SYLLABLE "):
        return None
    words = name.removeprefix("ETHIOPIC SYLLABLE ").split()
    if words[0] in ("GLOTTAL", "PHARYNGEAL"):
        code, rest = words[0], words[-1]
    else:
        syllable = words[-1]  # "SEBATBEIT MWA", "GURAGE QWI": the qualifier is not a sound
        code = next((c for c in _CODES if syllable.startswith(c) and len(syllable) > len(c)), None)
        if code is None:
            return None
        rest = syllable[len(code) :]
    secondary = ""
    if rest == "OA":
        secondary, rest = "ʷ", "AA"
    elif rest[0] in SECONDARY and rest[1:] in VOWELS:
        secondary, rest = SECONDARY[rest[0]], rest[1:]
        if secondary == "ʷ" and rest == "A" and 0x1200 <= ord(ch) <= 0x135A and ord(ch) % 8 == 7:
            rest = "AA"
    if rest not in VOWELS:
        return None
    return Letter(code, secondary, rest)


@functools.lru_cache(maxsize=1)
def rules_table() -> Mapping[str, Segment]:
    """Every Ethiopic letter -> its Segment by the rules. A letter whose name does not parse keeps its
    name's romanisation (ASCII), so that no Ethiopic letter is ever left unconverted."""
    table = {}
    for ch in ethiopic_letters():
        letter = parse_letter(ch)
        if letter is None:
            table[ch] = Segment(unicodedata.name(ch).split()[-1].lower(), "")
        else:
            vowel = VOWELS[letter.order]
            if letter.order == "A" and not letter.secondary and letter.code in LARYNGEALS and ch not in OVERRIDES:
                vowel = VOWELS["AA"]
            table[ch] = Segment(CONSONANTS[letter.code] + letter.secondary, vowel, sixth=letter.order == SIXTH)
    return MappingProxyType(table)  # cached and shared: read-only


# ------------------------------------------------------------------------------------------ epenthesis

_SONORANTS = frozenset("wjlrmnɲŋ")


def _obstruent(consonant: str) -> bool:
    return consonant[:1] not in _SONORANTS  # stops, fricatives, affricates (incl. h and ʔ)


def _takes_vowel(segs: Sequence[Segment]) -> list[bool]:
    """Which 6th-order letters of a word are said with ɨ; the others are bare consonants.

    Amharic syllables are (C)V(C), word-finally (C)V(C)(C), and ɨ is inserted where the consonants
    would not fit. The word is syllabified from its end, which matches the language's usual choices:
    1. a glottal 6th order (እ, ዕ) and a geminated one (marked ፟, not final) always sound: እንደ ʔɨndə;
    2. a word-final consonant is a coda, two if the last is an obstruent (stop, fricative, affricate):
       ሰላም səlam, ልብስ lɨbs, ትምህርት tɨmhɨrt, አምስት ʔəmɨst; but ክፍል kɨfɨl, እንደምን ʔɨndəmɨn;
    3. a coda belongs to the vowel before it, or, after another bare consonant, that consonant takes ɨ:
       ብርሃን bɨrhan, ክርስቶስ kɨrɨstos, ምክንያት mɨkɨnjat;
    4. but after a vowel + two consonants the first closes that syllable and the second takes ɨ:
       እንግሊዝኛ ʔɨnɡɨlizɲa, አንድነት ʔəndɨnət;
    5. the first consonant of a word always takes ɨ before another (no initial clusters): ስም sɨm;
       a one-letter word keeps its ɨ; a consonant before a vowel letter (hybrid's እ = ɨ) is its onset.
    """
    n = len(segs)

    def bare(k: int) -> bool:
        s = segs[k]
        return s.sixth and s.consonant not in ("", "ʔ") and not (s.geminate and k < n - 1)

    def nucleus(k: int) -> bool:
        return 0 <= k and not bare(k)

    def next_after_nucleus(k: int) -> int:
        # A bare consonant right before a consonant-less vowel letter is its onset.
        return k - 2 if segs[k].consonant == "" and k >= 1 and bare(k - 1) else k - 1

    vowel = [s.sixth and not bare(k) for k, s in enumerate(segs)]
    i = n - 1
    while i >= 0:
        if not bare(i):
            i = next_after_nucleus(i)
            continue
        start = i - 1 if i == n - 1 and i >= 1 and bare(i - 1) and _obstruent(segs[i].consonant) else i
        j = start - 1
        if j < 0:
            vowel[start] = True
            i = -1
        elif nucleus(j):
            i = next_after_nucleus(j)
        elif start == i < n - 1 and nucleus(j - 1):
            vowel[i] = True
            i = j
        else:
            vowel[j] = True
            i = j - 1
    return vowel


def _word_ipa(segs: Sequence[Segment]) -> str:
    out = []
    for seg, said in zip(segs, _takes_vowel(segs)):
        vowel = seg.vowel if (said or not seg.sixth) else ""
        out.append(seg.consonant + ("ː" if seg.geminate else "") + vowel + ("ː" if seg.long and vowel else ""))
    return "".join(out)


def _segments(word: str, table: Mapping[str, Segment]) -> list[Segment]:
    """Letters with their combining marks (፟ gemination, ፞ vowel length) as Segments."""
    segs: list[Segment] = []
    for ch in word:
        if ch in (GEMINATION, VOWEL_LENGTH, GEMINATION_AND_LENGTH):
            if segs:
                segs[-1] = replace(
                    segs[-1],
                    geminate=segs[-1].geminate or ch != VOWEL_LENGTH,
                    long=segs[-1].long or ch != GEMINATION,
                )
        elif ch in table:
            segs.append(table[ch])
    return segs


class SyllabaryBackend:
    """Letter table + epenthesis; `rules` and `hybrid` differ only in their table."""

    def __init__(self, name: str, table: Mapping[str, Segment]):
        self.name, self.table = name, table

    def phonemize(self, text: str) -> str:
        return _WORD.sub(lambda m: _word_ipa(_segments(m.group(), self.table)), text)

    def phonemize_batch(self, texts: Sequence[str]) -> list[str]:
        return [self.phonemize(t) for t in texts]


# --------------------------------------------------------------------------------------------- epitran

_IPA_VOWELS = "əuiaeɨo"
_ETHIOPIC_ANY = re.compile("[\u1200-\u137f\u1380-\u139f\u2d80-\u2ddf\uab00-\uab2f\U0001e7e0-\U0001e7ff]")


@functools.lru_cache(maxsize=1)
def _epitran():
    """epitran's `amh-Ethi` converter, built once per process (construction takes ~3 s: panphon tables)."""
    try:
        import epitran
    except ImportError as e:
        raise G2PUnavailable("the epitran backend needs the epitran package: pip install epitran") from e
    return epitran.Epitran("amh-Ethi")


class EpitranBackend:
    """epitran's `amh-Ethi` map, unchanged."""

    name = "epitran"

    def phonemize(self, text: str) -> str:
        return _epitran().transliterate(text)

    def phonemize_batch(self, texts: Sequence[str]) -> list[str]:
        return [self.phonemize(t) for t in texts]


_GLIDES = {"ʷ": "w", "ʲ": "j"}


def _with_secondary(consonant: str, secondary: str) -> str | None:
    """epitran writes some labialised consonants "sw", "nw": make them "sʷ"; None if they disagree."""
    ascii_mark = _GLIDES.get(secondary)
    if not secondary:
        return None if consonant.endswith(("ʷ", "ʲ")) else consonant
    if consonant.endswith(secondary):
        return consonant
    if len(consonant) > 1 and consonant.endswith(ascii_mark):
        return consonant[:-1] + secondary
    return None


def hybrid_table(transliterate) -> Mapping[str, Segment]:
    """The rules' table with epitran's values wherever epitran agrees with the syllabary.

    `transliterate(letter) -> str` is epitran's map (its post-processing drops a lone 6th-order letter's
    ɨ, "ብ" -> "b", which is read back as b + ɨ). A letter takes epitran's
    consonant if epitran converts it with the vowel of its order; otherwise the consonant epitran gives
    the plain 1st-order letter of its row (so ኧ follows አ, and ቊ follows ቀ); otherwise the rules' value.
    """
    rules = rules_table()
    letters = {ch: parse_letter(ch) for ch in rules}

    def split(ipa: str, sixth: bool) -> tuple[str, str] | None:
        if not ipa or _ETHIOPIC_ANY.search(ipa):
            return None
        if ipa[-1] in _IPA_VOWELS:
            return ipa[:-1], ipa[-1]
        return (ipa, "ɨ") if sixth else None

    row_consonant = {}
    for ch, letter in letters.items():
        if letter and not letter.secondary and letter.order == "A" and (parsed := split(transliterate(ch), False)):
            row_consonant.setdefault(letter.code, parsed[0])
    table = {}
    for ch, letter in letters.items():
        rule = rules[ch]
        parsed = split(transliterate(ch), rule.sixth)
        consonant = None
        if letter and letter.code in GLOTTALS:
            # epitran writes no glottal stop (አ = ə): Amharic has one before every vowel letter, also
            # inside a word after a proclitic (ለዓለም ləʔaləm, not the hiatus ləaləm).
            table[ch] = rule
            continue
        if letter and parsed and parsed[1] == rule.vowel:
            consonant = _with_secondary(parsed[0], letter.secondary)
        if consonant is None and letter and letter.code in row_consonant:
            row = row_consonant[letter.code]
            # A vowel letter's glide is a full consonant: ⶊ (GLOTTAL OA) is wa, not ʷa.
            consonant = row + (letter.secondary if row else _GLIDES.get(letter.secondary, ""))
        table[ch] = rule if consonant is None else replace(rule, consonant=consonant)
    return MappingProxyType(table)


def _hybrid_backend() -> SyllabaryBackend:
    return SyllabaryBackend("hybrid", hybrid_table(_epitran().transliterate))


# ---------------------------------------------------------------------------------------------- espeak

# Punctuation stays ours: espeak drops it, and it carries prosody for XTTS.
_PUNCT_SPLIT = re.compile(r"([^\w\s]+)")
_ETHIOPIC_MARKS = re.compile("[\u135d-\u135f]")  # espeak ignores them; \w does not cover them
_LANG_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)?\)")


class EspeakBackend:
    """espeak-ng's Amharic voice. A batch is one process: every text is split at punctuation, the pieces
    go to espeak as blank-line separated paragraphs (one output paragraph each), then are rejoined."""

    name = "espeak"

    def __init__(self, voice: str = "am"):
        self.binary = shutil.which("espeak-ng") or shutil.which("espeak")
        if self.binary is None:
            raise G2PUnavailable(
                "the espeak backend needs espeak-ng: apt-get install espeak-ng (or brew install espeak-ng); "
                "or use backend='hybrid' (the default) or 'rules', which need nothing installed"
            )
        voices = subprocess.run([self.binary, f"--voices={voice}"], capture_output=True, text=True).stdout
        if not any(line.split()[1:2] == [voice] for line in voices.splitlines()[1:]):
            raise G2PUnavailable(f"{self.binary} has no voice {voice!r}; install espeak-ng's language data")
        self.voice = voice

    def _run(self, pieces: list[str]) -> list[str]:
        if not pieces:
            return []
        result = subprocess.run(
            [self.binary, "-q", "--ipa", "-v", self.voice],
            input="\n\n".join(pieces) + "\n",
            capture_output=True,
            text=True,
            check=True,
        )
        paragraphs = [p for p in re.split(r"\n\s*\n", result.stdout.strip("\n"))]
        if len(paragraphs) != len(pieces):
            raise RuntimeError(f"espeak-ng returned {len(paragraphs)} paragraphs for {len(pieces)} inputs")
        return [_clean_espeak(p) for p in paragraphs]

    def phonemize_batch(self, texts: Sequence[str]) -> list[str]:
        parts = [_PUNCT_SPLIT.split(_ETHIOPIC_MARKS.sub("", t)) for t in texts]
        spoken = [p.strip() for ps in parts for p in ps[0::2] if p.strip()]
        ipa = iter(self._run(spoken))
        out = []
        for ps in parts:
            pieces = []
            for k, piece in enumerate(ps):
                if k % 2 == 1 or not piece.strip():
                    pieces.append(piece)  # punctuation, or whitespace only
                else:
                    lead, trail = piece[: len(piece) - len(piece.lstrip())], piece[len(piece.rstrip()) :]
                    pieces.append(lead + next(ipa) + trail)
            out.append(re.sub(r"\s+", " ", "".join(pieces)).strip())
        return out

    def phonemize(self, text: str) -> str:
        return self.phonemize_batch([text])[0]


def _clean_espeak(ipa: str) -> str:
    ipa = _LANG_SWITCH.sub("", ipa)
    ipa = ipa.replace("ˈ", "").replace("ˌ", "").replace("`", "ʼ")
    return " ".join(ipa.split())


# ------------------------------------------------------------------------------------------ transphone

_TRANSPHONE_HELP = (
    "install it with `pip install 'amh-xtts[transphone]'` and run it once online (it downloads its "
    "model on first use), or use backend='hybrid' (the default), 'rules', 'epitran' or 'espeak', which work offline"
)


class TransphoneBackend:
    """transphone's Amharic G2P, word by word (Ethiopic runs only; the rest is kept)."""

    name = "transphone"

    def __init__(self):
        try:
            from transphone import read_tokenizer
        except ImportError as e:
            raise G2PUnavailable(f"the transphone backend needs the optional package: {_TRANSPHONE_HELP}") from e
        try:
            self._tokenizer = read_tokenizer("amh")
        except Exception as e:  # noqa: BLE001 - any failure here is "model not available"; the cause is chained
            raise G2PUnavailable(f"transphone could not load its Amharic model ({e}): {_TRANSPHONE_HELP}") from e

    def phonemize(self, text: str) -> str:
        return _WORD.sub(lambda m: "".join(self._tokenizer.tokenize(m.group())), text)

    def phonemize_batch(self, texts: Sequence[str]) -> list[str]:
        return [self.phonemize(t) for t in texts]


# ------------------------------------------------------------------------------------------------- API

_FACTORIES = {
    "rules": lambda: SyllabaryBackend("rules", rules_table()),
    "hybrid": _hybrid_backend,
    "epitran": EpitranBackend,
    "espeak": EspeakBackend,
    "transphone": TransphoneBackend,
}


@functools.lru_cache(maxsize=None)
def get_backend(name: str = DEFAULT_BACKEND):
    """The backend object for `name`, built once per process (epitran takes seconds to load)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown G2P backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return _FACTORIES[name]()


def phonemize(text: str, backend: str = DEFAULT_BACKEND) -> str:
    """IPA for `text`; characters that are not Ethiopic letters (spaces, punctuation, Latin) are kept."""
    return get_backend(backend).phonemize(text)


def phonemize_batch(texts: Sequence[str], backend: str = DEFAULT_BACKEND) -> list[str]:
    """IPA for many texts at once (espeak: one process for the whole batch)."""
    return get_backend(backend).phonemize_batch(list(texts))
