"""train.py's `main`, launched by tests/test_distributed.py, with what the comparisons need and nothing else.

    accelerate launch ... tests/launching/train_entry.py [--same-global-batches] [--no-dropout] \
        [--ids-dir DIR] -- --config configs/demo.yaml key=value ...

--same-global-batches: every rank builds the one-process loader (train.batch_size x processes per
    batch) and keeps its slice of each batch. Real pipeline, real padding, and the same global batch at
    every step in every launch mode, so 1 x 4, DDP 2 x 2 and ZeRO-2 2 x 2 can be compared step by step.
    (The real loader gives each rank its own shards and shuffle, which is right for training and
    makes trajectories differ.) Batches that do not split evenly are skipped, on every rank and mode.
--no-dropout: dropout p=0 (each rank draws its own masks, which is right for training and makes
    trajectories differ).
--ids-dir: each rank appends the sample ids of every batch it trains on to DIR/rank{R}.txt (test
    output, outside the run directory).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import train  # noqa: E402  (the repository's train.py)


class SlicedLoader:
    """A one-process Loader whose batches are cut into `world` equal slices; this rank keeps `rank`'s."""

    def __init__(self, loader, rank: int, world: int, global_batch: int):
        self.loader, self.rank, self.world, self.global_batch = loader, rank, world, global_batch

    def __getattr__(self, name):  # state_dict, load_state_dict, set_epoch, filter_stats, epoch
        return getattr(self.loader, name)

    def __iter__(self):
        for batch in self.loader:
            n = len(batch["ids"])
            if n != self.global_batch:
                continue
            b = n // self.world
            keep = slice(self.rank * b, (self.rank + 1) * b)
            part = {k: (v[keep] if isinstance(v, (torch.Tensor, list)) and len(v) == n else v) for k, v in batch.items()}
            part["n_audio_samples"] = int(part["wav_lengths"].sum())
            part["n_text_tokens"] = int(part["text_lengths"].sum())
            yield part


def same_global_batches(build_loader):
    def build(data_cfg, *, batch_size, rank, world_size, **kwargs):
        loader = build_loader(data_cfg, batch_size=batch_size * world_size, rank=0, world_size=1, **kwargs)
        return SlicedLoader(loader, rank, world_size, batch_size * world_size)

    return build


def recording(build_loader, ids_dir: Path):
    class Recorded(SlicedLoader):
        def __iter__(self):
            with open(ids_dir / f"rank{self.rank}.txt", "a") as fh:
                for batch in self.loader:
                    fh.write(" ".join(batch["ids"]) + "\n")
                    fh.flush()
                    yield batch

    def build(data_cfg, *, split, rank, **kwargs):
        loader = build_loader(data_cfg, split=split, rank=rank, **kwargs)
        return Recorded(loader, rank, 1, 0) if split == "train" else loader

    return build


def without_dropout(model_class):
    class NoDropout(model_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for module in self.modules():
                if isinstance(module, nn.modules.dropout._DropoutNd):
                    module.p = 0.0

    return NoDropout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--same-global-batches", action="store_true")
    parser.add_argument("--no-dropout", action="store_true")
    parser.add_argument("--ids-dir", type=Path)
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if args.same_global_batches:
        train.build_loader = same_global_batches(train.build_loader)
    if args.ids_dir:
        args.ids_dir.mkdir(parents=True, exist_ok=True)
        train.build_loader = recording(train.build_loader, args.ids_dir)
    if args.no_dropout:
        train.XttsGptForTraining = without_dropout(train.XttsGptForTraining)
    return train.main(train_args)


if __name__ == "__main__":
    sys.exit(main())
