"""The trainable module: XTTS's GPT with a teacher-forced forward that returns our loss.

We build inputs and targets like upstream `GPT.forward` (gpt.py:290-475) — [32 perceiver latents |
[START] text [STOP] | <start_audio> codes <stop_audio>], 4 supervised stop codes per sample — but
vectorised (no Python loops over the batch, no host syncs) and with `amh.xtts.loss` instead of the
upstream loss. It is one nn.Module so that DDP/DeepSpeed wrap it and its state dict keys are the
release's `gpt.*` keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from amh.xtts.loss import IGNORE, LossOutput, prompt_code_mask, xtts_loss


def _positions(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) bool, True where position < lengths[b]."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


class XttsGptForTraining(nn.Module):
    def __init__(self, gpt: nn.Module, *, text_weight: float = 0.01, mel_weight: float = 1.0):
        super().__init__()
        self.gpt = gpt
        self.text_weight = text_weight
        self.mel_weight = mel_weight
        # Training builds no KV cache (transformers 5 would build a DynamicCache every step).
        gpt.gpt.config.use_cache = False

    def logits_and_targets(self, text, text_lengths, codes, wav_lengths, cond_mels, cond_idxs):
        g = self.gpt
        batch = text.shape[0]
        spc = g.code_stride_len
        code_lengths = torch.div(wav_lengths + spc - 1, spc, rounding_mode="floor")  # real codes per sample
        # Width from the padded waveform's shape, not lengths.max(): no host sync.
        width = codes.shape[1] + 3
        codes = F.pad(codes, (0, width - codes.shape[1]))
        codes = torch.where(_positions(code_lengths, width), codes, torch.full_like(codes, g.stop_audio_token))
        codes = F.pad(codes, (0, 1), value=g.stop_audio_token)
        mel_in = F.pad(codes, (1, 0), value=g.start_audio_token)
        mel_tgt = F.pad(codes, (0, 1), value=g.stop_audio_token)
        # Upstream supervises real codes + 4 stop tokens (targets up to code_lengths + 3).
        mel_keep = _positions(code_lengths + 4, mel_tgt.shape[1])
        mel_tgt = mel_tgt.masked_fill(~mel_keep, IGNORE)
        mel_tgt = mel_tgt.masked_fill(prompt_code_mask(cond_idxs, mel_tgt.shape[1], spc) & (mel_tgt != g.stop_audio_token), IGNORE)

        text = text.long()
        text = F.pad(text, (0, 1), value=g.stop_text_token)
        text_in = F.pad(text, (1, 0), value=g.start_text_token)
        text_tgt = F.pad(text, (0, 1), value=g.stop_text_token)
        # Target j < len is a text token, j == len is the stop token; padding is ignored.
        text_tgt = text_tgt.masked_fill(~_positions(text_lengths + 1, text_tgt.shape[1]), IGNORE)
        text_tgt = torch.where(_positions(text_lengths, text_tgt.shape[1]) | (text_tgt == IGNORE), text_tgt,
                               torch.full_like(text_tgt, g.stop_text_token))

        text_mask = _positions(text_lengths + 1, text_in.shape[1])
        mel_mask = _positions(code_lengths + 4, mel_in.shape[1])
        text_emb = g.text_embedding(text_in) + g.text_pos_embedding(text_in)
        mel_emb = g.mel_embedding(mel_in) + g.mel_pos_embedding(mel_in)
        cond_latents = g.get_style_emb(cond_mels).transpose(1, 2)
        text_logits, mel_logits = g.get_logits(
            text_emb, g.text_head, mel_emb, g.mel_head, prompt=cond_latents,
            attn_mask_text=text_mask, attn_mask_mel=mel_mask,
        )
        assert text_logits.shape[0] == batch
        return text_logits, text_tgt, mel_logits, mel_tgt

    @torch.no_grad()
    def eval_sums(self, text, text_lengths, codes, wav_lengths, cond_mels, cond_idxs) -> torch.Tensor:
        """Sums for the two eval reports of one batch, as a (7,) fp32 tensor to all-reduce and add up:

        [0:4] upstream's convention (GPTTrainer.eval_step passes cond_idxs=None, so nothing is masked,
        and F.cross_entropy averages over tokens): text CE sum, text targets, mel CE sum, mel targets;
        [4:7] our training objective (prompt span masked, per-sample means): sums over the batch of
        the per-sample text CE and mel CE, and the number of samples.
        """
        unmasked = torch.full_like(cond_idxs, -1)
        text_logits, text_tgt, mel_logits, mel_tgt = self.logits_and_targets(
            text, text_lengths, codes, wav_lengths, cond_mels, unmasked)
        g = self.gpt
        prompt = prompt_code_mask(cond_idxs, mel_tgt.shape[1], g.code_stride_len) & (mel_tgt != g.stop_audio_token)
        masked = xtts_loss(text_logits, text_tgt, mel_logits, mel_tgt.masked_fill(prompt, IGNORE),
                           text_weight=self.text_weight, mel_weight=self.mel_weight)
        sums = []
        for logits, tgt in ((text_logits, text_tgt), (mel_logits, mel_tgt)):
            ce = F.cross_entropy(logits.float(), tgt.clamp_min(0), reduction="none")
            valid = tgt != IGNORE
            sums += [(ce * valid).sum(), valid.sum().float()]
        return torch.stack(sums + [masked.text_per_sample.sum(), masked.mel_per_sample.sum(),
                                   torch.tensor(float(text.shape[0]), device=text.device)])

    def forward(self, text, text_lengths, codes, wav_lengths, cond_mels, cond_idxs) -> LossOutput:
        text_logits, text_tgt, mel_logits, mel_tgt = self.logits_and_targets(
            text, text_lengths, codes, wav_lengths, cond_mels, cond_idxs)
        return xtts_loss(text_logits, text_tgt, mel_logits, mel_tgt,
                         text_weight=self.text_weight, mel_weight=self.mel_weight)
