"""One training step of XTTS's GPT, as train.py runs it and scripts/bench_step.py times it.

A micro-batch: counts for the throughput meter (on the host, before the copy), a non-blocking
copy, frozen DVAE codes and conditioning mels (unless the data pipeline precomputed them), the
forward under autocast, the scaled backward. An optimizer step: true gradients -> per-group norms
-> skip if non-finite, else clip and step -> update the loss scale -> zero the gradients.

The only host syncs are the NaN guard's decision (one per optimizer step, the same one GradScaler
makes) and the fp16 scaler's update; everything else stays on the device until log time.
`apply_model_options` sets how the GPT runs each step: activation checkpointing, torch.compile.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from amh.clipping import GroupClipper
from amh.loss import LossOutput
from amh.metrics import gpt_tokens
from amh.nan_guard import NanGuard
from amh.precision import Precision
from amh.xtts.codes import AudioCodec


def batch_counts(batch: dict) -> dict[str, int]:
    """Real work in a collated batch, for `amh.metrics.Throughput.add`: read from host tensors.

    Called before `to_device`, so reading the lengths costs no device sync; padded audio comes
    from the lengths, so batches that carry precomputed codes need not carry the waveform.
    """
    wav_lengths = batch["wav_lengths"]
    return {
        "samples": int(wav_lengths.shape[0]),
        "audio_samples": int(wav_lengths.sum()),
        "padded_audio_samples": int(wav_lengths.shape[0] * wav_lengths.max()),
        "tokens": int(gpt_tokens(batch["text_lengths"], wav_lengths)),
    }


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors to `device` without blocking the host (the loader pins them on CUDA)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def model_inputs(batch: dict, codec: AudioCodec) -> tuple:
    """Frozen, fp32, outside autocast: DVAE codes and conditioning mels (unless precomputed)."""
    codes = batch["codes"] if "codes" in batch else codec.codes(batch["wav"])
    cond_mels = batch["cond_mels"] if "cond_mels" in batch else codec.cond_mels(batch["cond"])
    return batch["text"], batch["text_lengths"], codes, batch["wav_lengths"], cond_mels, batch["cond_idxs"]


def forward_backward(model: nn.Module, batch: dict, codec: AudioCodec, precision: Precision,
                     accelerator) -> LossOutput:
    """One micro-batch: inputs, forward under autocast, scaled backward. Call inside `accelerator.accumulate`."""
    inputs = model_inputs(batch, codec)
    with precision.autocast():
        loss = model(*inputs)
    accelerator.backward(precision.scale(loss.total))
    return loss


def optimizer_step(optimizer: torch.optim.Optimizer, clipper: GroupClipper, guard: NanGuard, precision: Precision,
                   loss: torch.Tensor) -> tuple[bool, dict[str, torch.Tensor]]:
    """Unscale, per-group norms, then clip + step, or skip a non-finite step; always update the scale.

    Returns (stepped, pre-clip norms per group as 0-dim device tensors).
    """
    precision.unscale_(optimizer)
    norms = clipper.norms()
    stepped = guard.check(loss, norms)
    if stepped:
        clipper.clip_(norms)
        optimizer.step()
    precision.update()
    optimizer.zero_grad(set_to_none=True)
    return stepped, norms


def apply_model_options(model: nn.Module, *, gradient_checkpointing: bool = False, compile: bool = False) -> nn.Module:
    """`model.gradient_checkpointing` and `model.compile` (amh.config.ModelConfig) on an XttsGptForTraining.

    Checkpointing recomputes each GPT-2 block in the backward pass (the perceiver and conditioning
    encoder are not checkpointed). `gradient_checkpointing_enable()` fails on transformers >= 5.24
    because XTTS deletes `wte`, so the blocks are switched directly, non-reentrant (research notes
    §3.3). Compile is in place (`nn.Module.compile`), so parameter names and state-dict keys stay
    those of the release; shapes change every batch, hence `dynamic=True`.
    """
    if gradient_checkpointing:
        from torch.utils.checkpoint import checkpoint

        backbone = model.gpt.gpt
        backbone._set_gradient_checkpointing(
            enable=True, gradient_checkpointing_func=functools.partial(checkpoint, use_reentrant=False))
        backbone.config.use_cache = False
    if compile:
        model.compile(dynamic=True)
    return model
