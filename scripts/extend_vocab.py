#!/usr/bin/env python3
"""Extend an XTTS vocab.json for Amharic (modes chars, bpe, ipa) without moving any existing id; print the report.

    python scripts/extend_vocab.py --base-vocab XTTS/vocab.json --corpus ready/metadata_train.csv --out vocab_am.json
    python scripts/extend_vocab.py --release coqui/XTTS-v2 --corpus ready/metadata_train.csv --out vocab_am.json
    python scripts/extend_vocab.py --base-vocab XTTS/vocab.json --corpus corpus.txt --out vocab_am.json --mode bpe --bpe-size 2000
    python scripts/extend_vocab.py --base-vocab XTTS/vocab.json --corpus parquet/train --out vocab_ipa.json --mode ipa --g2p hybrid
"""
import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.text.frontend import FrontendSettings  # noqa: E402
from amh.text.g2p import BACKENDS  # noqa: E402
from amh.xtts.vocab import MODES, extend_vocab  # noqa: E402
from amh.xtts.language import load_frontend_settings  # noqa: E402


def read_corpus(path: Path, text_column: str = "text") -> list[str]:
    """Sentences from a text file (one per line), a `audio_file|text|speaker_name` metadata CSV, or a
    directory of parquet files with a text column."""
    if path.is_dir():
        import pyarrow.parquet as pq

        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{path}: no *.parquet files; pass a text file, a metadata CSV or a parquet folder")
        texts = []
        for f in files:
            names = pq.read_schema(f).names
            if text_column not in names:
                raise ValueError(f"{f}: no column {text_column!r} (columns: {names}); choose one with --text-column")
            texts += pq.read_table(f, columns=[text_column]).column(text_column).to_pylist()
        return [t for t in texts if t]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such corpus file or folder")
    with path.open(encoding="utf-8", newline="") as f:
        first = f.readline()
        if "|" in first:
            header = first.rstrip("\r\n").split("|")
            if text_column not in header:
                raise ValueError(
                    f"{path}: a '|' CSV needs a header naming a {text_column!r} column "
                    f"(like audio_file|text|speaker_name), got {header}"
                )
            rows = csv.DictReader(f, fieldnames=header, delimiter="|")  # pandas.to_csv quoting, as the webui writes
            return [row[text_column] for row in rows if row.get(text_column)]
        return [line.strip() for line in [first, *f] if line.strip()]


def resolve_base_vocab(base: str, revision: str | None = None) -> Path:
    """A vocab.json path, a release folder's vocab.json, or a Hub release's vocab.json (downloaded alone:
    extending the vocab needs 2 MB of the release, not its 1.8 GB model; training downloads the rest)."""
    path = Path(base).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / "vocab.json").is_file():
            raise FileNotFoundError(f"--base-vocab {base}: a folder without vocab.json (an XTTS release holds one)")
        return path / "vocab.json"
    if base.count("/") == 1 and not base.startswith((".", "/", "~")):
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                            RevisionNotFoundError)

        try:
            return Path(hf_hub_download(repo_id=base, filename="vocab.json", revision=revision))
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, LocalEntryNotFoundError) as err:
            raise FileNotFoundError(f"--base-vocab {base}: no vocab.json from the Hub ({type(err).__name__}: "
                                    f"{str(err).splitlines()[0]}); check the repo id, --revision and the network, "
                                    "or pass a local vocab.json") from None
    raise FileNotFoundError(f"--base-vocab {base}: neither a vocab.json, a release folder, nor a Hub repo id "
                            "like coqui/XTTS-v2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-vocab", "--release", dest="base_vocab", required=True,
                        help="the release's vocab.json, a release folder, or a Hub repo id such as coqui/XTTS-v2 "
                             "(only its vocab.json is downloaded)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) when --base-vocab is a repo id")
    parser.add_argument("--corpus", required=True, type=Path, nargs="+",
                        help="one or more text files, metadata CSVs (audio_file|text|speaker_name) or parquet folders "
                             "(give train and eval, so that no eval text meets an unknown character)")
    parser.add_argument("--out", required=True, type=Path, help="extended vocab.json to write")
    parser.add_argument("--mode", choices=MODES, default="chars", help="what to add (default: %(default)s)")
    parser.add_argument("--g2p", choices=BACKENDS,
                        help="phonemise the corpus with this backend (mode ipa: default hybrid)")
    parser.add_argument("--bpe-size", type=int, default=2000, help="size of the BPE trained on the corpus (bpe, ipa)")
    parser.add_argument("--frontend", type=Path,
                        help="front-end settings (a frontend.json); --g2p overrides its g2p")
    parser.add_argument("--text-column", default="text", help="text column of a CSV or parquet corpus")
    args = parser.parse_args(argv)

    settings = load_frontend_settings(args.frontend).to_dict() if args.frontend else FrontendSettings().to_dict()
    if args.g2p:
        settings["g2p"] = args.g2p
    elif args.mode == "ipa" and settings["g2p"] is None:
        settings["g2p"] = "hybrid"
    texts = [line for corpus in args.corpus for line in read_corpus(corpus, args.text_column)]
    try:
        base_vocab = resolve_base_vocab(args.base_vocab, revision=args.revision)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = extend_vocab(base_vocab, texts, args.out, mode=args.mode,
                          frontend=FrontendSettings.from_dict(settings), bpe_size=args.bpe_size)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
