"""scripts/slurm/*.sbatch on a real one-node Slurm (slurmctld + slurmd on localhost, tests/slurm/).

Preemption: train.sbatch trains the demo config (DDP, 2 CPU processes); the test sends `scancel --signal=USR1 --batch JOBID`
(what an operator, or --signal=B:USR1@..., does) once a few steps are logged. Expected: the trainer
finishes the step, writes a checkpoint and exits 75, the script requeues the job, the requeued run
resumes from that checkpoint and finishes at train.max_steps, and the step log (TensorBoard,
log_every=1) holds every step exactly once: the first run 1..K, the second K+1..max_steps.
Multi-node: train_multinode.sbatch on the one node there is, with DeepSpeed.
Skipped, with the reason, only where the daemons cannot start (not root, no slurm-wlm/munge).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from launching.launch_runs import REPO, VENV_BIN, demo_overrides, extended_vocab, step_log
from slurm.local_slurm import LocalSlurm, SlurmUnavailable, wait_for

pytestmark = pytest.mark.slow

MAX_STEPS = 12


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    try:
        cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
        cluster.__enter__()
    except SlurmUnavailable as why:
        pytest.skip(f"cannot run a local Slurm cluster on this machine: {why}")
    yield cluster
    cluster.__exit__(None, None, None)




def steps_logged(run: Path) -> list[int]:
    return sorted(step for tags in step_log(run).values() for step, _ in tags.get("train/loss", []))


def test_preempted_job_checkpoints_requeues_and_resumes(slurm, tiny_release, demo_corpus, tmp_path):
    vocab = extended_vocab(tiny_release, demo_corpus, tmp_path / "vocab.json")
    run = tmp_path / "run"
    log = tmp_path / "job.out"
    # Two DDP processes with a DataLoader worker each: Slurm signals every process of the step.
    overrides = demo_overrides(tiny_release, demo_corpus, vocab, run, max_steps=MAX_STEPS, save_every=1000,
                               keep_last=5, batch_size=2)[2:] + ["data.num_workers=1"]
    job = slurm.sbatch(["--output", str(log), "--cpus-per-task", "2", "--gpus-per-node", "0", "--time", "20",
                        "--export", f"ALL,PATH={VENV_BIN}:/usr/bin:/bin:/usr/sbin:/sbin,NPROC=2",
                        str(REPO / "scripts" / "slurm" / "train.sbatch"), str(REPO / "configs" / "demo.yaml"),
                        *overrides], cwd=REPO)

    wait_for("the first run to log 3 steps", lambda: len(steps_logged(run)) >= 3, 240, slurm, job, log)
    slurm.run("scancel", "--signal=USR1", "--batch", str(job))
    wait_for("the job to be requeued", lambda: slurm.job(job).get("Restarts") == "1", 120, slurm, job, log)
    # Slurm holds a requeued job back for about two minutes (BeginTime) so that it does not start in
    # the second its first run was killed in (slurmd would take the new credential for the revoked
    # one and refuse it). Wait a few seconds instead.
    time.sleep(3)
    if slurm.job(job).get("JobState") == "PENDING":
        slurm.scontrol("update", f"JobId={job}", "StartTime=now")
    wait_for("the requeued run to finish", lambda: slurm.job(job).get("JobState") == "COMPLETED", 300, slurm, job, log)

    output = log.read_text()
    stops = set(re.findall(r"checkpoint written at step (\d+), exiting with 75", output))
    assert len(stops) == 1, output[-4000:]  # every rank stopped at the same step
    k = int(stops.pop())
    assert 3 <= k < MAX_STEPS
    assert "requeueing; the next run resumes from it" in output
    assert re.search(rf"resumed from \S+/step_{k:08d} at step {k} ", output), output[-4000:]
    assert (run / "checkpoints" / f"step_{k:08d}" / "COMPLETE").is_file()
    assert {p.name for p in (run / "checkpoints" / f"step_{k:08d}").glob("trainer_state_rank*")} == \
        {"trainer_state_rank0.pt", "trainer_state_rank1.pt"}
    assert (run / "checkpoints" / f"step_{MAX_STEPS:08d}" / "COMPLETE").is_file()
    assert (run / "exit_code").read_text().strip() == "0"
    assert (run / "export" / "model.pth").is_file()
    info = slurm.job(job)
    assert info["Restarts"] == "1" and info["ExitCode"] == "0:0", info

    # The step log: one event file per run, the first ending at K, the second from K+1; no step twice.
    runs = [sorted(step for step, _ in tags["train/loss"]) for tags in step_log(run).values() if "train/loss" in tags]
    runs.sort()
    assert runs == [list(range(1, k + 1)), list(range(k + 1, MAX_STEPS + 1))], runs


def test_multinode_script_runs_deepspeed_on_one_node(slurm, tiny_release, demo_corpus, tmp_path):
    """train_multinode.sbatch's wiring (srun, one launcher per node, machine rank and head node from
    Slurm, DeepSpeed's "standard" multi-node launcher) on the one node there is: 2 CPU processes."""
    vocab = extended_vocab(tiny_release, demo_corpus, tmp_path / "vocab.json")
    run, log = tmp_path / "run", tmp_path / "job.out"
    overrides = demo_overrides(tiny_release, demo_corpus, vocab, run, max_steps=3, batch_size=2)[2:]
    job = slurm.sbatch(["--nodes", "1", "--output", str(log), "--cpus-per-task", "2", "--gpus-per-node", "0",
                        "--export", f"ALL,PATH={VENV_BIN}:/usr/bin:/bin:/usr/sbin:/sbin,NPROC=2,DEEPSPEED=1",
                        str(REPO / "scripts" / "slurm" / "train_multinode.sbatch"), str(REPO / "configs" / "demo.yaml"),
                        *overrides], cwd=REPO)
    wait_for("the job to finish", lambda: slurm.job(job).get("JobState") in ("COMPLETED", "FAILED"), 300,
             slurm, job, log)
    output = log.read_text()
    assert slurm.job(job)["JobState"] == "COMPLETED", output[-4000:]
    assert f"1 node(s) x 2 process(es), rank 0 on {slurm.node}:" in output
    assert "launch: DeepSpeed ZeRO-2" in output and "2 process(es)" in output
    assert (run / "exit_code").read_text() == "0\n"
    assert steps_logged(run) == [1, 2, 3]
