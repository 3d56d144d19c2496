#!/usr/bin/env python3
"""Synthesise the offline Amharic demo corpus (espeak-ng voices) as parquet shards and a Coqui "ready" folder."""
import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.fixtures.demo_corpus import DEFAULT_SPEAKERS, make_demo_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="directory to write (replaced atomically; a no-op when up to date)")
    parser.add_argument("--speakers", default=",".join(DEFAULT_SPEAKERS),
                        help="comma-separated espeak-ng voices, 'am' or 'am+<variant>' (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes run at once")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    speakers = tuple(s.strip() for s in args.speakers.split(",") if s.strip())
    out = make_demo_corpus(args.out, speakers=speakers, seed=args.seed, workers=args.workers)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    clips, hours = manifest["clips"], manifest["hours"]
    print(f"{out}: {clips['total']} clips ({clips['train']} train, {clips['eval']} eval), "
          f"{hours['total'] * 60:.1f} min, speakers {', '.join(manifest['speakers'])}, "
          f"{len(manifest['dropped'])} dropped, built in {manifest['build_seconds']} s")


if __name__ == "__main__":
    main()
