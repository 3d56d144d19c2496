"""Score synthesised sentences: CER/WER of an ASR transcript, speaker similarity to the reference, RTF.

    scorer = SpeechScorer.from_config(cfg.eval, device)   # once: loads the ASR and speaker models
    scores = scorer.score(takes)            # takes: [Take(text, wav, sample_rate, synthesis_seconds, reference)]
    accelerator.log(scores.scalars, step)   # eval/cer, eval/wer, eval/speaker_sim, eval/rtf

Corpus-level numbers, as ASR papers report them: CER and WER are total edits over total reference
characters / words (jiwer), so a long sentence weighs more than a short one; speaker similarity is
the mean over takes; RTF is total synthesis time over total audio time.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

from amh.eval.asr import Recognizer, build_recognizer
from amh.eval.speaker import SpeakerEncoder, build_speaker_encoder, cosine_similarity
from amh.eval.text import scoring_text

# eval.best_metric -> the logged scalar it selects on (lower is better for both).
BEST_METRIC_TAGS = {"eval_loss": "eval/loss", "cer": "eval/cer"}


@dataclass
class Take:
    """One sentence spoken by the model: what it was asked to say, what it produced, how long it took."""

    text: str
    wav: np.ndarray
    sample_rate: int
    synthesis_seconds: float
    # The voice it was asked to imitate: a clip on disk (its speaker embedding is computed once).
    reference: Path
    speaker: str = ""


@dataclass
class SentenceScore:
    speaker: str
    text: str
    reference_words: str  # `text` as scored (amh.eval.text.scoring_text)
    transcript: str  # what the recogniser heard, as it wrote it
    transcript_words: str  # the transcript as scored
    cer: float
    wer: float
    speaker_sim: float
    audio_seconds: float
    synthesis_seconds: float
    rtf: float

    def as_row(self) -> dict:
        return asdict(self)


@dataclass
class SpeechScores:
    scalars: dict[str, float]  # eval/cer, eval/wer, eval/speaker_sim, eval/rtf
    sentences: list[SentenceScore] = field(default_factory=list)


def error_rates(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    """Corpus CER and WER of already-normalised texts (jiwer); references must not be empty."""
    return (jiwer.process_characters(references, hypotheses).cer, jiwer.process_words(references, hypotheses).wer)


def _rtf(synthesis_seconds: float, audio_seconds: float) -> float:
    return synthesis_seconds / audio_seconds if audio_seconds > 0 else math.inf


class SpeechScorer:
    """Built once (it holds the loaded recogniser and speaker encoder), called at every eval."""

    def __init__(self, recognizer: Recognizer, speaker_encoder: SpeakerEncoder):
        self.recognizer = recognizer
        self.speaker_encoder = speaker_encoder
        self._references: dict[str, np.ndarray] = {}

    @classmethod
    def from_config(cls, cfg, device: str = "cpu") -> SpeechScorer:
        """From the config's `eval` section (amh.config.EvalConfig)."""
        recognizer = build_recognizer(cfg.asr_backend, cfg.asr_model, cfg.asr_language, device=device)
        return cls(recognizer, build_speaker_encoder(cfg.speaker_encoder, cfg.speaker_model, device=device))

    def reference_embedding(self, path: Path) -> np.ndarray:
        # Keyed by path and modification time: train.py may rewrite its reference clip.
        key = f"{Path(path).resolve()}:{Path(path).stat().st_mtime_ns}"
        if key not in self._references:
            wav, sr = sf.read(path, dtype="float32", always_2d=True)
            self._references[key] = self.speaker_encoder.embed(wav.mean(axis=1), sr)
        return self._references[key]

    def score(self, takes: list[Take]) -> SpeechScores:
        if not takes:
            raise ValueError("no takes to score: give at least one synthesised sentence")
        references = [scoring_text(t.text) for t in takes]
        for take, words in zip(takes, references):
            if not words:
                raise ValueError(f"test sentence {take.text!r} has no words left after normalisation; remove it")
        heard = [""] * len(takes)
        for rate in sorted({t.sample_rate for t in takes}):  # one call per sample rate lets the recogniser batch
            group = [i for i, t in enumerate(takes) if t.sample_rate == rate]
            for i, text in zip(group, self.recognizer.transcribe([takes[i].wav for i in group], rate)):
                heard[i] = text
        hypotheses = [scoring_text(h) for h in heard]
        rows = []
        for take, ref, raw, hyp in zip(takes, references, heard, hypotheses):
            cer, wer = error_rates([ref], [hyp])
            sim = cosine_similarity(self.reference_embedding(take.reference),
                                    self.speaker_encoder.embed(take.wav, take.sample_rate))
            audio_seconds = len(take.wav) / take.sample_rate
            rows.append(SentenceScore(take.speaker, take.text, ref, raw, hyp, cer, wer, sim, audio_seconds,
                                      take.synthesis_seconds, _rtf(take.synthesis_seconds, audio_seconds)))
        cer, wer = error_rates(references, hypotheses)
        scalars = {
            "eval/cer": cer,
            "eval/wer": wer,
            "eval/speaker_sim": float(np.mean([r.speaker_sim for r in rows])),
            "eval/rtf": _rtf(sum(r.synthesis_seconds for r in rows), sum(r.audio_seconds for r in rows)),
        }
        return SpeechScores(scalars, rows)



def timed_takes(speak: Callable[[str], tuple[np.ndarray, int]], sentences: Sequence[str], reference: Path,
                speaker: str = "") -> list[Take]:
    """Speak each sentence with `speak(text) -> (wav, sample_rate)`, timing each call (for the RTF)."""
    takes = []
    for text in sentences:
        start = time.perf_counter()
        wav, sample_rate = speak(text)
        seconds = time.perf_counter() - start
        takes.append(Take(text, np.asarray(wav, dtype=np.float32), int(sample_rate), seconds, Path(reference), speaker))
    return takes
