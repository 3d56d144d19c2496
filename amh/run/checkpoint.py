"""Atomic training checkpoints with their health and identity; keep the last K and the best; resume=auto.

A checkpoint is written to `.tmp-step_N/`, marked COMPLETE, then renamed to `step_N/`; a run killed
mid-write leaves only a `.tmp-*` folder, which is never resumed from and the next save removes.
Accelerate's `save_state` holds the model, optimizer and every process's RNG states; the trainer's
own counters, the loss scaler and the data position (per rank) go into `trainer_state_rank{R}.pt`.

Beside them:
- COMPLETE is a JSON manifest: step, process count and every file's size, so a truncated or deleted
  file is named before any library tries to read it.
- health.json: smoothed train loss, eval loss (filled in after that step's eval), skipped steps. The
  best checkpoint by loss (eval loss where known, else smoothed train loss) is kept out of
  `keep_last`'s rotation, so a divergence that keeps saving cannot rotate the last healthy state out.
- identity.json: what identifies the model (release, vocab hash and size, layers, width); resuming
  with another release or vocab is refused with the keys that differ instead of a size mismatch.
A checkpoint found damaged at resume gets a DAMAGED note (never deleted, never resumed from again,
never rotated out) and `resume=auto` falls back to the previous complete one.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch
from accelerate.utils import DistributedType

from amh.errors import UserError

MARKER = "COMPLETE"
DAMAGED = "DAMAGED"
HEALTH = "health.json"
IDENTITY = "identity.json"
_NAME = re.compile(r"^step_(\d+)$")
# What torch/safetensors/the C++ stream layer say when a write hits a full disk.
_NO_SPACE = ("no space left", "unexpected pos", "basic_ios::clear", "file write failed", "enospc")
log = logging.getLogger("amh.run.checkpoint")


class CheckpointDamaged(Exception):
    """A complete-marked checkpoint whose files are missing, truncated or unreadable."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def step_of(path: Path) -> int:
    return int(_NAME.match(path.name).group(1))


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete, undamaged checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.match(p.name)) and (p / MARKER).is_file() and not (p / DAMAGED).exists()]
    return [p for _, p in sorted(found)]


def latest(root: Path) -> Path | None:
    found = complete_checkpoints(root)
    return found[-1] if found else None


def read_health(path: Path) -> dict:
    try:
        return json.loads((path / HEALTH).read_text())
    except (OSError, ValueError):
        return {}


def best(root: Path, metric: str = "eval_loss") -> Path | None:
    """The healthiest complete checkpoint: lowest `metric` (eval_loss, or eval_cer with the speech eval)
    where any has one, else lowest loss of the window after it (computed with its weights), else
    lowest smoothed train loss.

    A checkpoint is never the best when it was written during a skip streak or when the window after
    it was not finite (its weights had already diverged although the loss logged before it was fine).
    """
    scored = [(read_health(p), p) for p in complete_checkpoints(root)]
    usable = [(h, p) for h, p in scored if not h.get("skip_streak") and _finite(h.get("next_loss", 0.0))]
    for key in (metric, "next_loss", "train_loss_smoothed"):
        candidates = [(h[key], step_of(p), p) for h, p in usable if _finite(h.get(key))]
        if candidates:
            return min(candidates)[2]
    return None


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def _is_no_space(err: BaseException) -> bool:
    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or any(s in str(err).lower() for s in _NO_SPACE)


