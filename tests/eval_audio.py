"""Speech for the eval tests: espeak-ng reads a text in a voice, as a float32 array."""
from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile as sf


def espeak(text: str, voice: str, rate: int = 150) -> tuple[np.ndarray, int]:
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "--stdout", text], capture_output=True, check=True).stdout
    wav, sr = sf.read(io.BytesIO(out), dtype="float32")
    return wav, sr


def noise(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * sample_rate)).astype(np.float32)
