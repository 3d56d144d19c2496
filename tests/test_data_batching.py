"""amh.data.batching: bucket plans and the padded Batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from amh.data.batching import collate, padding_efficiency, plan_batches
from amh.data.conditioning import NO_SPAN
from amh.data.samples import Sample

lengths_st = st.lists(st.integers(1, 300_000), min_size=0, max_size=80)


@given(lengths_st, st.integers(1, 9))
def test_count_plan_partitions_into_batches_of_neighbours(lengths, batch_size):
    groups = plan_batches(lengths, batch_size=batch_size, max_batch_samples=None, sort=True)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) == batch_size for g in groups[:-1]) and all(0 < len(g) <= batch_size for g in groups)
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(lengths)  # neighbours in length


@given(lengths_st, st.integers(50_000, 500_000))
def test_seconds_plan_respects_the_padded_cap(lengths, cap):
    groups = plan_batches(lengths, batch_size=1, max_batch_samples=cap, sort=True)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= cap
    # greedy: the next clip would not have fitted into the previous batch
    for a, b in zip(groups, groups[1:]):
        assert (len(a) + 1) * max(lengths[i] for i in a + b[:1]) > cap


@given(lengths_st, st.integers(50_000, 500_000), st.integers(1, 6))
def test_seconds_plan_with_a_clip_cap(lengths, cap, max_count):
    groups = plan_batches(lengths, batch_size=1, max_batch_samples=cap, sort=True, max_count=max_count)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) <= max_count and (len(g) == 1 or len(g) * max(lengths[i] for i in g) <= cap)
    # greedy: the next clip would have broken the seconds cap or the count cap
    for a, b in zip(groups, groups[1:]):
        assert len(a) == max_count or (len(a) + 1) * max(lengths[i] for i in a + b[:1]) > cap


def test_unsorted_plan_keeps_arrival_order():
    assert plan_batches([5, 1, 4, 2, 3], batch_size=2, max_batch_samples=None, sort=False) == [[0, 1], [2, 3], [4]]


def sample(n: int, text: int, span=(0, 10), codes: int | None = None) -> Sample:
    wav = np.linspace(-1, 1, n, dtype=np.float32)
    return Sample(f"id{n}", "spk", np.arange(3, 3 + text, dtype=np.int64), wav, wav[span[0]:span[1]] if span != NO_SPAN
                  else np.ones(7, np.float32), span,
                  None if codes is None else np.arange(codes, dtype=np.int64),
                  None if codes is None else np.ones((80, codes + 2), np.float32))


def test_collate_pads_with_zeros_and_counts_real_content():
    b = collate([sample(100, 4), sample(60, 7, NO_SPAN)])
    assert b["text"].shape == (2, 7) and b["text"].dtype == torch.long
    assert b["text"][0, 4:].eq(0).all() and b["text_lengths"].tolist() == [4, 7]
    assert b["wav"].shape == (2, 1, 100) and b["wav"].dtype == torch.float32 and b["wav"][1, 0, 60:].eq(0).all()
    assert b["wav_lengths"].tolist() == [100, 60] and b["cond_lengths"].tolist() == [10, 7]
    assert b["cond"].shape == (2, 1, 10) and b["cond_idxs"].tolist() == [[0, 10], [-1, -1]]
    assert b["n_audio_samples"] == 160 and b["n_text_tokens"] == 11
    assert padding_efficiency(b) == pytest.approx(160 / 200)
    assert "codes" not in b and "cond_mels" not in b
    assert b["ids"] == ["id100", "id60"] and b["speakers"] == ["spk", "spk"]


def test_collate_carries_precomputed_codes_and_mels():
    b = collate([sample(4096, 3, codes=4), sample(2048, 3, codes=2)])
    assert b["codes"].shape == (2, 4) and b["codes"].dtype == torch.long and b["codes"][1, 2:].eq(0).all()
    assert b["cond_mels"].shape == (2, 80, 6) and b["cond_mels"][1, :, 4:].eq(0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs a GPU")
def test_pinned_by_the_dataloader():
    loader = torch.utils.data.DataLoader([collate([sample(100, 4)])], batch_size=None, pin_memory=True)
    assert next(iter(loader))["wav"].is_pinned()
