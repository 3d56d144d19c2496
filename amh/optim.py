"""AdamW with upstream's decay/no-decay split inside each clip group, and the LR schedule as a function of step.

The optimizer's parameter groups are (clip group x decay/no-decay): each group dict names its clip group
under "clip_group". DDP does not need this layout, but DeepSpeed ZeRO does: it flattens and partitions
each optimizer group separately and steps its base optimizer one group at a time, so a clip group's
gradients can be found (and scaled) only if no optimizer group mixes two clip groups. Both launch
paths use the same layout, so their optimizer states have the same shape.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from amh.clipping import assign_groups
from amh.config import ClipGroup, OptimConfig

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

    Parameters join clip groups exactly as `amh.clipping.assign_groups` assigns them (first pattern
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
                    clip_groups: list[ClipGroup] | None = None) -> torch.optim.AdamW:
    # fused AdamW runs on CUDA and (torch >= 2.4) on CPU; one kernel instead of a Python loop.
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay, clip_groups), lr=cfg.lr,
                             betas=tuple(cfg.betas), eps=cfg.eps, fused=True)


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
