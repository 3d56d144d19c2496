#!/usr/bin/env python3
"""Synthesise Amharic text with an export written by train.py (OUTPUT/export/), in upstream XTTS code.

    python scripts/synthesize.py --export runs/demo/export --speaker-wav ref.wav \
        --text "ሰላም፣ እንዴት ነህ?" --out hello.wav

The export's frontend.json is applied first, so the text is processed exactly as in training.
"""
import argparse
import sys
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.xtts.synthesis import load_export, synthesize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, type=Path, help="export directory (model.pth, config.json, vocab.json, frontend.json)")
    parser.add_argument("--speaker-wav", required=True, type=Path, help="reference clip of the target voice (3-30 s)")
    parser.add_argument("--text", required=True, help="text to speak")
    parser.add_argument("--out", required=True, type=Path, help="output wav")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model, settings = load_export(args.export, device=args.device)
    torch.manual_seed(args.seed)
    wav, sample_rate = synthesize(model, settings, args.text, args.speaker_wav, temperature=args.temperature)
    sf.write(args.out, wav, sample_rate)
    print(f"wrote {args.out} ({len(wav) / sample_rate:.2f} s at {sample_rate} Hz)")


if __name__ == "__main__":
    main()
