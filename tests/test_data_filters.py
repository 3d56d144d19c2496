"""amh.data.filters: one reason per bad row, counts that merge, messages that say what to fix."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from amh.config import DataConfig
from amh.data.filters import EXAMPLES_PER_REASON, FilterStats, Reason, Rejected, check_audio, check_text, check_tokens

CFG = DataConfig(source="parquet", path="x")
SR = CFG.sample_rate


def reason_of(fn, *args) -> str | None:
    try:
        fn(*args)
    except Rejected as why:
        return why.reason.value
    return None


def noise(seconds: float, amplitude: float = 0.1) -> np.ndarray:
    return (amplitude * np.random.default_rng(0).standard_normal(round(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("text,reason", [("", "empty_text"), ("   \n", "empty_text"), (None, "empty_text"),
                                         ("ሰላም", None)])
def test_text(text, reason):
    assert reason_of(check_text, text) == reason


@pytest.mark.parametrize("ids,reason", [([], "empty_text"), ([5, 1, 7], "unknown_token"), ([5] * 201, "text_too_long"),
                                        ([5] * 200, None), ([1] * 300, "unknown_token")])
def test_tokens(ids, reason):
    assert reason_of(check_tokens, ids, "t", CFG.max_text_tokens) == reason


@pytest.mark.parametrize("wav,reason", [
    (noise(2.0), None),
    (np.full(SR, np.nan, np.float32), "non_finite"),
    (np.concatenate([noise(1.0), [np.inf]]).astype(np.float32), "non_finite"),
    (noise(0.49), "too_short"),
    (noise(0.5), None),
    (noise(11.0), None),
    (noise(11.01), "too_long"),
    (np.zeros(2 * SR, np.float32), "silence"),
    (noise(2.0, amplitude=5e-4), "silence"),
])
def test_audio(wav, reason):
    assert reason_of(check_audio, wav, CFG) == reason


def test_audio_checks_come_in_reason_order():
    # NaN and too short at once: non_finite is checked first
    assert reason_of(check_audio, np.full(100, np.nan, np.float32), CFG) == "non_finite"
    # silent and too long: too_long first
    assert reason_of(check_audio, np.zeros(20 * SR, np.float32), CFG) == "too_long"


def test_stats_count_examples_and_messages():
    stats = FilterStats()
    for i in range(8):
        message = stats.add_rejected(f"row{i}", Rejected(Reason.TOO_LONG, f"{12 + i}.0 s > 11"))
        assert (message is not None) == (i < EXAMPLES_PER_REASON)
    stats.add_kept(3.0)
    assert stats.counts["too_long"] == 8 and stats.seen == 9 and stats.kept == 1 and stats.dropped == 8
    assert stats.examples["too_long"] == [f"row{i}" for i in range(EXAMPLES_PER_REASON)]
    assert stats.messages[0] == "skipped row 'row0': too_long: 12.0 s > 11"
    assert FilterStats.from_dict(stats.to_dict()) == stats
    assert "too_long: 8 (e.g. row0" in stats.summary()
    scalars = stats.scalars()
    assert scalars["data/dropped/too_long"] == 8 and scalars["data/rows_kept"] == 1


reasons = st.sampled_from(list(Reason))


@given(st.lists(st.tuples(st.integers(0, 3), st.one_of(st.none(), reasons)), max_size=60))
def test_merge_equals_counting_everything_in_one(events):
    """Counting rows in several workers and merging == counting them all in one place."""
    parts = [FilterStats() for _ in range(4)]
    whole = FilterStats()
    for n, (worker, reason) in enumerate(events):
        for stats in (parts[worker], whole):
            if reason is None:
                stats.add_kept(1.0)
            else:
                stats.add_rejected(f"r{n}", Rejected(reason))
    merged = FilterStats()
    for p in parts:
        merged = merged.merge(p)
    assert (merged.seen, merged.kept, merged.counts) == (whole.seen, whole.kept, whole.counts)
    assert all(len(v) <= EXAMPLES_PER_REASON for v in merged.examples.values())
    assert all(set(merged.examples[r]) <= {f"r{n}" for n, (_, rr) in enumerate(events) if rr and rr.value == r}
               for r in merged.examples)


def test_empty_source_message_names_top_reasons_and_fixes():
    stats = FilterStats()
    for i in range(5):
        stats.add_rejected(f"long{i}", Rejected(Reason.TOO_LONG))
    stats.add_rejected("bad", Rejected(Reason.DECODE_ERROR))
    message = stats.explain_empty("data.source=hub 'x/y' split 'train'")
    assert message.startswith("data.source=hub 'x/y' split 'train': all 6 rows were filtered out")
    assert message.index("too_long x5") < message.index("decode_error x1")
    assert "data.max_audio_seconds" in message and "long0" in message
    assert "no rows at all" in FilterStats().explain_empty("s")


def test_rejected_crosses_process_boundaries():
    import pickle

    why = pickle.loads(pickle.dumps(Rejected(Reason.SILENCE, "RMS 0")))
    assert (why.reason, why.detail, str(why)) == (Reason.SILENCE, "RMS 0", "silence: RMS 0")


def test_all_reduce_without_distributed_is_identity():
    stats = FilterStats()
    stats.add_kept(1.0)
    assert stats.all_reduce() is stats
