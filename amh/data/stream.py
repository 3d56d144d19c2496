"""One DataLoader worker's batches for one epoch, with a small, exact position after every batch.

The worker reads its rows in *blocks* of `data.shuffle_buffer` undecoded rows. A block is permuted
(seeded by seed, epoch, rank, worker, block), then consumed in *windows*: decode/filter rows until
`data.bucket_buffer` new samples are kept, sort the window by duration, cut it into batches of
neighbours, shuffle those batches and emit them. The last, incomplete batch of a window is carried
into the next window; at the end of a block everything left is emitted.

The position after a batch is therefore: the `datasets` reader state at the block's start, the
block number, how many rows of the permuted block have been processed, and, as block positions,
the batches still pending in the current window and the carried samples. Every sample is a
deterministic function of its row and (seed, epoch) (`samples.py`), so resuming re-reads one block
(no decoding), re-makes only the pending samples, and continues: the batches that follow are
exactly those an uninterrupted run yields. Samples drawn from the rows' decoded audio never leave
the current window, so memory is bounded by the block (encoded bytes) and the window (decoded audio),
never by the size of the source.
"""
from __future__ import annotations

import copy
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Literal

import datasets
import numpy as np

from amh.config import DataConfig
from amh.data.batching import Batch, collate, plan_batches
from amh.data.filters import FilterStats, Rejected
from amh.data.samples import Sample, SampleMaker, stable_hash
from amh.data.sources import canonical_row, in_split

@dataclass(frozen=True)
class StreamSpec:
    """What every worker of a rank needs to cut the same stream the same way."""

    data: DataConfig
    split: Literal["train", "eval"]
    batch_size: int
    seed: int
    rank: int
    training: bool

    @property
    def max_batch_samples(self) -> int | None:
        seconds = self.data.max_batch_seconds
        return None if seconds is None else round(seconds * self.data.sample_rate)

    @property
    def cond_samples(self) -> int:
        """Every prompt is zero-padded to this many samples (upstream's convention; see `collate`)."""
        return round(self.data.max_conditioning_seconds * self.data.sample_rate)

    @property
    def bucketing(self) -> bool:
        return self.data.bucket_buffer > 0

    @property
    def window_size(self) -> int:
        """New samples per window (bucket_buffer; without bucketing, one batch's worth)."""
        return self.data.bucket_buffer if self.bucketing else self.batch_size

    def full(self, group: Sequence) -> bool:
        return self.max_batch_samples is None and len(group) == self.batch_size


def reader_epoch(seed: int, epoch: int, training: bool) -> int:
    """The epoch given to `datasets` (it reshuffles shard order by it): seeded, and != 0 so that the
    first epoch is shuffled too. Eval reads shards in order."""
    return 1 + stable_hash("shards", seed, epoch) % (2**31 - 1) if training else 0


def _rng(spec: StreamSpec, *keys: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, spec.rank, *keys])


class _Others(Sequence):
    """The other rows of a speaker in the block (`members`: their block positions, ascending, incl. `me`)."""

    def __init__(self, block: list[dict], members: list[int], me: int):
        self.block, self.members, self.skip = block, members, bisect_left(members, me)

    def __len__(self) -> int:
        return len(self.members) - 1

    def __getitem__(self, k: int) -> dict:
        return self.block[self.members[k if k < self.skip else k + 1]]


def worker_batches(
    rows: datasets.IterableDataset,
    maker: SampleMaker,
    spec: StreamSpec,
    *,
    worker: int,
    epoch: int,
    resume: dict | None,
) -> Iterator[tuple[Batch | None, dict]]:
    """Yield (batch, position after it); the last item is (None, final position) with done=True.

    `rows` must already be set to this epoch (`reader_epoch`) and, inside a DataLoader worker,
    `datasets` gives it only this worker's shards.
    """
    rows = copy.copy(rows)  # load_state_dict below must not stick to the caller's dataset
    stats = FilterStats.from_dict(resume["stats"]) if resume else FilterStats()
    if resume and resume["done"]:
        yield None, resume
        return
    block_idx = resume["block"] if resume else 0
    if resume and resume["reader"] is not None:
        rows.load_state_dict(resume["reader"])
    reader_state = resume["reader"] if resume else None
    source = iter(rows)
    inside = resume  # position inside the first block when resuming

    while True:
        if block_idx > 0 and inside is None:
            reader_state = rows.state_dict()
        block = _read_block(source, spec)
        if not block:
            break
        order = _rng(spec, epoch, worker, block_idx).permutation(len(block)) if spec.training \
            else np.arange(len(block))
        speakers: dict[str, list[int]] = defaultdict(list)
        if maker.needs_references:
            for i, row in enumerate(block):
                speakers[row["speaker"]].append(i)

        def make(i: int, count: bool) -> tuple[int, Sample] | None:
            refs = _Others(block, speakers[block[i]["speaker"]], i) if maker.needs_references else ()
            try:
                sample = maker(block[i], epoch=epoch, references=refs)
            except Rejected as why:
                stats.add_rejected(block[i]["id"], why)
                return None
            if count:
                stats.add_kept(sample.n_samples / spec.data.sample_rate)
            return i, sample

        def rebuild(positions: list[int]) -> list[tuple[int, Sample]]:  # already counted as kept
            return [s for s in (make(i, count=False) for i in positions) if s is not None]

        if inside is not None:
            cursor, window = inside["cursor"], inside["window"]
            pending = [b for b in (rebuild(p) for p in inside["pending"]) if b]
            carry = rebuild(inside["carry"])
            inside = None
        else:
            cursor, window, pending, carry = 0, 0, [], []

        while True:
            while pending:
                batch = pending.pop(0)
                yield collate([s for _, s in batch], cond_samples=spec.cond_samples), {
                    "worker": worker, "epoch": epoch, "done": False,
                    "block": block_idx, "reader": reader_state, "cursor": cursor, "window": window,
                    "pending": [[i for i, _ in b] for b in pending], "carry": [i for i, _ in carry],
                    "stats": stats.to_dict(),
                }
            if cursor >= len(order) and not carry:
                break
            fresh: list[tuple[int, Sample]] = []
            while cursor < len(order) and len(fresh) < spec.window_size:
                i = int(order[cursor])
                made = make(i, count=True)
                cursor += 1
                if not maker.needs_references:
                    block[i] = None  # its bytes are decoded now; a resume re-reads the block anyway
                if made is not None:
                    fresh.append(made)
            samples = carry + fresh
            groups = plan_batches([s.n_samples for _, s in samples], batch_size=spec.batch_size,
                                  max_batch_samples=spec.max_batch_samples, sort=spec.bucketing,
                                  max_count=spec.data.max_batch_size)
            carry = []
            if cursor < len(order) and groups and not spec.full(groups[-1]):
                carry = [samples[k] for k in groups.pop()]
            pending = [[samples[k] for k in g] for g in groups]
            if spec.training:
                _rng(spec, epoch, worker, block_idx, window + 1).shuffle(pending)
            window += 1
        block_idx += 1

    yield None, {"worker": worker, "epoch": epoch, "done": True, "block": block_idx,
                 "reader": None, "cursor": 0, "window": 0, "pending": [], "carry": [], "stats": stats.to_dict()}


def _read_block(source: Iterator[dict], spec: StreamSpec) -> list[dict]:
    rows = (canonical_row(raw, spec.data) for raw in source)
    return list(islice((r for r in rows if in_split(r, spec.split, spec.data)), spec.data.shuffle_buffer))
