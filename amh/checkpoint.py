"""Atomic training checkpoints: Accelerate state + per-rank trainer state, keep the last K, resume=auto.

A checkpoint is written to `.tmp-step_N/`, marked COMPLETE, then renamed to `step_N/`; a run killed
mid-write leaves only a `.tmp-*` folder, which `latest()` never returns and the next save removes.
Accelerate's `save_state` holds the model, optimizer and every process's RNG states; the trainer's
own counters, the loss scaler and the data position (per rank) go into `trainer_state_rank{R}.pt`.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from accelerate.utils import DistributedType

MARKER = "COMPLETE"
_NAME = re.compile(r"^step_(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / MARKER).is_file()]
    return [p for _, p in sorted(found)]


def latest(root: Path) -> Path | None:
    found = complete_checkpoints(root)
    return found[-1] if found else None


class Checkpointer:
    def __init__(self, root: str | Path, accelerator, keep_last: int):
        self.root = Path(root)
        self.accelerator = accelerator
        self.keep_last = keep_last

    def save(self, step: int, trainer_state: dict) -> Path:
        acc = self.accelerator
        final = self.root / step_dir_name(step)
        tmp = self.root / f".tmp-{final.name}"
        if acc.is_main_process:
            for stale in self.root.glob(".tmp-*") if self.root.is_dir() else []:
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        torch.save(trainer_state, tmp / f"trainer_state_rank{acc.process_index}.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            marker = tmp / MARKER
            with open(marker, "w") as fh:
                fh.write(f"{step}\n")
                fh.flush()
                os.fsync(fh.fileno())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in complete_checkpoints(self.root)[:-self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load(self, path: Path) -> dict:
        """Restore Accelerate state from `path`; return this rank's trainer state."""
        acc = self.accelerator
        state_file = path / f"trainer_state_rank{acc.process_index}.pt"
        if not state_file.is_file():
            raise FileNotFoundError(f"{state_file}: missing; was {path} written by a run with a different number "
                                    "of processes? Resume with the same --num_processes, or train.resume=none")
        # Accelerate keeps a DeepSpeed engine's state in `pytorch_model/`; the two formats do not mix, and
        # ZeRO's optimizer partitions only fit the number of processes that wrote them.
        deepspeed = acc.distributed_type == DistributedType.DEEPSPEED
        written_by_deepspeed = (path / "pytorch_model").is_dir()
        if deepspeed != written_by_deepspeed:
            raise ValueError(f"{path}: written by a {'DeepSpeed' if written_by_deepspeed else 'non-DeepSpeed'} run; "
                             f"resume it {'with' if written_by_deepspeed else 'without'} --use_deepspeed, "
                             "or start over with train.resume=none")
        writers = len(list(path.glob("trainer_state_rank*.pt")))
        if deepspeed and writers != acc.num_processes:
            raise ValueError(f"{path}: written by {writers} DeepSpeed processes, whose ZeRO partitions need as "
                             f"many; resume with --num_processes {writers}, or start over with train.resume=none")
        acc.load_state(str(path))
        return torch.load(state_file, map_location="cpu", weights_only=True)


def resolve_resume(resume: str, root: Path) -> Path | None:
    """'auto' -> newest complete checkpoint (or None), 'none' -> None, else the given directory."""
    if resume == "none":
        return None
    if resume == "auto":
        return latest(root)
    path = Path(resume)
    if not (path / MARKER).is_file():
        raise FileNotFoundError(f"train.resume: {path} is not a complete checkpoint (no {MARKER} file)")
    return path
