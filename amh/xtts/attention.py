"""The conditioning encoder's attention through PyTorch's fused kernel: the same function, less work.

Upstream's `QKVAttentionLegacy` (tortoise/arch_utils.py) computes softmax(q k^T / sqrt(d)) v with two
einsums and materialises every (heads x frames x frames) weight matrix; over a 6 s prompt (517 mel
frames, 16 heads, 6 blocks) those matrices and their softmax backward are a fifth of a mid-size CPU
step. `F.scaled_dot_product_attention` on contiguous (batch, heads, frames, dim) tensors takes the
flash kernel on CPU (and flash or memory-efficient ones on CUDA): the same result within fp32
rounding (tests/test_step.py pins 1e-5), O(frames) saved memory instead of O(frames^2), and no
parameters, so state dicts and exports are unchanged. The einsum path is kept for what the fused
kernel does not do here (a mask or relative position bias; XTTS v2 uses neither).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FusedQKVAttention(nn.Module):
    """Drop-in for `QKVAttentionLegacy`: [N x (H*3*C) x T] qkv in, [N x (H*C) x T] out."""

    def __init__(self, legacy: nn.Module):
        super().__init__()
        self.n_heads = legacy.n_heads
        self.legacy = legacy

    def forward(self, qkv: torch.Tensor, mask=None, rel_pos=None) -> torch.Tensor:
        if mask is not None or rel_pos is not None:
            return self.legacy(qkv, mask, rel_pos)
        bs, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        # Upstream's layout: heads outermost, then q|k|v, then channels (reshape, then split on dim 1).
        q, k, v = qkv.reshape(bs, self.n_heads, 3 * ch, length).split(ch, dim=2)
        # The kernels want the head dim last with unit stride: one copy each, instead of T x T weights.
        q, k, v = (t.transpose(2, 3).contiguous() for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # (bs, heads, T, ch)
        return out.transpose(2, 3).reshape(bs, -1, length)


def fuse_conditioning_attention_(gpt: nn.Module) -> int:
    """Swap every `QKVAttentionLegacy` under `gpt` (the conditioning encoder's) in place; returns how many."""
    from TTS.tts.layers.tortoise.arch_utils import AttentionBlock, QKVAttentionLegacy

    swapped = 0
    for module in gpt.modules():
        if isinstance(module, AttentionBlock) and isinstance(module.attention, QKVAttentionLegacy):
            module.attention = FusedQKVAttention(module.attention)
            swapped += 1
    return swapped
