"""python -m amh.text: normalise (default) or phonemise (--g2p BACKEND) stdin lines to stdout, or
print a corpus report (--report): lines, lines changed by normalisation, numbers, unknown characters,
abbreviations the table lacks (a slash between Ethiopic letters: its slash is read as a space) and the
slash/hyphen forms the normalised text still has.

    python -m amh.text < corpus.txt > normalised.txt
    python -m amh.text --g2p hybrid < corpus.txt
    python -m amh.text --report < corpus.txt
"""
from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from amh.text.frontend import FrontendSettings, TextFrontend
from amh.text.g2p import BACKENDS
from amh.text.normalize import LATIN_LETTER, LATIN_MODES, unexpanded_abbreviations
from amh.text.numbers import ETHIOPIC_NUMERAL_CHARS

BATCH = 512  # lines per G2P batch (espeak runs one process per batch)
_ETHIOPIC_BLOCKS = ((0x1200, 0x139F), (0x2D80, 0x2DDF), (0xAB00, 0xAB2F), (0x1E7E0, 0x1E7FF))
_LATIN = re.compile(f"[{LATIN_LETTER}]")
_NUMBER = re.compile(f"[0-9]+(?:[.,][0-9]+)*|[{ETHIOPIC_NUMERAL_CHARS}]+")
_FIRST_LINES = 5
_MOST_COMMON = 20
# A slash, hyphen or minus attached to a letter or digit (3-4, ሰዶ/ር, covid-19); a dash between
# spaces is punctuation and not counted.
_MARKED_FORM = re.compile(r"\S*\w[/\-\u2212\u2013]\S*|\S*[/\-\u2212\u2013]\w\S*")


def known_character(ch: str) -> bool:
    """Ethiopic, Latin letters, ASCII, punctuation and whitespace; anything else is worth a look."""
    cp = ord(ch)
    return (
        ch.isascii()
        or any(lo <= cp <= hi for lo, hi in _ETHIOPIC_BLOCKS)
        or bool(_LATIN.match(ch))
        or unicodedata.category(ch)[0] in "PZ"
        or ch.isspace()
    )


@dataclass
class CorpusReport:
    lines: int = 0
    changed: int = 0
    numbers: Counter = field(default_factory=Counter)  # "digits" / "Ethiopic numerals" -> count
    number_lines: int = 0
    unknown: Counter = field(default_factory=Counter)
    first_lines: dict[str, list[int]] = field(default_factory=dict)
    unexpanded: Counter = field(default_factory=Counter)  # abbreviation-like words the table lacks
    unexpanded_lines: int = 0
    marked: Counter = field(default_factory=Counter)  # slash/hyphen forms left in the normalised text
    marked_lines: int = 0
    form_lines: dict[str, list[int]] = field(default_factory=dict)

    def _seen(self, form: str, number: int) -> None:
        seen = self.form_lines.setdefault(form, [])
        if len(seen) < _FIRST_LINES and (not seen or seen[-1] != number):
            seen.append(number)

    def add(self, number: int, line: str, normalised: str, unexpanded: Iterable[str] = ()) -> None:
        """Count one line; `unexpanded`: its words with a slash that no abbreviation covers."""
        unexpanded = list(unexpanded)
        self.unexpanded.update(unexpanded)
        self.unexpanded_lines += bool(unexpanded)
        marked = _MARKED_FORM.findall(normalised)
        self.marked.update(marked)
        self.marked_lines += bool(marked)
        for form in unexpanded + marked:
            self._seen(form, number)
        self.lines += 1
        self.changed += line != normalised
        found = _NUMBER.findall(line)
        self.number_lines += bool(found)
        for n in found:
            self.numbers["digits" if n[0].isdigit() else "Ethiopic numerals"] += 1
        for ch in line:
            if not known_character(ch):
                self.unknown[ch] += 1
                seen = self.first_lines.setdefault(ch, [])
                if len(seen) < _FIRST_LINES and (not seen or seen[-1] != number):
                    seen.append(number)

    def __str__(self) -> str:
        share = self.changed / self.lines if self.lines else 0.0
        out = [
            f"lines: {self.lines}",
            f"lines changed by normalisation: {self.changed} ({share:.1%})",
            f"numbers: {sum(self.numbers.values())} in {self.number_lines} lines "
            f"({self.numbers['digits']} in digits, {self.numbers['Ethiopic numerals']} in Ethiopic numerals)",
            f"unknown characters (not Ethiopic, Latin, digits or punctuation): {len(self.unknown)}",
        ]
        for ch, count in self.unknown.most_common():
            name = unicodedata.name(ch, "unnamed")
            lines = ", ".join(map(str, self.first_lines[ch]))
            out.append(f"  U+{ord(ch):04X} {ch!r} {name}: {count}x, first in line(s) {lines}")
        out.append(
            f"unexpanded abbreviations (slash between Ethiopic letters, not in the table; read as a space): "
            f"{sum(self.unexpanded.values())} in {self.unexpanded_lines} lines, {len(self.unexpanded)} distinct"
        )
        out += self._forms(self.unexpanded)
        out.append(
            f"slash/hyphen/minus forms left in the normalised text: {sum(self.marked.values())} in "
            f"{self.marked_lines} lines, {len(self.marked)} distinct"
        )
        out += self._forms(self.marked)
        return "\n".join(out)

    def _forms(self, counter: Counter) -> list[str]:
        return [
            f"  {form}: {count}x, first in line(s) {', '.join(map(str, self.form_lines[form]))}"
            for form, count in counter.most_common(_MOST_COMMON)
        ]


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(lines)
    while batch := list(islice(it, size)):
        yield batch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m amh.text", description=__doc__.split("\n\n")[0])
    p.add_argument("--g2p", choices=BACKENDS, help="phonemise (IPA) with this backend after normalising")
    p.add_argument("--report", action="store_true", help="print a corpus report instead of the text")
    p.add_argument("--no-homophones", action="store_true", help="keep ሐ ኀ ኸ ሠ ዐ ፀ as written")
    p.add_argument("--no-numbers", action="store_true", help="keep digits and Ethiopic numerals")
    p.add_argument("--no-abbreviations", action="store_true", help="keep abbreviations (ዶ/ር, ዓ.ም ...)")
    p.add_argument("--latin", choices=LATIN_MODES, default="keep", help="keep or drop Latin letters")
    p.add_argument("--keep-case", action="store_true", help="do not lower-case Latin letters")
    p.add_argument("--abbreviations", metavar="TSV", help="extra abbreviations (abbreviation<TAB>expansion)")
    args = p.parse_args(argv)

    settings = FrontendSettings(
        homophones=not args.no_homophones,
        g2p=args.g2p,
        expand_numbers=not args.no_numbers,
        expand_abbreviations=not args.no_abbreviations,
        latin=args.latin,
        lowercase_latin=not args.keep_case,
        extra_abbreviations=args.abbreviations or (),
    )
    frontend = TextFrontend(settings)
    lines = (line.rstrip("\n") for line in sys.stdin)
    if args.report:
        report = CorpusReport()
        extra = dict(settings.extra_abbreviations)
        for number, line in enumerate(lines, 1):
            unexpanded = unexpanded_abbreviations(line, extra) if settings.expand_abbreviations else ()
            report.add(number, line, frontend.normalize(line), unexpanded)
        print(report)
        return 0
    for batch in _batches(lines, BATCH):
        sys.stdout.write("".join(out + "\n" for out in frontend.batch(batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
