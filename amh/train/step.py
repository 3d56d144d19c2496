"""One training step of XTTS's GPT, as train.py runs it and scripts/bench_step.py times it.

A micro-batch: counts for the throughput meter (on the host, before the copy), a non-blocking
copy, frozen DVAE codes and conditioning mels (unless the data pipeline precomputed them), the
forward under autocast, the scaled backward. An optimizer step: true gradients -> per-group norms
-> skip if non-finite, else clip and step -> update the loss scale -> zero the gradients.

No host sync per step: the NaN guard decides on the device and the fused AdamW skips on its
`found_inf` (as GradScaler's step does); norms, losses and the guard's counters stay on the device
until log time (an optimizer without `found_inf` support costs one sync per optimizer step).
`apply_model_options` sets how the GPT runs each step: activation checkpointing, torch.compile.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from amh.train.clipping import GroupClipper
from amh.xtts.loss import LossOutput
from amh.train.metrics import gpt_tokens
from amh.train.nan_guard import NanGuard
from amh.train.precision import Precision
from amh.xtts.codes import AudioCodec


def batch_counts(batch: dict) -> dict[str, int]:
    """Real work in a collated batch, for `amh.train.metrics.Throughput.add`: read from host tensors.

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


def window_scale(sample_counts: list[int], accelerator) -> torch.Tensor:
    """Weight of a micro-batch's summed per-sample loss, so that an update is the mean over its window.

    An optimizer step's objective is the mean of the per-sample losses over every sample of the
    accumulation window on every rank. Accelerate divides each micro-batch's loss by the number of
    accumulation steps and DDP/ZeRO average the ranks' gradients, so a micro-batch's summed loss is
    multiplied by accumulation steps x ranks / window samples: then 4x1, 2x2, 3+1 and two ranks with
    3 and 1 samples all give the same update (a mean of micro-batch means would weigh the lone sample
    of a 3+1 split three times). The count is all-reduced as a device tensor: no host sync.
    """
    local = torch.tensor(float(sum(sample_counts)), device=accelerator.device)
    total = accelerator.reduce(local, reduction="sum")  # one process: returned as it is
    return accelerator.gradient_accumulation_steps * accelerator.num_processes / total.clamp_min(1.0)


def forward_backward(model: nn.Module, batch: dict, codec: AudioCodec, precision: Precision,
                     accelerator, scale: torch.Tensor | float | None = None) -> LossOutput:
    """One micro-batch: inputs, forward under autocast, scaled backward. Call inside `accelerator.accumulate`.

    `scale` is `window_scale(...)` for this micro-batch's window; None weighs the micro-batch by its
    mean (right only when every micro-batch of the window has the same number of samples).
    """
    inputs = model_inputs(batch, codec)
    with precision.autocast():
        loss = model(*inputs)
    objective = loss.total if scale is None else loss.window_sum() * scale
    accelerator.backward(precision.scale(objective))
    return loss


def optimizer_step(optimizer: torch.optim.Optimizer, clipper: GroupClipper, guard: NanGuard, precision: Precision,
                   loss: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unscale, per-group norms, clip, then step unless the guard refuses; always update the scale.

    No host sync with a fused torch optimizer (amh.train.optim's AdamW): the guard's decision stays on the
    device and reaches the kernel as `found_inf`, as GradScaler's does. Returns (stepped: a 0-dim
    bool tensor on the device, pre-clip norms per group as 0-dim device tensors); read them at log
    time (`guard.read()`), not every step.
    """
    precision.unscale_(optimizer)
    norms = clipper.norms()
    take = guard.check(loss, norms)
    clipper.clip_(norms)
    _step_unless_refused(optimizer, take)
    precision.update()
    optimizer.zero_grad(set_to_none=True)
    return take, norms


def _step_unless_refused(optimizer: torch.optim.Optimizer, take: torch.Tensor) -> None:
    """`optimizer.step()` that changes nothing (weights, moments, step count) when `take` is False.

    torch's fused Adam/AdamW/SGD (`_step_supports_amp_scaling`) read a `found_inf` attribute: at 1.0
    the kernel leaves every tensor as it was and the step counters are decremented back, all on
    the device. Other optimizers (e.g. bitsandbytes' 8-bit AdamW) cannot skip on the device, so
    for them the decision is read on the host: one sync per optimizer step.
    """
    inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps torch's
    if getattr(inner, "_step_supports_amp_scaling", False) and not hasattr(inner, "found_inf"):
        inner.found_inf = (~take).float()
        try:
            optimizer.step()
        finally:
            del inner.found_inf
    elif bool(take):
        optimizer.step()


def apply_model_options(model: nn.Module, *, gradient_checkpointing: bool = False, compile: bool = False) -> nn.Module:
    """`model.gradient_checkpointing` and `model.compile` (amh.config.ModelConfig) on an XttsGptForTraining.

    Checkpointing recomputes each GPT-2 block in the backward pass (the perceiver and conditioning
    encoder are not checkpointed). `gradient_checkpointing_enable()` fails on transformers >= 5.24
    because XTTS deletes `wte`, so the blocks are switched directly, non-reentrant (research notes
    §3.3). Compile is in place (`nn.Module.compile`), so parameter names and state-dict keys stay
    those of the release. Only the GPT-2 blocks are compiled: they are the same code at every
    layer and their only varying shape is the sequence length (`dynamic=True`), while the loss,
    prompt masking and conditioning stay eager (data-dependent shapes would recompile or break).

    Always: the blocks' `gelu_new` (five elementwise ops, each saved for the backward) becomes
    PyTorch's fused tanh-approximation GELU, the same function (within 5e-7 in fp32; the test
    pins it), and the conditioning encoder's einsum attention becomes PyTorch's fused SDPA kernel
    (`amh.xtts.attention`: the same function within fp32 rounding, no T x T weights), so nothing
    about the weights or the export changes.
    """
    from amh.xtts.attention import fuse_conditioning_attention_

    _fused_gelu_(model.gpt.gpt)
    fuse_conditioning_attention_(model.gpt)
    if gradient_checkpointing:
        from torch.utils.checkpoint import checkpoint

        backbone = model.gpt.gpt
        backbone._set_gradient_checkpointing(
            enable=True, gradient_checkpointing_func=functools.partial(checkpoint, use_reentrant=False))
        backbone.config.use_cache = False
    if compile:
        for block in model.gpt.gpt.h:
            block.compile(dynamic=True)
    return model


def _fused_gelu_(backbone: nn.Module) -> None:
    """Swap transformers' `NewGELUActivation` (gelu_new) for `GELUTanh` (gelu_pytorch_tanh) in every block."""
    from transformers.activations import GELUTanh, NewGELUActivation

    for block in backbone.h:
        if isinstance(block.mlp.act, NewGELUActivation):
            block.mlp.act = GELUTanh()
    backbone.config.activation_function = "gelu_pytorch_tanh"
