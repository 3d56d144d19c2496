#!/usr/bin/env python3
"""Compare the G2P backends on Amharic sentences: pairwise agreement, speed, examples (markdown).

    python scripts/compare_g2p.py                       # the demo corpus sentences, tables to stdout
    python scripts/compare_g2p.py --update docs/g2p.md  # rewrite the generated part of the doc

Every backend reads the same normalised text (amh.text.normalize). Agreement between two backends is
1 - (character edit distance / length of the longer transcription), averaged over sentences, after
removing what only one convention writes: stress marks, tie bars, length marks, punctuation.
"""
import argparse
import os
import re
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.text.g2p import BACKENDS, G2PUnavailable, get_backend  # noqa: E402
from amh.text import normalize  # noqa: E402

BEGIN, END = "<!-- compare_g2p:begin -->", "<!-- compare_g2p:end -->"
_NOT_COMPARED = re.compile(r"[ˈˌ͡ːˑ]|[^\w\s]")
EXAMPLES = 4
_ETHIOPIC_WORD = re.compile("[\u1200-\u135a]+")


def canonical(ipa: str) -> str:
    ipa = _NOT_COMPARED.sub("", unicodedata.normalize("NFD", ipa))
    return " ".join(unicodedata.normalize("NFC", ipa).lower().split())


def edit_distance(a: str, b: str) -> int:
    # A plain Levenshtein: a docs script should not add a dependency for 200 short strings.
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def agreement(xs: list[str], ys: list[str]) -> float:
    scores = []
    for x, y in zip(xs, ys):
        x, y = canonical(x), canonical(y)
        longest = max(len(x), len(y))
        scores.append(1.0 if longest == 0 else 1 - edit_distance(x, y) / longest)
    return sum(scores) / len(scores)


def word_agreement(xs: list[str], ys: list[str]) -> float:
    """Share of words whose two transcriptions are identical after `canonical`."""
    return sum(canonical(x) == canonical(y) for x, y in zip(xs, ys)) / len(xs)


def default_sentences() -> list[str]:
    try:
        from amh.fixtures.demo_corpus import load_sentences
    except ImportError:
        sys.exit("amh.fixtures.demo_corpus is missing; pass --sentences FILE")
    return load_sentences()


def run(sentences: list[str]) -> str:
    text = [normalize(s) for s in sentences]
    results, rows, missing = {}, [], []
    for name in BACKENDS:
        start = time.perf_counter()
        try:
            backend = get_backend(name)
        except G2PUnavailable as e:
            missing.append(f"- `{name}`: not run here ({str(e).split(':')[0]})")
            continue
        load = time.perf_counter() - start
        start = time.perf_counter()
        results[name] = backend.phonemize_batch(text)
        seconds = time.perf_counter() - start
        rows.append(f"| `{name}` | {load:.2f} | {seconds:.3f} | {len(text) / seconds:,.0f} |")

    names = list(results)
    out = [
        f"{len(text)} sentences ({sum(map(len, text)):,} characters after normalisation), "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, one run in one process.",
        "",
        "**Speed** (load = first use in a process, then one batch of all sentences; `hybrid` and `epitran` "
        "share one epitran object, so its load shows once)",
        "",
        "| backend | load (s) | batch (s) | sentences/s |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "**Agreement** (1 - normalised character edit distance, mean over sentences; 1.00 = identical)",
        "",
        "| | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for a in names:
        out.append(f"| `{a}` | " + " | ".join(f"{agreement(results[a], results[b]):.2f}" for b in names) + " |")
    if "espeak" in results:
        words = sorted({w for t in text for w in _ETHIOPIC_WORD.findall(t)})
        out += [
            "",
            f"**Words identical to espeak-ng** ({len(words):,} distinct words of the normalised sentences, each "
            "phonemised alone; same canonical form as above)",
            "",
            "| backend | identical words |",
            "|---|---:|",
        ]
        reference = get_backend("espeak").phonemize_batch(words)
        for name in names:
            if name != "espeak":
                same = word_agreement(get_backend(name).phonemize_batch(words), reference)
                out.append(f"| `{name}` | {same:.1%} |")
    out += ["", "**Examples**", ""]
    for i in range(min(EXAMPLES, len(text))):
        out.append(f"- {text[i]}")
        out += [f"  - `{n}`: {results[n][i]}" for n in names]
    if missing:
        out += ["", *missing]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=Path, help="one sentence per line ('#' comments); default: the demo corpus")
    parser.add_argument("--update", type=Path, help=f"replace the text between {BEGIN} and {END} in this file")
    args = parser.parse_args(argv)
    if args.sentences:
        lines = args.sentences.read_text(encoding="utf-8").splitlines()
        sentences = [s.strip() for s in lines if s.strip() and not s.startswith("#")]
    else:
        sentences = default_sentences()
    tables = run(sentences)
    if args.update:
        doc = args.update.read_text(encoding="utf-8")
        if BEGIN not in doc or END not in doc:
            sys.exit(f"{args.update}: no {BEGIN} ... {END} markers to replace")
        head, rest = doc.split(BEGIN, 1)
        args.update.write_text(f"{head}{BEGIN}\n{tables}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    else:
        print(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
