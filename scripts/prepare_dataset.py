#!/usr/bin/env python3
"""Write any data source as training-ready parquet shards: 22.05 kHz FLAC, normalised text, durations,
token counts, and optionally DVAE codes + prompt mels (--codes-from), in the `datasets` format.

    python scripts/prepare_dataset.py --config configs/amharic_110h.yaml --out data/amharic_prepared \\
        data.path=USER/amharic-speech model.vocab=vocab_extended_amharic.json
    python scripts/prepare_dataset.py --config configs/demo.yaml --out build/demo_prepared \\
        --codes-from build/fixtures/tiny_xtts

The source, columns, splits and filters come from the config's `data` section, the front-end from
`text`, the vocabulary from --vocab / model.vocab / a vocab_extended*.json in a ready folder. A rerun
with the same arguments continues where an interrupted one stopped. Train on the result with
`data.source=parquet data.path=OUT`, or upload it (`huggingface-cli upload USER/NAME OUT --repo-type
dataset`) and use `data.source=hub data.path=USER/NAME data.eval_split=eval`.
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.config import load_config  # noqa: E402
from amh.data.prepare import PrepareOptions, format_report, prepare  # noqa: E402
from amh.text.frontend import FrontendSettings, TextFrontend, canonical_language  # noqa: E402
from amh.xtts.text_encoder import TextEncoder  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML config (its data/text/model sections are used)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (data/<split>-NNNNN.parquet, README.md)")
    parser.add_argument("--vocab", type=Path, help="vocab.json for token counts/filters (default: as train.py chooses)")
    parser.add_argument("--codes-from", type=Path, metavar="RELEASE_DIR",
                        help="precompute DVAE codes and prompt mels with this release's dvae.pth/mel_stats.pth")
    parser.add_argument("--device", default="cpu", help="device for --codes-from (default: %(default)s)")
    parser.add_argument("--rows-per-shard", type=int, default=PrepareOptions.rows_per_shard,
                        help="kept rows per parquet shard (default: %(default)s); more shards = more parallel readers")
    parser.add_argument("--workers", type=int, default=PrepareOptions.workers, help="decoding processes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="fixes each row's prompt slice (with --codes-from)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.path=USER/DATASET")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)

    t = cfg.text
    settings = FrontendSettings(language=canonical_language(t.language), homophones=t.homophones, g2p=t.g2p,
                                expand_numbers=t.expand_numbers, expand_abbreviations=t.expand_abbreviations,
                                latin=t.latin)
    vocab = args.vocab
    if vocab is None:  # as train.py chooses: model.vocab, a vocab_extended*.json in the ready folder, the release's
        from amh.xtts.release import resolve_release
        from amh.xtts.vocab_choice import choose_vocab

        release = args.codes_from or resolve_release(cfg.model.release, revision=cfg.model.revision,
                                                     cache_dir=cfg.model.cache_dir)
        vocab = choose_vocab(cfg, release)
    codec = None
    if args.codes_from is not None:
        from amh.xtts.codes import AudioCodec

        codec = AudioCodec.from_release(args.codes_from, device=args.device)

    opts = PrepareOptions(out=str(args.out), rows_per_shard=args.rows_per_shard, workers=args.workers, seed=args.seed)
    # Only normalisation: G2P (if configured) runs at training time, so the stored text stays readable.
    report = prepare(cfg.data, opts, normalize=TextFrontend(settings).normalize,
                     text_encoder=TextEncoder(vocab, settings), codec=codec,
                     fingerprint={"frontend": settings.to_dict(), "vocab": str(vocab)},
                     progress_bar=not args.no_progress)
    print(format_report(report))
    if not any(r["rows_kept"] for r in report["splits"].values()):
        print("error: no row was kept; see the dropped reasons above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
