"""AdamW with upstream's decay/no-decay split inside each clip group, and the LR schedule as a function of step.

The optimizer's parameter groups are (clip group x decay/no-decay): each group dict names its clip group
under "clip_group". DDP does not need this layout, but DeepSpeed ZeRO does: it flattens and partitions
each optimizer group separately and steps its base optimizer one group at a time, so a clip group's
gradients can be found (and scaled) only if no optimizer group mixes two clip groups. Both launch
paths use the same layout, so their optimizer states have the same shape.

`optim.optimizer` picks torch's fused AdamW (fp32 state) or bitsandbytes' 8-bit AdamW (uint8 state,
block-wise absmax; the same groups). Master weights are fp32 in both: at the seed's lr 2e-6 an
update is far below one bf16 step of the weight it changes and would be rounded away
(docs/memory.md), so bf16 master weights are refused.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from amh.train.clipping import assign_groups
from amh.config import ClipGroup, ConfigError, OptimConfig

_NO_DECAY_MODULES = (nn.Embedding, nn.EmbeddingBag, nn.LayerNorm, nn.GroupNorm,
                     nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
                     nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Upstream GPTTrainer.get_optimizer decays only "weights": no decay on biases, norms, embeddings."""
    ids = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("bias") or isinstance(module, _NO_DECAY_MODULES):
                ids.add(id(param))
    return ids


def param_groups(model: nn.Module, weight_decay: float, clip_groups: list[ClipGroup] | None = None) -> list[dict]:
    """One optimizer group per (clip group, decay/no-decay) pair that has parameters, in clip-group order.

    Parameters join clip groups exactly as `amh.train.clipping.assign_groups` assigns them (first pattern
    match wins), so the clipper and the optimizer agree. Without clip groups, one group "all".
    """
    clip_groups = clip_groups or [ClipGroup("all", ["*"], float("inf"))]
    no_decay = _no_decay_ids(model)
    groups = []
    for clip in assign_groups(model.named_parameters(), clip_groups):
        decay = [p for p in clip.params if id(p) not in no_decay]
        rest = [p for p in clip.params if id(p) in no_decay]
        groups += [{"params": params, "weight_decay": wd, "clip_group": clip.name}
                   for params, wd in ((decay, weight_decay), (rest, 0.0)) if params]
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig,
                    clip_groups: list[ClipGroup] | None = None) -> torch.optim.Optimizer:
    """`cfg.optimizer` over `param_groups(...)`; refuses trainable parameters that are not fp32."""
    check_fp32_master_weights(model)
    groups = param_groups(model, cfg.weight_decay, clip_groups)
    if cfg.optimizer == "adamw8bit":
        bnb = import_bitsandbytes()
        # Block-wise 8-bit state for tensors of >= 4096 elements (bitsandbytes' default), fp32 below.
        return bnb.optim.AdamW8bit(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    # fused AdamW runs on CUDA and (torch >= 2.4) on CPU; one kernel instead of a Python loop.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=True)


def import_bitsandbytes():
    """bitsandbytes, or a one-line error naming the extra that installs it."""
    try:
        import bitsandbytes
    except ImportError as err:
        raise ConfigError(f"optim.optimizer='adamw8bit' needs bitsandbytes ({err}); install the extra with "
                          "`pip install .[bnb]` (or `pip install bitsandbytes`), or set optim.optimizer=adamw") from None
    return bitsandbytes


def check_fp32_master_weights(model: nn.Module) -> None:
    """Refuse low-precision master weights: neither optimizer here compensates for bf16/fp16 rounding
    (no Kahan summation, no stochastic rounding), so lr-2e-6 updates would be lost (docs/memory.md)."""
    for name, param in model.named_parameters():
        if param.requires_grad and param.dtype != torch.float32:
            raise ConfigError(f"parameter {name} is {param.dtype}: master weights must stay fp32 (a lr 2e-6 update "
                              "is below bf16's resolution and is lost); keep the model fp32 and set "
                              "train.precision=bf16 for bf16 compute (autocast)")


# DeepSpeed options that keep the master weights (or Adam state) in 16 bits (deepspeed 0.19 runtime/config.py).
_DEEPSPEED_LOW_PRECISION_MASTER = (("bf16", "bf16_master_weights_and_grads"), ("bf16", "bf16_optimizer_states"),
                                   ("fp16", "fp16_master_weights_and_grads"))


def check_deepspeed_master_weights(ds_config: dict, source: str) -> None:
    """Refuse a DeepSpeed config (read from `source`) that would keep 16-bit master weights or Adam state."""
    for section, key in _DEEPSPEED_LOW_PRECISION_MASTER:
        if (ds_config.get(section) or {}).get(key):
            raise ConfigError(f"{source}: {section}.{key}: 16-bit master weights lose lr-2e-6 updates (below bf16's "
                              "resolution, docs/memory.md) and neither optimizer compensates; remove it "
                              "(optim.optimizer=adamw8bit saves optimizer memory instead)")


def lr_at(step: int, cfg: OptimConfig, total_steps: int | None) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then constant or cosine."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant" or not total_steps:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