class Checkpointer:
    def __init__(self, root: str | Path, accelerator, keep_last: int, identity: dict | None = None,
                 best_metric: str = "eval_loss"):
        self.root = Path(root)
        self.accelerator = accelerator
        self.keep_last = keep_last
        self.identity = identity or {}
        self.best_metric = best_metric

    def best(self) -> Path | None:
        return best(self.root, self.best_metric)

    def save(self, step: int, trainer_state: dict, health: dict | None = None) -> Path:
        acc = self.accelerator
        final = self.root / step_dir_name(step)
        tmp = self.root / f".tmp-{final.name}"
        try:
            if acc.is_main_process:
                for stale in self.root.glob(".tmp-*") if self.root.is_dir() else []:
                    shutil.rmtree(stale, ignore_errors=True)
                tmp.mkdir(parents=True)
            acc.wait_for_everyone()
            acc.save_state(str(tmp))
            torch.save(trainer_state, tmp / f"trainer_state_rank{acc.process_index}.pt")
            acc.wait_for_everyone()
            if acc.is_main_process:
                _write_json(tmp / HEALTH, {"step": step, **(health or {})})
                _write_json(tmp / IDENTITY, self.identity)
                # health.json is not listed: it grows after the save (eval loss, the next window's loss).
                files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*"))
                         if f.is_file() and f.name != HEALTH}
                _write_json(tmp / MARKER, {"step": step, "num_processes": acc.num_processes, "files": files},
                            sync=True)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
                self._rotate()
        except (OSError, RuntimeError) as err:
            if not _is_no_space(err):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"no space left on {self.root} (the file system of {_mount_point(self.root)}): "
                            f"checkpoint step {step} was not written and its temporary folder was removed; "
                            "free space there, lower train.keep_last, or point output_dir elsewhere, then "
                            "resume (train.resume=auto continues from the last complete checkpoint)") from None
        acc.wait_for_everyone()
        return final

    def _rotate(self) -> None:
        """Delete complete checkpoints beyond the newest `keep_last`, never the best one."""
        keep = self.best()
        for old in complete_checkpoints(self.root)[:-self.keep_last]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def record(self, step: int, **values: float) -> None:
        """Add what is learnt after a save to checkpoint `step`'s health: `eval_loss`/`eval_cer` (its
        step's eval) and `next_loss` (the train loss of the next window, which is computed with these weights)."""
        path = self.root / step_dir_name(step)
        if self.accelerator.is_main_process and (path / MARKER).is_file():
            _write_json(path / HEALTH, {**read_health(path), **values})

    def verify(self, path: Path) -> dict:
        """Check the manifest (every file present, at its written size) and the identity; return the manifest."""
        try:
            manifest = json.loads((path / MARKER).read_text())
        except (OSError, ValueError):
            manifest = {}  # a marker written before manifests (or none): nothing to compare with
        if not isinstance(manifest, dict):
            manifest = {}
        for name, size in manifest.get("files", {}).items():
            f = path / name
            if not f.is_file():
                raise CheckpointDamaged(path, f"{name} is missing (deleted?)")
            if f.stat().st_size != size:
                raise CheckpointDamaged(path, f"{name} is {f.stat().st_size} bytes, {size} were written (truncated?)")
        self.check_identity(path)
        return manifest

    def check_identity(self, path: Path) -> None:
        try:
            stored = json.loads((path / IDENTITY).read_text())
        except (OSError, ValueError):
            return  # older checkpoints carry no identity
        differ = [k for k in sorted(set(stored) | set(self.identity)) if stored.get(k) != self.identity.get(k)]
        if differ:
            detail = "; ".join(f"{k}: checkpoint {stored.get(k)!r}, this run {self.identity.get(k)!r}" for k in differ)
            raise UserError(f"{path} was trained with another model ({detail}). Resume with the same "
                            "model.release/model.vocab, or start fresh with train.resume=none and another output_dir")

    def load(self, path: Path) -> dict:
        """Restore Accelerate state from `path`; return this rank's trainer state.

        Raises CheckpointDamaged for missing/truncated/unreadable files, UserError for a checkpoint
        this run cannot use (other model, other process count, other launch mode).
        """
        acc = self.accelerator
        manifest = self.verify(path)
        written_by = manifest.get("num_processes", len(list(path.glob("trainer_state_rank*.pt"))))
        state_file = path / f"trainer_state_rank{acc.process_index}.pt"
        if written_by != acc.num_processes:
            raise UserError(f"{path}: written by {written_by} process(es), this run has {acc.num_processes}; the data "
                            f"position is per rank: resume with --num_processes {written_by}, or train.resume=none")
        if not state_file.is_file():
            raise CheckpointDamaged(path, f"{state_file.name} is missing (deleted?)")
        # Accelerate keeps a DeepSpeed engine's state in `pytorch_model/`; the two formats do not mix, and
        # ZeRO's optimizer partitions only fit the number of processes that wrote them.
        deepspeed = acc.distributed_type == DistributedType.DEEPSPEED
        written_by_deepspeed = (path / "pytorch_model").is_dir()
        if deepspeed != written_by_deepspeed:
            raise UserError(f"{path}: written by a {'DeepSpeed' if written_by_deepspeed else 'non-DeepSpeed'} run; "
                            f"resume it {'with' if written_by_deepspeed else 'without'} --use_deepspeed, "
                            "or start over with train.resume=none")
        try:
            acc.load_state(str(path))
            return torch.load(state_file, map_location="cpu", weights_only=True)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as err:  # safetensors, pickle, zip and EOF errors all mean an unreadable file
            reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
            raise CheckpointDamaged(path, f"{_unreadable_file(path) or 'a file'} is unreadable ({reason})") from err

    def load_latest_good(self, candidates: list[Path]) -> tuple[Path, dict] | None:
        """Newest first: load the first checkpoint that is not damaged; mark and skip the damaged ones."""
        for path in reversed(candidates):
            try:
                return path, self.load(path)
            except CheckpointDamaged as err:
                log.warning("checkpoint %s is damaged (%s); it is kept as it is, marked %s, and not resumed from; "
                            "trying the previous complete checkpoint", err.path, err.problem, DAMAGED)
                self.accelerator.wait_for_everyone()
                if self.accelerator.is_main_process:
                    (err.path / DAMAGED).write_text(err.problem + "\n")
                self.accelerator.wait_for_everyone()
        return None


def _unreadable_file(path: Path) -> str | None:
    """The first file of a checkpoint that fails a cheap format check (safetensors header, zip CRCs)."""
    import zipfile

    from safetensors import safe_open

    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        try:
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="pt"):
                    pass
            elif f.suffix in (".bin", ".pt") and (not zipfile.is_zipfile(f) or zipfile.ZipFile(f).testzip()):
                return str(f.relative_to(path))
        except Exception:  # any failure to parse is the answer
            return str(f.relative_to(path))
    return None


def _write_json(path: Path, data: dict, sync: bool = False) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def resolve_resume(resume: str, root: Path) -> list[Path]:
    """Checkpoints to try, oldest first: 'auto' -> every complete one, 'none' -> [], else the given directory."""
    if resume == "none":
        return []
    if resume == "auto":
        return complete_checkpoints(root)
    path = Path(resume)
    if not (path / MARKER).is_file():
        raise UserError(f"train.resume: {path} is not a complete checkpoint (no {MARKER} file)")
    return [path]
