"""XTTS GPT loss, correct per sample: text CE + mel-code CE with each sample's own prompt masked.

Upstream (gpt.py:463-466) masks the conditioning span in the wrong units (mel frames of 256
samples applied to codes of 1024) and only for the last batch element; a batch of 1 whose prompt
starts before sample 256 has no mel targets left and its loss is 0/0 = NaN. Here every sample
masks its own span in code units, the stop tokens are never masked, and each denominator is at
least one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -1


@dataclass
class LossOutput:
    total: torch.Tensor  # weighted, batch mean of per-sample losses
    text: torch.Tensor  # unweighted text CE, batch mean
    mel: torch.Tensor  # unweighted mel CE, batch mean
    text_per_sample: torch.Tensor  # (B,)
    mel_per_sample: torch.Tensor  # (B,)
    total_per_sample: torch.Tensor  # (B,) weighted: what a sample contributes to an update

    def window_sum(self) -> torch.Tensor:
        """The micro-batch's share of an update's objective: the sum of its samples' weighted losses.

        The trainer divides it by the samples of the whole accumulation window on all ranks
        (`amh.train.step.window_scale`), so that every sample weighs the same however the window is split.
        """
        return self.total_per_sample.sum()


def prompt_code_mask(cond_idxs: torch.Tensor, length: int, samples_per_code: int) -> torch.Tensor:
    """(B, length) bool: mel-target positions whose code overlaps the sample span [start, end).

    Target position j predicts code j (inputs are shifted right by the start token), and code j
    covers samples [j*spc, (j+1)*spc). A span of -1s (conditioning from another utterance)
    masks nothing.
    """
    start = cond_idxs[:, :1]
    end = cond_idxs[:, 1:]
    j = torch.arange(length, device=cond_idxs.device)[None, :]
    first = torch.div(start, samples_per_code, rounding_mode="floor")
    last = torch.div(end + samples_per_code - 1, samples_per_code, rounding_mode="floor")  # exclusive
    return (start >= 0) & (j >= first) & (j < last)


def masked_mean_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample mean CE over targets != IGNORE. logits (B, C, T), targets (B, T) -> (B,)."""
    ce = F.cross_entropy(logits.float(), targets.clamp_min(0), reduction="none")
    valid = targets != IGNORE
    return (ce * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1)


def xtts_loss(text_logits: torch.Tensor, text_targets: torch.Tensor, mel_logits: torch.Tensor,
              mel_targets: torch.Tensor, *, text_weight: float, mel_weight: float) -> LossOutput:
    text = masked_mean_ce(text_logits, text_targets)
    mel = masked_mean_ce(mel_logits, mel_targets)
    per_sample = text_weight * text + mel_weight * mel
    return LossOutput(
        total=per_sample.mean(),
        text=text.mean(),
        mel=mel.mean(),
        text_per_sample=text,
        mel_per_sample=mel,
        total_per_sample=per_sample,
    )
