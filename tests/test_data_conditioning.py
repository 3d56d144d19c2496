"""amh.data.conditioning + samples: upstream's prompt slice, same-speaker prompts, determinism."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from amh.config import DataConfig
from amh.data.conditioning import NO_SPAN, pick_reference, prompt_span
from amh.data.filters import Rejected
from amh.data.samples import SampleMaker

SR = 22050
MIN, MAX = 3 * SR, 6 * SR


@given(st.integers(2, 12 * SR), st.integers(0, 2**32 - 1))
def test_training_span_is_inside_the_clip_and_3_to_6_s_when_it_fits(n, seed):
    start, end = prompt_span(n, MIN, MAX, np.random.default_rng(seed))
    assert 0 <= start < end <= n
    if n >= MAX:
        assert MIN <= end - start <= MAX
    elif n < MIN:
        assert end - start == n // 2  # upstream: a clip shorter than the drawn length gives half of it


def test_eval_span_is_the_midpoint_length_from_zero():
    assert prompt_span(10 * SR, MIN, MAX, None) == (0, (MIN + MAX) // 2)
    assert prompt_span(2 * SR, MIN, MAX, None) == (0, SR)


def test_spans_cover_the_range():
    rng = np.random.default_rng(0)
    spans = [prompt_span(11 * SR, MIN, MAX, rng) for _ in range(2000)]
    lengths = [e - s for s, e in spans]
    starts = [s for s, _ in spans]
    assert min(lengths) < MIN + 0.1 * SR and max(lengths) > MAX - 0.1 * SR
    assert min(starts) < 0.2 * SR and max(s + l for s, l in zip(starts, lengths)) > 10.8 * SR


def test_pick_reference():
    assert pick_reference([], np.random.default_rng(0)) is None
    assert pick_reference(["a", "b"], None) == "a"
    picks = {pick_reference(["a", "b", "c"], np.random.default_rng(s)) for s in range(50)}
    assert picks == {"a", "b", "c"}


def flac(seconds: float, freq: float, seed: int = 0) -> bytes:
    t = np.arange(round(seconds * SR)) / SR
    wav = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, wav.astype(np.float32), SR, format="FLAC")
    return buf.getvalue()


def row(row_id: str, seconds: float, freq: float, speaker: str = "s1") -> dict:
    return {"id": row_id, "audio": flac(seconds, freq), "text": "ab", "speaker": speaker}


def encode(text: str) -> list[int]:
    return [3 + ord(c) % 50 for c in text]


def test_same_utterance_prompt_is_a_slice_with_its_span():
    maker = SampleMaker(DataConfig(source="parquet", path="x"), encode, seed=1, training=True)
    s = maker(row("a", 8.0, 220), epoch=0)
    start, end = s.cond_span
    assert MIN <= end - start <= MAX
    np.testing.assert_array_equal(s.cond, s.wav[start:end])
    again = maker(row("a", 8.0, 220), epoch=0)
    assert again.cond_span == s.cond_span  # a rebuilt sample is the same sample (exact resume)
    spans = {maker(row("a", 8.0, 220), epoch=e).cond_span for e in range(6)}
    assert len(spans) > 1  # a new slice each epoch


def test_same_speaker_prompt_comes_from_another_utterance():
    cfg = DataConfig(source="parquet", path="x", conditioning="same_speaker")
    maker = SampleMaker(cfg, encode, seed=1, training=True)
    other = row("b", 9.0, 880)
    s = maker(row("a", 4.0, 220), epoch=0, references=[other])
    assert s.cond_span == NO_SPAN and MIN <= len(s.cond) <= MAX
    ref = maker.waveform(other)
    assert any(np.array_equal(s.cond, ref[i:i + len(s.cond)]) for i in range(0, len(ref) - len(s.cond) + 1))
    # no other utterance, or a broken one: fall back to the utterance itself, with its span
    alone = maker(row("a", 4.0, 220), epoch=0, references=[])
    broken = maker(row("a", 4.0, 220), epoch=0, references=[{"id": "x", "audio": b"junk", "text": "t", "speaker": "s1"}])
    assert alone.cond_span != NO_SPAN and broken.cond_span == alone.cond_span


def test_precomputed_prompt_is_used_as_stored():
    maker = SampleMaker(DataConfig(source="parquet", path="x"), encode, seed=1, training=True)
    r = row("a", 8.0, 220) | {"codes": [5, 6, 7], "cond_start": 100, "cond_end": 5000,
                              "cond_mels": np.ones((20, 80), np.float16).tolist()}
    s = maker(r, epoch=3)
    assert s.cond_span == (100, 5000) and len(s.cond) == 4900
    assert s.cond_mels.shape == (80, 20) and s.codes.tolist() == [5, 6, 7]


def test_rows_are_rejected_not_raised():
    maker = SampleMaker(DataConfig(source="parquet", path="x"), encode, seed=1, training=True)
    with pytest.raises(Rejected) as why:
        maker(row("a", 0.2, 220), epoch=0)
    assert why.value.reason.value == "too_short"
