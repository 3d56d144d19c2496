#!/usr/bin/env python3
"""Write a tiny, randomly initialised XTTS v2 release (real file layout) for offline tests and the demo."""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.fixtures.tiny_xtts import TinySpec, make_tiny_release  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="directory to write (replaced atomically)")
    parser.add_argument("--layers", type=int, default=TinySpec.layers, help="GPT layers (the real model has 30)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = make_tiny_release(args.out, TinySpec(layers=args.layers, seed=args.seed))
    for name in sorted(os.listdir(out)):
        if not name.startswith("."):
            print(f"{out / name}  {(out / name).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
