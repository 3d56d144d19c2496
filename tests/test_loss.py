"""The per-sample loss: equals upstream's where upstream is right, a hand computation, never 0/0."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from amh.xtts.loss import IGNORE, masked_mean_ce, prompt_code_mask
from amh.xtts.forward import XttsGptForTraining
from amh.xtts.release import build_xtts


@pytest.fixture(scope="module")
def gpt_module(tiny_release):
    xtts, _ = build_xtts(tiny_release, tiny_release / "vocab.json")
    module = XttsGptForTraining(xtts.gpt)
    module.eval()  # dropout off: comparisons are exact
    return module


def _batch(batch_size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    text_lengths = torch.tensor([7, 4, 9][:batch_size])
    text = torch.randint(3, 40, (batch_size, int(text_lengths.max())), generator=g, dtype=torch.int32)
    for i, n in enumerate(text_lengths):
        text[i, n:] = 0
    wav_lengths = torch.tensor([30_000, 21_000, 40_000][:batch_size])
    n_codes = math.ceil(int(wav_lengths.max()) / 1024)
    codes = torch.randint(0, 64, (batch_size, n_codes), generator=g)
    cond_mels = torch.randn(batch_size, 80, 100, generator=g)
    return text, text_lengths, codes, wav_lengths, cond_mels


def test_matches_upstream_for_one_sample_without_prompt_mask(gpt_module):
    text, text_lengths, codes, wav_lengths, cond_mels = _batch(1)
    none = torch.full((1, 2), -1)
    ours = gpt_module(text, text_lengths, codes, wav_lengths, cond_mels, none)
    up_text, up_mel, _ = gpt_module.gpt(text, text_lengths, codes, wav_lengths, cond_mels=cond_mels[:, None],
                                         cond_idxs=None, cond_lens=None)
    torch.testing.assert_close(ours.text, up_text, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.mel, up_mel, rtol=1e-5, atol=1e-5)


def test_per_sample_loss_equals_hand_computation(gpt_module):
    batch = _batch(3)
    cond_idxs = torch.tensor([[0, 3000], [-1, -1], [5000, 12000]])
    text_logits, text_tgt, mel_logits, mel_tgt = gpt_module.logits_and_targets(*batch, cond_idxs)
    out = gpt_module(*batch, cond_idxs)
    text_lengths, wav_lengths = batch[1], batch[3]
    for i in range(3):
        n_text = int(text_lengths[i]) + 1  # tokens + [STOP]
        assert int((text_tgt[i] != IGNORE).sum()) == n_text
        n_codes = math.ceil(int(wav_lengths[i]) / 1024)
        start, end = cond_idxs[i].tolist()
        masked = set(range(start // 1024, math.ceil(end / 1024))) if start >= 0 else set()
        keep = [j for j in range(n_codes + 4) if j not in masked or j >= n_codes]
        assert (mel_tgt[i] != IGNORE).nonzero().flatten().tolist() == keep
        # Hand computation: mean of -log softmax at the kept targets.
        logp = F.log_softmax(mel_logits[i].float(), dim=0)
        expected = -torch.stack([logp[mel_tgt[i, j], j] for j in keep]).mean()
        torch.testing.assert_close(out.mel_per_sample[i], expected, rtol=1e-5, atol=1e-5)
        logp_t = F.log_softmax(text_logits[i].float(), dim=0)
        expected_t = -torch.stack([logp_t[text_tgt[i, j], j] for j in range(n_text)]).mean()
        torch.testing.assert_close(out.text_per_sample[i], expected_t, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.total, 0.01 * out.text_per_sample.mean() + out.mel_per_sample.mean())


def test_batch_of_one_with_prompt_at_sample_zero_is_finite(gpt_module):
    batch = _batch(1)
    # The whole utterance as prompt: only the stop codes remain supervised.
    cond_idxs = torch.tensor([[0, int(batch[3][0])]])
    out = gpt_module(*batch, cond_idxs)
    assert torch.isfinite(out.total) and torch.isfinite(out.mel)
    # Upstream's loss is NaN for the same input (gpt.py:463-466).
    up = gpt_module.gpt(*batch[:4], cond_mels=batch[4][:, None], cond_idxs=torch.tensor([[0, 22050]]), cond_lens=None)
    assert torch.isnan(up[1])


def test_prompt_mask_units_are_codes():
    mask = prompt_code_mask(torch.tensor([[1024, 3072], [100, 1100], [-1, -1]]), 6, 1024)
    assert mask.tolist() == [
        [False, True, True, False, False, False],
        [True, True, False, False, False, False],
        [False] * 6,
    ]


def test_masked_mean_never_divides_by_zero():
    logits = torch.randn(2, 5, 3)
    targets = torch.full((2, 3), IGNORE)
    assert torch.equal(masked_mean_ce(logits, targets), torch.zeros(2))


def test_eval_sums_follow_upstreams_eval_convention(gpt_module):
    """eval/loss*: no prompt mask and token means over the batch, as GPTTrainer.eval_step computes them
    (cond_idxs=None); eval/objective*: the training objective (prompt masked, per-sample means)."""
    for size in (1, 3):
        batch = _batch(size)
        text, text_lengths, codes, wav_lengths, cond_mels = batch
        cond_idxs = torch.tensor([[0, 3000], [-1, -1], [5000, 12000]][:size])
        sums = gpt_module.eval_sums(*batch, cond_idxs)
        up_text, up_mel, _ = gpt_module.gpt(text, text_lengths, codes, wav_lengths, cond_mels=cond_mels[:, None],
                                             cond_idxs=None, cond_lens=None)
        torch.testing.assert_close(sums[0] / sums[1], up_text, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sums[2] / sums[3], up_mel, rtol=1e-5, atol=1e-5)
        masked = gpt_module(*batch, cond_idxs)
        assert sums[6].item() == size
        torch.testing.assert_close(sums[4] / size, masked.text, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sums[5] / size, masked.mel, rtol=1e-5, atol=1e-5)
