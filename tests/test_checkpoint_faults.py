"""Checkpoints under faults: health and the best one kept, damage named and fallen back from, identity,
a full disk, and one run per output_dir.

Each test drives amh.run.checkpoint / amh.run.run_lock with a real Accelerator on a small model, as train.py does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from amh.run.checkpoint import DAMAGED, HEALTH, MARKER, Checkpointer, CheckpointDamaged, best, complete_checkpoints
from amh.errors import UserError
from amh.run.run_lock import RunLock

IDENTITY = {"vocab_sha256": "abc", "vocab_size": 284, "gpt_layers": 2, "gpt_width": 64}


def _setup(identity=IDENTITY, keep_last=2, root=None, tmp_path=None):
    torch.manual_seed(0)
    model = nn.Linear(8, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, Checkpointer(root or tmp_path / "checkpoints", accelerator, keep_last, identity=identity)


def _train_one(model, optimizer):
    model(torch.randn(4, 8)).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_a_diverging_run_cannot_rotate_the_best_checkpoint_out(tmp_path):
    model, optimizer, ckpt = _setup(tmp_path=tmp_path, keep_last=2)
    for step, loss in enumerate([3.0, 2.0, 1.5, 9.0, 50.0, 1e6], start=1):  # healthy, then exploding
        _train_one(model, optimizer)
        ckpt.save(step, {"step": step}, {"train_loss_smoothed": loss})
    names = [p.name for p in complete_checkpoints(ckpt.root)]
    assert names == ["step_00000003", "step_00000005", "step_00000006"]  # last 2 + the best (1.5)
    assert best(ckpt.root).name == "step_00000003"
    # An eval loss, where known, decides over the train loss.
    ckpt.record(5, eval_loss=0.1)
    assert best(ckpt.root).name == "step_00000005"
    assert json.loads((ckpt.root / "step_00000005" / HEALTH).read_text())["eval_loss"] == 0.1


def test_a_checkpoint_saved_during_a_skip_streak_is_never_the_best(tmp_path):
    model, optimizer, ckpt = _setup(tmp_path=tmp_path, keep_last=3)
    ckpt.save(1, {"step": 1}, {"train_loss_smoothed": 2.0})
    ckpt.save(2, {"step": 2}, {"train_loss_smoothed": 0.5, "skip_streak": 2})  # a preemption mid-streak
    assert best(ckpt.root).name == "step_00000001"


def test_a_checkpoint_whose_next_window_was_not_finite_is_never_the_best(tmp_path):
    """The loss logged before a save predates the save's last update: a step that blew the weights up
    looks healthy until the next window, computed with those weights, comes out NaN."""
    model, optimizer, ckpt = _setup(tmp_path=tmp_path, keep_last=1)
    ckpt.save(1, {"step": 1}, {"train_loss_smoothed": 4.0})
    ckpt.record(1, next_loss=4.1)
    ckpt.save(2, {"step": 2}, {"train_loss_smoothed": 3.9})  # its update exploded the weights
    assert [p.name for p in complete_checkpoints(ckpt.root)] == ["step_00000001", "step_00000002"]
    ckpt.record(2, next_loss=float("nan"))
    assert best(ckpt.root).name == "step_00000001"


@pytest.mark.parametrize("damage", ["truncate_optimizer", "truncate_model", "delete_trainer_state", "garbage_model"])
def test_a_damaged_checkpoint_is_named_kept_and_fallen_back_from(tmp_path, damage):
    model, optimizer, ckpt = _setup(tmp_path=tmp_path, keep_last=3)
    _train_one(model, optimizer)
    ckpt.save(1, {"step": 1}, {})
    good = {k: v.clone() for k, v in model.state_dict().items()}
    _train_one(model, optimizer)
    newest = ckpt.save(2, {"step": 2}, {})
    target = {"truncate_optimizer": "optimizer.bin", "truncate_model": "model.safetensors",
              "delete_trainer_state": "trainer_state_rank0.pt", "garbage_model": "model.safetensors"}[damage]
    path = newest / target
    if damage.startswith("truncate"):
        os.truncate(path, path.stat().st_size // 2)
    elif damage.startswith("delete"):
        path.unlink()
    else:  # same size, unreadable content: only loading can tell
        path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(CheckpointDamaged, match=target):
        ckpt.load(newest)
    found, state = ckpt.load_latest_good(complete_checkpoints(ckpt.root))
    assert found.name == "step_00000001" and state == {"step": 1}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, good[k])
    assert newest.is_dir() and (newest / DAMAGED).is_file()  # kept, marked, not resumed from again
    assert complete_checkpoints(ckpt.root) == [found]


def test_resume_with_another_vocab_or_release_names_the_keys_that_differ(tmp_path):
    model, optimizer, ckpt = _setup(tmp_path=tmp_path)
    saved = ckpt.save(1, {"step": 1}, {})
    other = Checkpointer(ckpt.root, ckpt.accelerator, 2, identity={**IDENTITY, "vocab_sha256": "def", "vocab_size": 300})
    with pytest.raises(UserError, match=r"vocab_sha256: checkpoint 'abc', this run 'def'; vocab_size: checkpoint 284, "
                                        r"this run 300.*train.resume=none"):
        other.load(saved)


def test_another_process_count_is_told_apart_from_a_deleted_file(tmp_path):
    model, optimizer, ckpt = _setup(tmp_path=tmp_path)
    saved = ckpt.save(1, {"step": 1}, {})
    manifest = json.loads((saved / MARKER).read_text())
    (saved / MARKER).write_text(json.dumps({**manifest, "num_processes": 2}))
    with pytest.raises(UserError, match="written by 2 process"):
        ckpt.load(saved)


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()}); needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_says_so_and_leaves_no_temporary_checkpoint(tiny_disk):
    torch.manual_seed(0)
    model = nn.Linear(128, 128)  # ~66 KB of weights + 132 KB of Adam state: more than the disk holds
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    _train_one_wide = lambda: (model(torch.randn(2, 128)).square().mean().backward(), optimizer.step())  # noqa: E731
    _train_one_wide()
    ckpt = Checkpointer(tiny_disk / "checkpoints", accelerator, 2, identity=IDENTITY)
    with pytest.raises(UserError, match=rf"no space left on {tiny_disk}/checkpoints"):
        ckpt.save(1, {"step": 1}, {})
    assert not list((tiny_disk / "checkpoints").glob(".tmp-*"))
    assert complete_checkpoints(ckpt.root) == []


def test_a_second_run_on_the_same_directory_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from amh.run.run_lock import RunLock
        lock = RunLock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"in use by another training run \(pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
        holder.kill()  # kill -9: the kernel releases the lock, no stale lock is left
        holder.wait()
        with RunLock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
