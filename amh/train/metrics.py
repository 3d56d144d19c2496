"""Throughput and memory numbers for logs and TensorBoard (accumulated on device, read at log time)."""
from __future__ import annotations

import resource
import time

import torch


class Throughput:
    """Counts real work between two log points: samples, audio seconds, GPT tokens, padding."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.samples = 0
        self.audio_samples = 0
        self.padded_audio_samples = 0
        self.tokens = 0

    def add(self, *, samples: int, audio_samples: int, padded_audio_samples: int, tokens: int) -> None:
        self.samples += samples
        self.audio_samples += audio_samples
        self.padded_audio_samples += padded_audio_samples
        self.tokens += tokens

    def rates(self) -> dict[str, float]:
        elapsed = max(1e-9, time.perf_counter() - self.start)
        return {
            "samples_per_s": self.samples / elapsed,
            "audio_seconds_per_s": self.audio_samples / self.sample_rate / elapsed,
            "tokens_per_s": self.tokens / elapsed,
            "padding_efficiency": self.audio_samples / max(1, self.padded_audio_samples),
        }


def gpt_tokens(text_lengths: torch.Tensor, wav_lengths: torch.Tensor, samples_per_code: int = 1024) -> torch.Tensor:
    """Real (unpadded) GPT positions of a batch: text + [START]/[STOP] + codes + start/stop codes."""
    codes = torch.div(wav_lengths + samples_per_code - 1, samples_per_code, rounding_mode="floor")
    return (text_lengths + 2 + codes + 2).sum()


def memory_mb(device: torch.device) -> float:
    """Peak accelerator memory, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
