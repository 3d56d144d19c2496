#!/usr/bin/env python3
"""Does it speak Amharic? Score one or more exports on held-out sentences and compare them.

    python scripts/evaluate.py --export runs/a/export --export runs/b/export \
        --speaker-wav ref.wav --out reports/a_vs_b [--sentences FILE]

Each export speaks every sentence (default: the shipped held-out set amh/eval/sentences_am.txt) in
the voice of each --speaker-wav; an ASR model transcribes the speech (default facebook/mms-1b-all,
Amharic adapter: a Hub download on first use), a speaker encoder compares it with the reference.
Written to --out: sentences.csv (a row per sentence), summary.md (corpus CER/WER, speaker
similarity, real-time factor per export), metrics.png, and every take under audio/.
How to read the numbers: docs/evaluation.md. A bad input exits 2 with one line.
"""
import argparse
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amh.config import EvalConfig  # noqa: E402
from amh.errors import UserError  # noqa: E402
from amh.eval.report import ExportResult, write_report  # noqa: E402
from amh.eval.score import SpeechScorer, timed_takes  # noqa: E402
from amh.eval.sentences import default_sentences_path, load_sentences  # noqa: E402
from amh.xtts.synthesis import SynthesisError, check_speaker_wav, load_export, synthesize  # noqa: E402


def parse_args(argv=None):
    defaults = EvalConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, type=Path, action="append",
                        help="an export folder written by train.py (repeat to compare several)")
    parser.add_argument("--speaker-wav", required=True, type=Path, action="append",
                        help="reference clip of a target voice, 3-30 s (repeat for several speakers)")
    parser.add_argument("--sentences", type=Path, default=default_sentences_path(),
                        help="one sentence a line, '#' comments (default: %(default)s)")
    parser.add_argument("--out", required=True, type=Path, help="report folder (created)")
    parser.add_argument("--asr-backend", default=defaults.asr_backend, choices=["transformers", "pocketsphinx"])
    parser.add_argument("--asr-model", default=defaults.asr_model, help="Hub id or local folder (default: %(default)s)")
    parser.add_argument("--asr-language", default=defaults.asr_language, help="MMS adapter / Whisper language (default: %(default)s)")
    parser.add_argument("--speaker-encoder", default=defaults.speaker_encoder, choices=["resemblyzer", "transformers"])
    parser.add_argument("--speaker-model", default=defaults.speaker_model, help="x-vector model for --speaker-encoder transformers")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if len(set(args.export)) != len(args.export):
            raise SynthesisError(f"--export: each export once, got {[str(e) for e in args.export]}")
        for wav in args.speaker_wav:
            check_speaker_wav(wav)
        sentences = load_sentences(args.sentences)
        models = {str(e): load_export(e, device=args.device) for e in args.export}
        config = EvalConfig(enabled=True, asr_backend=args.asr_backend, asr_model=args.asr_model,
                            asr_language=args.asr_language, speaker_encoder=args.speaker_encoder,
                            speaker_model=args.speaker_model)
        scorer = SpeechScorer.from_config(config, device=args.device)
    except (SynthesisError, UserError, OSError, ValueError) as err:  # UserError: also an ASR model that cannot be fetched
        print(f"error: {err}", file=sys.stderr)
        return 2

    results = []
    for index, (label, (model, settings)) in enumerate(models.items()):
        takes, wavs = [], []
        for speaker_wav in args.speaker_wav:
            torch.manual_seed(args.seed)  # every export draws the same samples: differences are the weights'

            def speak(text, ref=speaker_wav):
                return synthesize(model, settings, text, ref, temperature=args.temperature)

            spoken = timed_takes(speak, sentences, speaker_wav, speaker=speaker_wav.stem)
            for i, take in enumerate(spoken):
                rel = Path("audio") / f"{index + 1}_{Path(label).parent.name or 'export'}" / speaker_wav.stem / f"{i:03d}.wav"
                (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(args.out / rel, take.wav, take.sample_rate)
                wavs.append(str(rel))
            takes += spoken
        start = time.perf_counter()
        scores = scorer.score(takes)
        scoring = time.perf_counter() - start  # what the speech eval adds to a training eval, beyond synthesis
        results.append(ExportResult(label, scores, wavs))
        s = scores.scalars
        print(f"{label}: CER {s['eval/cer']:.3f}  WER {s['eval/wer']:.3f}  speaker sim {s['eval/speaker_sim']:.3f}  "
              f"RTF {s['eval/rtf']:.2f}  ({len(takes)} takes: synthesis {sum(t.synthesis_seconds for t in takes):.1f} s, "
              f"ASR + speaker scoring {scoring:.1f} s)")
    context = {"sentences": f"{args.sentences} ({len(sentences)})",
               "speakers": ", ".join(str(w) for w in args.speaker_wav),
               "ASR": scorer.recognizer.name, "speaker encoder": scorer.speaker_encoder.name,
               "device": args.device, "seed": str(args.seed), "temperature": str(args.temperature)}
    paths = write_report(args.out, results, context)
    print("report: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
