"""Helpers for the tests that launch real training runs (test_distributed.py, test_slurm.py).

`accelerate_command(mode, ...)`: the launch line of one launch mode (one process, DDP x N, DeepSpeed
ZeRO-1/2 x N) as users type it. `demo_overrides()`: the demo config cut down to a few fast steps.
`step_log(run_dir)`: the TensorBoard scalars a run wrote, per event file (= per process that wrote
them), which is the step log the tests read.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODES = ("one", "ddp", "zero1", "zero2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def extended_vocab(release: Path, corpus: Path, out: Path) -> Path:
    """The demo's Amharic vocab (as `make demo` builds it), written to `out` once."""
    if not out.exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "extend_vocab.py"), "--base-vocab",
                        str(release / "vocab.json"), "--corpus", str(corpus / "ready" / "metadata_train.csv"),
                        "--mode", "chars", "--out", str(out)], check=True, capture_output=True)
    return out


def demo_overrides(release: Path, corpus: Path, vocab: Path, out: Path, **train) -> list[str]:
    """configs/demo.yaml on the test fixtures, small buffers so the first batch comes at once."""
    values = {"max_steps": 6, "log_every": 1, "save_every": 2, "keep_last": 3, "eval_every": 1000,
              "eval_batches": 1, **train}
    return ["--config", str(REPO / "configs" / "demo.yaml"), f"output_dir={out}", f"model.release={release}",
            f"model.vocab={vocab}", f"data.path={corpus / 'ready'}", "data.shuffle_buffer=16", "data.bucket_buffer=8",
            "data.num_workers=0", "log.test_sentences=[]", "eval.enabled=false",
            *(f"train.{k}={v}" for k, v in values.items())]


def deepspeed_config(out: Path, name: str, **changes) -> Path:
    """ds_config.json with top-level sections updated (e.g. zero_optimization={"stage": 1})."""
    config = json.loads((REPO / "ds_config.json").read_text())
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = out / f"ds_config_{name}.json"
    path.write_text(json.dumps(config))
    return path


def accelerate_command(mode: str, nproc: int, script: Path | str, args: list[str], work: Path,
                       ds_config: Path | None = None) -> list[str]:
    """mode: one | ddp | zero1 | zero2 (zero2 with `ds_config` if given, else the repository's)."""
    launch = [str(VENV_BIN / "accelerate"), "launch", "--num_machines", "1", "--dynamo_backend", "no",
              "--mixed_precision", "no", "--main_process_port", str(free_port()), "--num_processes", str(nproc)]
    if mode == "ddp":
        launch += ["--multi_gpu"]
    elif mode == "zero2":
        launch += ["--use_deepspeed", "--deepspeed_config_file", str(ds_config or REPO / "ds_config.json")]
    elif mode == "zero1":
        config = deepspeed_config(work, "zero1", zero_optimization={"stage": 1})
        launch += ["--use_deepspeed", "--deepspeed_config_file", str(config)]
    elif mode != "one":
        raise ValueError(mode)
    return [*launch, str(script), *args]


def launch_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    return env


def run(cmd: list[str], log: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a launch line in the repository root; output to `log`; fail with its tail if it fails."""
    with open(log, "w") as fh:
        result = subprocess.run(cmd, cwd=REPO, env=launch_env(), stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited with {result.returncode}:\n{log.read_text()[-6000:]}")
    return result


def step_log(run_dir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{event file: {tag: [(step, value), ...]}} of every TensorBoard scalar under run_dir/tensorboard."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    files: dict[str, dict[str, list]] = {}
    for path in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*")):
        tags: dict[str, list] = defaultdict(list)
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    tags[value.tag].append((event.step, float(tensor_util.make_ndarray(value.tensor))))
        if tags:
            files[str(path)] = dict(tags)
    return files


def scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """step -> value of `tag` over all event files (raises if a step was logged twice)."""
    out: dict[int, float] = {}
    for tags in step_log(run_dir).values():
        for step, value in tags.get(tag, []):
            assert step not in out, f"{run_dir}: step {step} of {tag} logged twice"
            out[step] = value
    return out
