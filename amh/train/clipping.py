"""Per-parameter-group gradient clipping on the true gradients (the seed's Fix 2, done right).

The seed clipped inside a hook that ran after `train_step` had already stepped the optimizer, so
the clip changed nothing. Here the trainer calls `norms()` and `clip_()` after unscaling and after
DDP's all-reduce, before the optimizer step. Each group (default: text embedding + text head at
0.1, everything else at 1.0) is scaled by min(1, max_norm / norm), like `clip_grad_norm_` per group.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from amh.config import ClipGroup


@dataclass
class ParamGroup:
    name: str
    max_norm: float
    params: list[nn.Parameter]
    names: list[str]

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)


def _strip(name: str) -> str:
    # DDP/compile/our wrapper add prefixes; patterns are written against the GPT's own names.
    for prefix in ("module.", "_orig_mod.", "gpt."):
        name = name.removeprefix(prefix)
    return name


def assign_groups(named_params, groups: list[ClipGroup]) -> list[ParamGroup]:
    """Each trainable parameter joins the first group whose pattern matches its name."""
    out = [ParamGroup(g.name, g.max_norm, [], []) for g in groups]
    unmatched = []
    for name, param in named_params:
        if not param.requires_grad:
            continue
        short = _strip(name)
        for spec, group in zip(groups, out):
            if any(fnmatch.fnmatchcase(short, pat) for pat in spec.patterns):
                group.params.append(param)
                group.names.append(short)
                break
        else:
            unmatched.append(short)
    if unmatched:
        raise ValueError(f"train.clip_groups: {len(unmatched)} parameter(s) match no group, e.g. {unmatched[0]!r}; "
                         "end the list with a catch-all group (patterns: ['*'])")
    empty = [g.name for g in out if not g.params]
    if empty:
        raise ValueError(f"train.clip_groups: group(s) {empty} match no parameter; check the patterns")
    return out


class GroupClipper:
    def __init__(self, named_params, groups: list[ClipGroup]):
        self.groups = assign_groups(named_params, groups)

    def describe(self) -> str:
        lines = ["Per-layer gradient clipping ACTIVE (on unscaled, all-reduced gradients, before the optimizer step):"]
        for g in self.groups:
            lines.append(f"  {g.name:<12} max_norm={g.max_norm:<6g} {len(g.params):>4} tensors {g.numel:>12,} params")
        return "\n".join(lines)

    def norms(self) -> dict[str, torch.Tensor]:
        """Pre-clip L2 norm per group (0-dim fp32 tensors; no host sync).

        `torch._foreach_norm` takes each group's per-tensor norms in a few multi-tensor kernels
        instead of one launch per tensor (~430 for the full GPT), accumulating in fp32.
        """
        result = {}
        for g in self.groups:
            grads = [p.grad for p in g.params if p.grad is not None]
            if not grads:
                result[g.name] = torch.zeros((), device=g.params[0].device)
                continue
            per_tensor = torch._foreach_norm(grads, 2, dtype=torch.float32)
            result[g.name] = torch.linalg.vector_norm(torch.stack(per_tensor))
        return result

    def clip_(self, norms: dict[str, torch.Tensor]) -> None:
        """Scale each group's gradients by min(1, max_norm / (norm + 1e-6)), on the device (no host sync).

        A non-finite norm makes the factor NaN or 0; the NaN guard skips that step, so those
        gradients are never applied."""
        for g in self.groups:
            grads = [p.grad for p in g.params if p.grad is not None]
            if grads:
                coef = torch.clamp(g.max_norm / (norms[g.name] + 1e-6), max=1.0)
                torch._foreach_mul_(grads, coef.to(grads[0].dtype))
