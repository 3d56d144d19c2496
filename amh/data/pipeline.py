"""`build_loader`: this rank's stream of batches, resumable at the exact batch.

Ranks: `datasets.distributed.split_dataset_by_node` gives each rank its own shards (or, when the
shard count does not split evenly, every world_size-th row), so no two ranks see the same row in
an epoch. Workers: inside each DataLoader worker `datasets` hands the worker its own shards of the
rank's part; each worker runs `stream.worker_batches` on them.

Order and position: the Loader takes batches from the workers in a fixed round-robin (worker 0, 1,
..., skipping finished workers) and records, for every worker, the position after the last batch
it handed to the trainer, plus whose turn is next. That dict is the checkpointed state; on resume
each worker continues from its own position and the round-robin starts at the saved turn, so the
batches that follow are those an uninterrupted run yields. (torchdata's StatefulDataLoader does the
same bookkeeping, but it cannot carry the per-worker filter counts, which must travel with the
batches anyway, and it would add a dependency for ~40 lines.)

Uneven ranks: filtering leaves ranks with different numbers of batches, and DDP hangs if one rank
stops early. When torch.distributed is initialised, the ranks agree before every batch (a one-int
all-reduce on a gloo group, no GPU sync) and the epoch ends for all when any rank runs out.
"""
from __future__ import annotations

import copy
import logging
import os
import pickle
import tempfile
from collections import deque
from collections.abc import Iterator
from typing import Literal

import torch
import torch.distributed as dist
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from amh.config import ConfigError, DataConfig
from amh.data.batching import Batch
from amh.data.filters import FilterStats
from amh.data.samples import SampleMaker, TextEncoder
from amh.data.sources import describe, open_rows
from amh.data.stream import StreamSpec, reader_epoch, worker_batches

logger = logging.getLogger(__name__)

# Split ranks by shard when there are this many shards per rank (imbalance <= ~1/32 of an epoch,
# which the ranks' agreement to stop together drops); with fewer, every rank reads all rows and
# keeps every world_size-th one (balanced, but each rank reads everything).
MIN_SHARDS_PER_RANK = 32
STATE_VERSION = 1
# Batches each worker keeps ready (DataLoader's default is 2): a bucketed batch of long clips takes
# a worker longer to decode than a fast GPU takes to step it.
PREFETCH_FACTOR = 4


class DataError(RuntimeError):
    """The data cannot train anything (e.g. every row was filtered out); the message says why."""


