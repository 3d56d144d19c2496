"""Length-bucketed batches and the collated, padded `Batch` the trainer consumes.

Bucketing sorts a window of samples by duration and batches neighbours, so a batch's clips have
similar lengths and little of the padded tensor is padding; the batches are then shuffled (in the
stream) so training does not see lengths in order. Batches are capped either by a sample count or
by padded audio seconds (len(batch) * longest clip), which keeps the GPU memory per step flat.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import torch

from amh.data.samples import Sample


class Batch(TypedDict, total=False):
    """A plain dict at run time (DataLoader pins its tensors). Zero-padded CPU tensors; B = batch size.
    `codes` and `cond_mels` are present only when the source carries them (prepare_dataset --codes-from)."""

    text: torch.Tensor  # long (B, T_txt) token ids without [START]/[STOP]
    text_lengths: torch.Tensor  # long (B,)
    wav: torch.Tensor  # float32 (B, 1, T) at data.sample_rate; absent when codes + prompt mels are precomputed
    wav_lengths: torch.Tensor  # long (B,) in samples
    cond: torch.Tensor  # float32 (B, 1, T_c) conditioning clips, zero-padded to data.max_conditioning_seconds
    cond_lengths: torch.Tensor  # long (B,)
    cond_idxs: torch.Tensor  # long (B, 2) [start, end) of the prompt inside wav, or (-1, -1)
    ids: list[str]
    speakers: list[str]
    n_text_tokens: int  # real (unpadded) counts, for throughput metrics
    n_audio_samples: int
    codes: torch.Tensor  # long (B, T_codes) precomputed DVAE codes, zero-padded
    cond_mels: torch.Tensor  # float32 (B, 80, T_m) precomputed conditioning mels


def padding_efficiency(batch: Batch) -> float:
    """Real audio samples / padded audio samples (from the lengths: a batch may carry no waveform)."""
    lengths = batch["wav_lengths"]
    return batch["n_audio_samples"] / max(1, int(lengths.shape[0]) * int(lengths.max()))


def plan_batches(lengths: Sequence[int], *, batch_size: int, max_batch_samples: int | None,
                 sort: bool, max_count: int | None = None) -> list[list[int]]:
    """Group positions 0..n-1 into batches of neighbours (by length when `sort`).

    With `max_batch_samples`, a batch grows while len(batch) * longest <= max_batch_samples and it
    holds fewer than `max_count` positions (a clip longer than the cap gets a batch of its own);
    otherwise batches hold `batch_size` positions.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if sort else list(range(len(lengths)))
    if max_batch_samples is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        grown = max(longest, lengths[i])
        if current and ((len(current) + 1) * grown > max_batch_samples
                        or (max_count is not None and len(current) >= max_count)):
            groups.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        groups.append(current)
    return groups


def _pad(arrays: Sequence[np.ndarray], dtype, length: int | None = None) -> np.ndarray:
    """Stack 1-D (or (C, T)) arrays, zero-padded on the last axis."""
    length = max(a.shape[-1] for a in arrays) if length is None else length
    out = np.zeros((len(arrays), *arrays[0].shape[:-1], length), dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, ..., : a.shape[-1]] = a
    return out


def collate(samples: Sequence[Sample], *, cond_samples: int | None = None) -> Batch:
    """The padded batch. `cond_samples`: the width every conditioning clip is zero-padded to.

    One prompt-padding convention for both data paths: the stream passes data.max_conditioning_seconds,
    which is what upstream's dataset pads prompts to and what `amh.data.prepare` computes precomputed
    prompt mels from (the perceiver has no mask, so padding is part of what conditions the GPT).
    None pads to the batch's longest. Samples without a waveform (codes and prompt mel precomputed)
    give a batch without `wav` and `cond`.
    """
    # numpy, then one torch.from_numpy per field: torch's small-op overhead (and its thread pool
    # in a busy process) made a torch-indexing collate the slowest step of the stream.
    text_lengths = np.array([len(s.text_ids) for s in samples], dtype=np.int64)
    wav_lengths = np.array([s.n_samples for s in samples], dtype=np.int64)
    cond_lengths = np.array([s.n_cond for s in samples], dtype=np.int64)
    batch = Batch(
        text=torch.from_numpy(_pad([s.text_ids for s in samples], np.int64)),
        text_lengths=torch.from_numpy(text_lengths),
        wav_lengths=torch.from_numpy(wav_lengths),
        cond_lengths=torch.from_numpy(cond_lengths),
        cond_idxs=torch.tensor([s.cond_span for s in samples], dtype=torch.long),
        ids=[s.id for s in samples], speakers=[s.speaker for s in samples],
        n_text_tokens=int(text_lengths.sum()), n_audio_samples=int(wav_lengths.sum()),
    )
    if all(s.codes is not None for s in samples):
        batch["codes"] = torch.from_numpy(_pad([s.codes for s in samples], np.int64))
    if all(s.cond_mels is not None for s in samples):
        batch["cond_mels"] = torch.from_numpy(_pad([s.cond_mels for s in samples], np.float32))
    if all(s.wav is not None for s in samples):
        width = max(1, int(cond_lengths.max())) if cond_samples is None else cond_samples
        batch["wav"] = torch.from_numpy(_pad([s.wav for s in samples], np.float32)[:, None])
        batch["cond"] = torch.from_numpy(_pad([s.cond for s in samples], np.float32, width)[:, None])
    elif "codes" not in batch or "cond_mels" not in batch:  # a bug: the step would have no audio input
        raise ValueError(f"batch {batch['ids']}: samples without a waveform need precomputed codes and prompt mels")
    return batch
