"""amh.train.distributed.process_count_check: more processes than visible GPUs is refused; CPU-only warns."""
from __future__ import annotations

import pytest
import torch

from amh.config import ConfigError, load_config
from amh.train.distributed import launch_mode

CFG = load_config(None, ["data.path=u/d", "train.batch_size=2", "train.grad_accum=8"])
EIGHT = {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "8", "RANK": "0", "LOCAL_RANK": "0"}


def fake_gpus(monkeypatch, count: int) -> None:
    """The machine's GPUs, at the boundary torch reports them."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: count > 0)


def test_eight_processes_on_one_gpu_are_refused(monkeypatch):
    fake_gpus(monkeypatch, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(ConfigError, match=r"8 processes on this machine but 1 GPU\(s\) visible \(CUDA_VISIBLE_DEVICES=0\)"
                                          r".*global batch 2 x 8 x 8 = 128.*--num_processes"):
        launch_mode(CFG, {**EIGHT, "CUDA_VISIBLE_DEVICES": "0"})


def test_as_many_processes_as_gpus_pass(monkeypatch):
    fake_gpus(monkeypatch, 8)
    assert launch_mode(CFG, EIGHT).warnings == []
    fake_gpus(monkeypatch, 4)  # two nodes of 4: the per-machine count is what matters
    two_nodes = {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}
    assert launch_mode(CFG, two_nodes).warnings == []


def test_eight_cpu_processes_warn_with_the_global_batch(monkeypatch):
    fake_gpus(monkeypatch, 0)
    mode = launch_mode(CFG, EIGHT)
    (warning,) = mode.warnings
    assert "8 processes on this machine and no GPU visible" in warning and "= 128" in warning
    assert mode.cpu  # the multi-CPU fix still applies


def test_one_process_says_nothing(monkeypatch):
    for gpus in (0, 1):
        fake_gpus(monkeypatch, gpus)
        assert launch_mode(CFG, {}).warnings == []
