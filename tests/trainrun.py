"""Helpers for tests that run train.py as a user would: a subprocess, then its files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def demo_overrides(tiny_release: Path, demo_corpus: Path, out: Path, vocab: Path, **extra) -> list[str]:
    base = {
        "output_dir": str(out),
        "model.release": str(tiny_release),
        "model.vocab": str(vocab),
        "data.source": "ready",
        "data.path": str(demo_corpus / "ready"),
        "data.num_workers": 0,
        "train.batch_size": 2,
        "train.log_every": 1,
        "train.eval_every": 1000,
        "train.eval_batches": 2,
        "train.save_every": 1000,
        "eval.enabled": "false",  # the speech eval (ASR + speaker encoder) has tests of its own
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def run_train(overrides: list[str], *, timeout: int = 600, check: bool = True, env: dict | None = None):
    cmd = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "demo.yaml"), *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard recorded under run_dir, by tag: [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(v) for k, v in out.items()}


def audio_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in Path(run_dir).rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["audio"])
    return tags