class _RankBatches(IterableDataset):
    """This rank's batches. In a DataLoader worker, `datasets` restricts `rows` to the worker's shards.

    Persistent workers keep the copy of this object they were started with, so the Loader hands
    each pass's epoch and resume positions to them through `pass_file` (a pickle it writes before
    every pass), not through attributes.
    """

    def __init__(self, rows, maker: SampleMaker, spec: StreamSpec):
        self.rows, self.maker, self.spec = rows, maker, spec
        self.epoch = 0
        self.resume: dict[int, dict] = {}  # worker -> position, set by the Loader before each pass
        self.pass_file: str | None = None

    def __iter__(self) -> Iterator[tuple[int, Batch | None, dict]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        epoch, resume, rows = self.epoch, self.resume, self.rows
        if info is not None and self.pass_file is not None:
            with open(self.pass_file, "rb") as f:
                epoch, resume = pickle.load(f)
            # A persistent worker runs many passes on one copy of `rows`; a resumed pass's reader
            # state must not reach the next pass (without this copy the pass after a resumed one
            # read other rows: tests/test_data_pipeline.py's exact-resume test with workers).
            rows = copy.deepcopy(rows)
        rows.set_epoch(reader_epoch(self.spec.seed, epoch, self.spec.training))
        for batch, state in worker_batches(rows, self.maker, self.spec, worker=worker, epoch=epoch,
                                           resume=resume.get(worker)):
            yield worker, batch, state


class Loader:
    """Iterable of `Batch` for one rank. See the module docstring for order, resume and ranks.

    `epoch` is the epoch the next pass reads; it advances when a pass ends. A training Loader's
    `iter()` continues from its position (a fresh one, or one loaded by `load_state_dict`); an eval
    Loader (training=False) starts every pass at the beginning.
    """

    def __init__(self, dataset: _RankBatches, *, num_workers: int, source: str, rank: int, world_size: int,
                 epoch: int, group):
        self._dataset = dataset
        self.num_workers = num_workers
        self.source = source
        self.rank, self.world_size = rank, world_size
        self.training = dataset.spec.training
        self._group = group  # None: ranks don't coordinate (single process, or no torch.distributed)
        self._epoch = epoch
        self._positions: dict[int, dict] = {}  # worker -> state after the last batch it handed out
        self._next_worker = 0
        self._stats_done = FilterStats()  # passes that ended
        self._padding = [0, 0]  # real, padded audio samples over every batch handed out
        self._logged: set[str] = set()  # skipped-row messages already logged (once per run, not per epoch)
        self._loader: DataLoader | None = None  # built on the first pass, see _data_loader
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._pass_file = ""

    # ---- position --------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Read `epoch` next; a saved position inside another epoch is dropped."""
        if epoch != self._epoch:
            self._epoch, self._positions, self._next_worker = epoch, {}, 0

    @property
    def padding_efficiency(self) -> float:
        """Real / padded audio samples over every batch handed out so far (1.0 before any)."""
        real, padded = self._padding
        return real / padded if padded else 1.0

    def filter_stats(self) -> FilterStats:
        """This rank's counts, all workers and passes merged (`.all_reduce()` merges the ranks)."""
        stats = self._stats_done
        for state in self._positions.values():
            stats = stats.merge(FilterStats.from_dict(state["stats"]))
        return stats

    def state_dict(self) -> dict:
        """Every rank's position. A collective when torch.distributed is initialised: call it on
        all ranks (Accelerate's `save_state` does, for objects given to `register_for_checkpointing`)."""
        mine = {
            "rank": self.rank, "world_size": self.world_size, "num_workers": self.num_workers,
            "stream": self._stream_key(), "epoch": self._epoch, "next_worker": self._next_worker,
            "positions": copy.deepcopy(self._positions), "stats_done": self._stats_done.to_dict(),
            "padding": list(self._padding),
        }
        ranks = [mine]
        if self._group is not None:
            ranks = [None] * self.world_size
            dist.all_gather_object(ranks, mine, group=self._group)
        return {"version": STATE_VERSION, "ranks": ranks}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"data loader state version {state.get('version')!r} is not {STATE_VERSION}: it was "
                             "saved by another amh-xtts release; resume with that release or start the data afresh")
        ranks = state["ranks"]
        mine = ranks[self.rank] if len(ranks) == self.world_size else ranks[0]
        self._epoch = mine["epoch"]
        self._stats_done = FilterStats.from_dict(mine["stats_done"])
        self._padding = list(mine["padding"])
        saved = {"world_size": len(ranks), "num_workers": mine["num_workers"], **mine["stream"]}
        now = {"world_size": self.world_size, "num_workers": self.num_workers, **self._stream_key()}
        if saved == now:
            self._positions = copy.deepcopy(mine["positions"])
            self._next_worker = mine["next_worker"]
        else:
            changed = ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in now if saved.get(k) != now[k])
            logger.warning("the saved data position does not fit this run (%s): epoch %d restarts from its beginning",
                           changed, self._epoch)
            self._positions, self._next_worker = {}, 0
        self._logged = set(self.filter_stats().messages)

    def _stream_key(self) -> dict:
        """What shapes the stream: a position saved under other values does not apply."""
        spec, d = self._dataset.spec, self._dataset.spec.data
        keys = ("source", "path", "name", "train_split", "eval_split", "eval_fraction", "shuffle_buffer",
                "bucket_buffer", "max_batch_seconds", "sample_rate", "min_audio_seconds", "max_audio_seconds",
                "max_text_tokens", "min_rms", "conditioning", "min_conditioning_seconds", "max_conditioning_seconds")
        # max_batch_size only when set: positions saved before the key existed still apply.
        capped = {"max_batch_size": d.max_batch_size} if d.max_batch_size is not None else {}
        return {"seed": spec.seed, "batch_size": spec.batch_size, "split": spec.split,
                **{k: getattr(d, k) for k in keys}, **capped}

    # ---- iteration -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Batch]:
        if not self.training:  # every eval pass reads the split from its start; its counts are that pass's
            self._positions, self._next_worker, self._stats_done = {}, 0, FilterStats()
        fresh = not self._positions
        self._dataset.epoch = self._epoch
        self._dataset.resume = copy.deepcopy(self._positions)
        n = max(1, self.num_workers)
        data_loader = self._data_loader()
        if self.num_workers:
            with open(self._pass_file, "wb") as f:  # read by each worker when this pass starts
                pickle.dump((self._epoch, self._dataset.resume), f)
        incoming = iter(data_loader)
        queues: dict[int, deque] = {w: deque() for w in range(n)}
        alive = [w for w in range(n) if not self._positions.get(w, {}).get("done")]
        handed_out, stopped_early = 0, False
        try:
            while alive:
                w = min(alive, key=lambda a: (a - self._next_worker) % n)  # whose turn it is
                while not queues[w]:
                    worker, batch, state = next(incoming)
                    queues[worker].append((batch, state))
                batch, state = queues[w].popleft()
                if batch is not None and not self._all_ranks_have_a_batch(True):
                    stopped_early = True
                    break
                self._log_new_rejections(w, state)
                self._positions[w], self._next_worker = state, (w + 1) % n
                if batch is None:
                    alive.remove(w)
                    continue
                self._padding[0] += batch["n_audio_samples"]
                self._padding[1] += int(batch["wav_lengths"].shape[0]) * int(batch["wav_lengths"].max())
                handed_out += 1
                yield batch
            else:
                self._all_ranks_have_a_batch(False)
        finally:
            # Without workers this closes the stream; persistent workers stay up for the next pass
            # (which discards what they prefetched for this one).
            del incoming
        if stopped_early:
            logger.info("rank %d: epoch %d ends with another rank (%d batches handed out, the rest skipped)",
                        self.rank, self._epoch, handed_out)
        stats = self.filter_stats()
        self._stats_done, self._positions, self._next_worker = stats, {}, 0
        self._epoch += 1
        if fresh and handed_out == 0:
            self._raise_empty()

    def _data_loader(self) -> DataLoader:
        """One DataLoader for the Loader's life: with workers, they persist across passes (no
        re-fork and re-open of the source per epoch or eval) and each keeps PREFETCH_FACTOR batches
        ready. An own generator: a DataLoader without one draws its base seed from the global torch
        RNG, which would shift the model's dropout masks whenever a loader starts (breaking exact
        resume); the stream draws nothing from the workers' seeds."""
        if self._loader is None:
            workers = self.num_workers
            if workers:
                self._tmp = tempfile.TemporaryDirectory(prefix="amh_loader.")
                self._pass_file = self._dataset.pass_file = os.path.join(self._tmp.name, "pass.pkl")
            self._loader = DataLoader(self._dataset, batch_size=None, num_workers=workers,
                                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                                      prefetch_factor=PREFETCH_FACTOR if workers else None,
                                      generator=torch.Generator().manual_seed(self._dataset.spec.seed))
        return self._loader

    def close(self) -> None:
        """Stop the persistent workers now (they also stop when the Loader is garbage-collected)."""
        self._loader = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _log_new_rejections(self, worker: int, state: dict) -> None:
        for message in state["stats"]["messages"]:
            if message not in self._logged:
                self._logged.add(message)
                logger.warning("%s, rank %d worker %d, epoch %d: %s", self.source, self.rank, worker, self._epoch,
                               message)

    def _all_ranks_have_a_batch(self, have: bool) -> bool:
        if self._group is None:
            return have
        flag = torch.tensor([int(have)], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=self._group)
        return bool(flag.item())

    def _raise_empty(self) -> None:
        # Every rank hands out the same number of batches, so all ranks get here together.
        mine = self._stats_done
        ranks = [mine.to_dict()]
        if self._group is not None:
            ranks = [None] * self.world_size
            dist.all_gather_object(ranks, mine.to_dict(), group=self._group)
        stats = [FilterStats.from_dict(d) for d in ranks]
        total = stats[0]
        for s in stats[1:]:
            total = total.merge(s)
        if total.kept == 0:
            raise DataError(total.explain_empty(self.source))
        empty = [r for r, s in enumerate(stats) if s.kept == 0]
        raise DataError(f"{self.source}: rank(s) {empty} of {self.world_size} got no usable rows "
                        f"({total.kept} rows kept in all); use fewer ranks/workers or more data")


