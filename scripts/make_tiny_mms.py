#!/usr/bin/env python3
"""Write a tiny, randomly initialised MMS-style recogniser (the facebook/mms-1b-all file layout, an
"amh" adapter) for offline tests and the demo's speech eval: `eval.asr_model=build/fixtures/tiny_mms`."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.fixtures.tiny_mms import make_tiny_mms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="directory to write (replaced atomically)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = make_tiny_mms(args.out, seed=args.seed)
    print(f"{out}: " + ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))


if __name__ == "__main__":
    main()
