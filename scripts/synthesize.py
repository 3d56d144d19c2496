#!/usr/bin/env python3
"""Synthesise Amharic text with an export written by train.py (OUTPUT/export/), in upstream XTTS code.

    python scripts/synthesize.py --export runs/demo/export --speaker-wav ref.wav \
        --text "ሰላም፣ እንዴት ነህ?" --out hello.wav

The export's frontend.json is applied first, so the text is processed exactly as in training.
Inputs are checked before generating: the output path (its folder is created if missing), the
speaker clip (readable, >= 1 s, not silent, no NaN), the text (not empty, known characters).
Text over the model's limits (150 characters or 400 tokens for Amharic) is spoken sentence by
sentence (Ethiopic ። ፤ ፧ and . ! ?) and concatenated. A bad input exits 2 with one line.
"""
import argparse
import sys
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.xtts.synthesis import SynthesisError, check_output, check_speaker_wav, load_export, synthesize  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, type=Path, help="export directory (model.pth, config.json, vocab.json, frontend.json)")
    parser.add_argument("--speaker-wav", required=True, type=Path, help="reference clip of the target voice (3-30 s)")
    parser.add_argument("--text", required=True, help="text to speak")
    parser.add_argument("--out", required=True, type=Path, help="output wav")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        # The cheap checks before the model is loaded; the text needs its tokenizer.
        out = check_output(args.out)
        check_speaker_wav(args.speaker_wav)
        if not args.text.strip():
            raise SynthesisError("--text is empty: give the text to speak")
        model, settings = load_export(args.export, device=args.device)
        torch.manual_seed(args.seed)
        wav, sample_rate = synthesize(model, settings, args.text, args.speaker_wav, temperature=args.temperature)
    except SynthesisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sf.write(out, wav, sample_rate)
    print(f"wrote {out} ({len(wav) / sample_rate:.2f} s at {sample_rate} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
