"""train.py under faults, as a user meets them: a divergence, a dead launcher, a bad eval split,
a resume of a finished run. Each ends with nothing lost and one clear line."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amh.run.checkpoint import HEALTH, complete_checkpoints, step_of
from trainrun import REPO, demo_overrides, run_train

pytestmark = pytest.mark.slow


def test_a_divergence_keeps_the_healthy_checkpoint_and_names_it(tiny_release, demo_corpus, demo_vocab, tmp_path):
    """Three healthy steps (lr 1e-3), then the same run continued at lr 30 under fp16, which blows the
    tiny model up in one update: the checkpoint written after that update looks fine by the loss logged
    before it, but the next window is NaN. Saving every step with keep_last=1, the run must keep the
    last healthy checkpoint out of the rotation, save nothing during the skip streak, stop naming that
    checkpoint, and a resume from it (with a sane lr) must train on without stopping at once."""
    out = tmp_path / "run"
    common = {"train.precision": "fp16", "train.init_loss_scale": 1024, "train.save_every": 1, "train.keep_last": 1,
              "optim.schedule": "constant", "optim.warmup_steps": 0, "train.max_consecutive_skips": 2,
              "log.test_sentences": "[]"}
    run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **common, **{
        "optim.lr": 1e-3, "train.max_steps": 3}))
    proc = run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **common, **{
        "optim.lr": 30, "train.max_steps": 12}), check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    named = re.search(r"Resume from (\S+) \(its health", proc.stderr)
    assert named, proc.stderr[-3000:]
    good = Path(named.group(1))
    assert good.name == "step_00000003", proc.stderr[-3000:]  # the last one whose next window was finite
    for ckpt in complete_checkpoints(out / "checkpoints"):
        assert json.loads((ckpt / HEALTH).read_text())["skip_streak"] == 0, ckpt  # none written mid-streak
    resumed = run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **common, **{
        "optim.lr": 1e-3, "train.max_steps": 5, "train.resume": str(good)}))
    assert f"resumed from {good} at step 3" in resumed.stderr
    assert "stopping" not in resumed.stderr


def test_killing_the_launcher_stops_the_trainer_with_a_checkpoint(tiny_release, demo_corpus, demo_vocab, tmp_path):
    out = tmp_path / "run"
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--cpu", "--num_processes", "1",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "train.py"),
           "--config", str(REPO / "configs" / "demo.yaml"),
           *demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **{"train.max_steps": 100_000,
                                                                           "train.epochs": 1000,
                                                                           "log.test_sentences": "[]"})]
    log = open(tmp_path / "launch.log", "w")
    launcher = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        trainer = None
        while time.monotonic() < deadline:
            text = (tmp_path / "launch.log").read_text()
            children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
            trainer = int(children[0]) if children else trainer
            if trainer and re.search(r"step [1-9]\d*/\d+ \(", text):  # a step has been taken (its log line)
                break
            assert launcher.poll() is None, text[-3000:]
            time.sleep(1)
        assert trainer, "no trainer process"
        launcher.send_signal(signal.SIGTERM)  # only the launcher: its child must notice on its own
        launcher.wait(timeout=60)
        for _ in range(240):
            if not Path(f"/proc/{trainer}").exists() or "zombie" in _state(trainer):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the trainer (pid {trainer}) still runs 120 s after its launcher died")
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", str(out)], check=False)
    assert complete_checkpoints(out / "checkpoints"), (tmp_path / "launch.log").read_text()[-3000:]
    assert (out / "exit_code").read_text().strip() == "75"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_a_fully_filtered_eval_split_is_refused_at_start_up(tiny_release, demo_corpus, demo_vocab, tmp_path):
    ready = tmp_path / "ready"
    shutil.copytree(demo_corpus / "ready", ready, symlinks=True)
    rows = (ready / "metadata_eval.csv").read_text(encoding="utf-8").splitlines()
    (ready / "metadata_eval.csv").write_text("\n".join([rows[0]] + [r.replace("wavs/", "missing/", 1) for r in rows[1:]])
                                             + "\n", encoding="utf-8")
    out = tmp_path / "run"
    proc = run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **{
        "data.path": str(ready), "train.max_steps": 5, "train.eval_every": 5}), check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "decode_error" in error[0], proc.stderr[-2000:]
    assert not re.search(r"step [1-9]\d*/\d+ \(", proc.stderr)  # refused before the first step
    assert not (out / "checkpoints").exists()


def test_resuming_a_finished_run_says_so(tiny_release, demo_corpus, demo_vocab, tmp_path):
    out = tmp_path / "run"
    args = {"train.max_steps": 2, "log.test_sentences": "[]"}
    run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **args))
    again = run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **args))
    assert "this run already finished (step 2" in again.stderr
    longer = run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **{
        **args, "train.max_steps": 3, "optim.schedule": "cosine"}))
    assert "the LR schedule's horizon changed on resume: 2 steps before, 3 now" in longer.stderr


def test_a_user_error_under_the_documented_launch_is_one_line(tmp_path):
    """`accelerate launch --quiet` (the Makefile's demo, the README's one-GPU line): train.py's one
    `error:` line, and no CalledProcessError traceback from the launcher after it."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "accelerate launch --quiet" in makefile
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "accelerate"), "launch", "--quiet", "--cpu", "--num_processes", "1",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "train.py",
         "--config", "configs/demo.yaml", f"output_dir={tmp_path / 'run'}", f"data.path={tmp_path / 'missing'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "data.path" in errors[0], proc.stderr[-2000:]