def build_loader(data_cfg: DataConfig, *, split: Literal["train", "eval"], batch_size: int,
                 text_encoder: TextEncoder, rank: int, world_size: int, seed: int, epoch: int = 0,
                 training: bool = True) -> Loader:
    """This rank's Loader over `split`. `text_encoder(text) -> ids` runs in the workers (front-end +
    XTTS tokenizer, no [START]/[STOP]). Call it on every rank, in the same order (it may create a
    process group)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    for key in ("shuffle_buffer", "num_workers", "bucket_buffer"):
        if getattr(data_cfg, key) < (1 if key == "shuffle_buffer" else 0):
            raise ConfigError(f"data.{key}: must be >= {1 if key == 'shuffle_buffer' else 0}, "
                              f"got {getattr(data_cfg, key)}")
    rows = open_rows(data_cfg, split)
    source = describe(data_cfg, split)
    if rows.num_shards < world_size * max(1, data_cfg.num_workers):
        rows = rows.reshard()  # e.g. parquet: one shard per row group
    strategy = "shards" if rows.num_shards % world_size == 0 or rows.num_shards >= MIN_SHARDS_PER_RANK * world_size \
        else "examples"
    rows = split_dataset_by_node(rows, rank=rank, world_size=world_size, strategy=strategy)
    num_workers = data_cfg.num_workers
    if num_workers > rows.num_shards:
        logger.log(logging.WARNING if training else logging.INFO,
                   "%s: %d shard(s) for rank %d, so %d DataLoader worker(s) instead of data.num_workers=%d; "
                   "write more shards (scripts/prepare_dataset.py --rows-per-shard) to use more",
                   source, rows.num_shards, rank, rows.num_shards, num_workers)
        num_workers = rows.num_shards
    spec = StreamSpec(data=data_cfg, split=split, batch_size=batch_size, seed=seed, rank=rank, training=training)
    # Training batches of prepared data carry no waveform (the step reads codes and prompt mels);
    # eval batches keep theirs: train.py takes a voice reference for the test sentences from them.
    maker = SampleMaker(data_cfg, text_encoder, seed=seed, training=training, keep_audio=not training)
    return Loader(_RankBatches(rows, maker, spec), num_workers=num_workers, source=source, rank=rank,
                  world_size=world_size, epoch=epoch, group=_rank_group(world_size))


def _rank_group(world_size: int):
    """A gloo group for the ranks' small CPU agreements, or None when not distributed.

    Each Loader gets its own (it holds it for its life): `new_group` is a collective, and every rank
    builds its loaders in the same order, so the calls pair up without any state kept here.
    """
    if world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return None
    if dist.get_world_size() != world_size:
        raise ValueError(f"world_size={world_size} but torch.distributed has {dist.get_world_size()} ranks")
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    return dist.new_group(backend="gloo")
