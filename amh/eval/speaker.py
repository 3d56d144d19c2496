"""Speaker embeddings of a clip, and the cosine similarity of two: is the synthesis in the reference voice?

- `ResemblyzerEncoder` (default): Resemblyzer's GE2E speaker encoder, whose pretrained weights ship
  inside its pip wheel (offline). Clips are resampled to 16 kHz, volume-normalised and stripped of
  long silences (webrtcvad) by Resemblyzer's own `preprocess_wav`.
- `TransformersXVector`: a `transformers` x-vector model (`AutoModelForAudioXVector`, e.g.
  `microsoft/wavlm-base-plus-sv`, a Hub id or local folder).

`embed` returns a unit vector, or a zero vector for a clip with no voice in it, whose similarity
to anything is 0: a model that produced silence has not matched the voice.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import soxr

# Less voiced audio than this (after silence trimming) is "no voice": Resemblyzer's encoder looks
# at 1.6 s windows and says nothing reliable about a few frames.
MIN_VOICED_SECONDS = 0.2


class SpeakerEncoder(Protocol):
    name: str

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray: ...


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """cos(a, b) in [-1, 1]; 0 when either vector is zero (no voice)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else 0.0


class ResemblyzerEncoder:
    sample_rate = 16000

    def __init__(self, device: str = "cpu"):
        import warnings

        # resemblyzer imports webrtcvad, whose module imports the deprecated pkg_resources at import time
        # (a UserWarning every run that no user can act on); nothing else is silenced.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(device, verbose=False)
        self.name = "resemblyzer"

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        from resemblyzer import preprocess_wav

        wav = np.asarray(wav, dtype=np.float32)
        if not np.any(wav):  # Resemblyzer's volume normalisation divides by the RMS
            return np.zeros(256, dtype=np.float32)
        wav = preprocess_wav(wav, source_sr=sample_rate)
        if wav.size < MIN_VOICED_SECONDS * self.sample_rate:
            return np.zeros(256, dtype=np.float32)
        return self.encoder.embed_utterance(wav)


class TransformersXVector:
    """An `AutoModelForAudioXVector` checkpoint (Hub id or local folder)."""

    def __init__(self, model: str, *, device: str = "cpu"):
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.torch = torch
        self.extractor = AutoFeatureExtractor.from_pretrained(model)
        self.model = AutoModelForAudioXVector.from_pretrained(model)
        self.model.to(device).eval()
        self.device = device
        self.sample_rate = int(self.extractor.sampling_rate)
        self.name = f"transformers:{model}"

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if sample_rate != self.sample_rate:
            wav = soxr.resample(wav, sample_rate, self.sample_rate)
        if wav.size < MIN_VOICED_SECONDS * self.sample_rate or not np.any(wav):
            return np.zeros(self.model.config.xvector_output_dim, dtype=np.float32)
        inputs = self.extractor(wav, sampling_rate=self.sample_rate, return_tensors="pt").to(self.device)
        with self.torch.no_grad():
            vector = self.model(**inputs).embeddings[0].float().cpu().numpy()
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def build_speaker_encoder(kind: str, model: str | None = None, *, device: str = "cpu") -> SpeakerEncoder:
    """The encoder `eval.speaker_encoder` names ("resemblyzer" or "transformers" with `eval.speaker_model`)."""
    if kind == "resemblyzer":
        return ResemblyzerEncoder(device)
    if kind == "transformers":
        if not model:
            raise ValueError("eval.speaker_model: required for eval.speaker_encoder='transformers' "
                             "(e.g. microsoft/wavlm-base-plus-sv)")
        return TransformersXVector(model, device=device)
    raise ValueError(f"eval.speaker_encoder={kind!r}: choose 'resemblyzer' or 'transformers'")
