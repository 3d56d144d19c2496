"""Multi-node training across two real hosts: two network namespaces on one machine (tests/netns/hosts.py).

Each host has its own network (one veth link between the two, 10.213.N.0/24), hostname and
/etc/hosts; they share the filesystem, as cluster nodes share a scratch filesystem. Everything
between the nodes (torchrun's rendezvous store, gloo, Slurm's daemons) goes over that link.

- `accelerate launch --num_machines 2 --machine_rank {0,1} --main_process_ip HOST0`, one process per
  node, DDP over gloo and DeepSpeed ZeRO-2: the same 6 steps as one process with the global batch
  (losses and per-group gradient norms to fp32 rounding), each node training on its own half of
  every batch; only node 0 writes TensorBoard and the export.
- a hung node (SIGSTOP of node 1's launcher and trainer): node 0's trainer raises after
  AMH_COLLECTIVE_TIMEOUT (amh/train/distributed.py) instead of waiting gloo's default 30 min.
- `sbatch --nodes=2 scripts/slurm/train_multinode.sbatch` on a two-node Slurm (slurmctld + a slurmd
  per host, tests/slurm/local_slurm.py), one job through three runs: preempted with `scancel
  --signal=USR1` (both nodes checkpoint at the same step, exit 75, the job requeues and resumes);
  then node 1 dies (its launcher and trainer are SIGKILLed): the job fails within NODE_DEATH_BOUND_S,
  and the requeued job resumes from the last complete checkpoint and finishes.

Fast: every multi-process launch mode hands that deadline to the process group (amh/train/distributed.py).
Skipped, with the reason, where namespaces or the Slurm daemons cannot be made (not root).
"""
from __future__ import annotations

import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from launching.launch_runs import (REPO, VENV_BIN, accelerate_command, demo_overrides, extended_vocab, free_port,
                                   launch_env, run, scalars, step_log)
from netns.hosts import HostsUnavailable, TwoHosts
from slurm.local_slurm import LocalSlurm, SlurmUnavailable, wait_for

ENTRY = REPO / "tests" / "launching" / "train_entry.py"
TAGS = ("train/loss", "train/loss_text_ce", "train/loss_mel_ce", "grad_norm/embedding", "grad_norm/rest")
# A node whose processes die: its peers' next gloo send/recv fails on the closed connection, their
# launcher exits, srun ends the step. The bound the test holds the job to, from the kill to Slurm's
# FAILED (measured 5-11 s), documented in docs/cluster.md.
NODE_DEATH_BOUND_S = 90


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    two = TwoHosts(tmp_path_factory.mktemp("hosts"))
    try:
        two.__enter__()
    except HostsUnavailable as why:
        pytest.skip(f"cannot make two hosts with network namespaces here: {why}")
    try:
        yield two
    finally:
        two.close()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it at once (torchrun gives each worker its own session)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


def start_two_nodes(hosts: TwoHosts, mode: str, args: list[str], work: Path, name: str,
                    env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """One `accelerate launch` per host, one process each, rank 0 on host 0 (logs: work/NAME.nodeR.log)."""
    port = str(free_port())
    launchers = []
    try:
        for rank, host in enumerate(hosts):
            cmd = [str(VENV_BIN / "accelerate"), "launch", "--num_machines", "2", "--machine_rank", str(rank),
                   "--main_process_ip", hosts[0].addr, "--main_process_port", port, "--num_processes", "2",
                   "--dynamo_backend", "no", "--mixed_precision", "no"]
            if mode == "ddp":
                cmd += ["--multi_gpu"]
            else:
                cmd += ["--use_deepspeed", "--deepspeed_config_file", str(REPO / "ds_config.json"),
                        "--deepspeed_multinode_launcher", "standard"]
            with open(work / f"{name}.node{rank}.log", "w") as log:
                launchers.append(subprocess.Popen(host.command([*cmd, str(ENTRY), *args]), cwd=REPO,
                                                  env={**launch_env(), **(env or {})}, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
    except BaseException:
        stop(launchers)
        raise
    return launchers


def stop(launchers: list[subprocess.Popen]) -> None:
    for p in launchers:
        if p.poll() is None:
            kill_tree(p.pid)
            p.wait()


def launch_two_nodes(hosts: TwoHosts, mode: str, args: list[str], work: Path, name: str, timeout: float = 300):
    """start_two_nodes, waited for; fails with both nodes' logs unless both exit 0."""
    launchers = start_two_nodes(hosts, mode, args, work, name)
    try:
        deadline = time.monotonic() + timeout
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in launchers]
    finally:
        stop(launchers)
    logs = "\n".join(f"--- node {r} ---\n{(work / f'{name}.node{r}.log').read_text()[-4000:]}" for r in (0, 1))
    assert codes == [0, 0], f"{name}: launchers exited with {codes}\n{logs}"
    return [(work / f"{name}.node{r}.log").read_text() for r in (0, 1)]


@pytest.fixture(scope="module")
def launches(hosts, tiny_release, demo_corpus, tmp_path_factory):
    """One process x batch 4, and 2 nodes x 1 process x batch 2 in DDP and ZeRO-2, on the same global batches."""
    work = tmp_path_factory.mktemp("two_nodes")
    vocab = extended_vocab(tiny_release, demo_corpus, work / "vocab.json")

    def args(name: str, batch_size: int) -> list[str]:
        return ["--same-global-batches", "--no-dropout", "--ids-dir", str(work / f"{name}_ids"), "--",
                *demo_overrides(tiny_release, demo_corpus, vocab, work / name, batch_size=batch_size)]

    run(accelerate_command("one", 1, ENTRY, args("one", 4), work), work / "one.log")
    logs = {mode: launch_two_nodes(hosts, mode, args(mode, 2), work, mode) for mode in ("ddp", "zero2")}
    return {"work": work, "logs": logs}


def batch_ids(ids_dir: Path, rank: int) -> list[set[str]]:
    return [set(line.split()) for line in (ids_dir / f"rank{rank}.txt").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "zero2"])
def test_two_nodes_train_like_one_process_with_the_global_batch(launches, hosts, mode):
    work = launches["work"]
    node0, node1 = launches["logs"][mode]
    kind = "DDP" if mode == "ddp" else "DeepSpeed ZeRO-2"
    assert f"launch: {kind}" in node0 and "2 process(es) on CPU" in node0, node0[-3000:]
    for tag in TAGS:
        want, got = scalars(work / "one", tag), scalars(work / mode, tag)
        assert sorted(want) == list(range(1, 7)) and sorted(got) == sorted(want), (mode, tag)
        for step in want:
            assert got[step] == pytest.approx(want[step], rel=1e-6), (mode, tag, step)  # measured <= 2.3e-7

    # Each node trained on its own half of every global batch, and the halves make the whole.
    one = batch_ids(work / "one_ids", 0)
    halves = [batch_ids(work / f"{mode}_ids", rank) for rank in (0, 1)]
    assert len(one) == len(halves[0]) == len(halves[1]) >= 6
    for step, (a, b, whole) in enumerate(zip(*halves, one)):
        assert a and b and not a & b and a | b == whole, (mode, step)

    # Rank 0, on node 0, is the only writer: one TensorBoard event file (named after node 0's
    # hostname), one export; both ranks' states in the checkpoint on the shared filesystem.
    events = [Path(f).name for f in step_log(work / mode)]
    assert len(events) == 1 and f".{hosts[0].name}." in events[0], events
    assert node0.count("INFO amh.train: export written to") == 1 and "export written to" not in node1
    assert (work / mode / "export" / "model.pth").is_file()
    assert sorted(p.name for p in (work / mode / "checkpoints" / "step_00000006").glob("trainer_state_rank*.pt")) == \
        ["trainer_state_rank0.pt", "trainer_state_rank1.pt"]


# A collective timeout far below the default (amh/train/distributed.py, 900 s) so that the test is short.
COLLECTIVE_TIMEOUT_S = 15


@pytest.mark.parametrize("deepspeed", [False, True])
def test_every_multi_process_launch_gets_the_collective_timeout(deepspeed):
    """What Accelerate passes to init_process_group / deepspeed.init_distributed: the deadline, default
    900 s, from AMH_COLLECTIVE_TIMEOUT; a value that is not a positive number is refused."""
    from amh.config import ConfigError, load_config
    from amh.train.distributed import launch_mode

    cfg = load_config(None, ["data.source=ready", "data.path=unused", "train.batch_size=2", "train.precision=fp32"])
    environ = {"WORLD_SIZE": "2"}
    if deepspeed:
        pytest.importorskip("deepspeed")
        environ |= {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(REPO / "ds_config.json")}
    for value, seconds in ((None, 900), ("15", 15)):
        env = environ if value is None else {**environ, "AMH_COLLECTIVE_TIMEOUT": value}
        (handler,) = launch_mode(cfg, env).kwargs_handlers
        assert handler.to_kwargs()["timeout"] == timedelta(seconds=seconds)  # not dropped as a default
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ConfigError, match=re.escape(f"AMH_COLLECTIVE_TIMEOUT={bad!r}: not a number of seconds")):
            launch_mode(cfg, {**environ, "AMH_COLLECTIVE_TIMEOUT": bad})
    assert launch_mode(cfg, {}).kwargs_handlers == []  # one process: no process group


@pytest.mark.slow
def test_a_hung_node_ends_its_peer_within_the_collective_timeout(hosts, tiny_release, demo_corpus, tmp_path):
    """Node 1 freezes mid-run (SIGSTOP of its launcher and trainer: alive, connections open, silent, as
    a hung host or a network partition looks): node 0's trainer must raise in its collective after
    AMH_COLLECTIVE_TIMEOUT seconds, and its launcher exit non-zero, instead of gloo's default 30 min."""
    vocab = extended_vocab(tiny_release, demo_corpus, tmp_path / "vocab.json")
    ids = tmp_path / "ids"
    args = ["--ids-dir", str(ids), "--", *demo_overrides(tiny_release, demo_corpus, vocab, tmp_path / "run",
                                                         batch_size=2, max_steps=500, save_every=1000)]
    launchers = start_two_nodes(hosts, "ddp", args, tmp_path, "hung",
                                env={"AMH_COLLECTIVE_TIMEOUT": str(COLLECTIVE_TIMEOUT_S)})
    try:
        deadline = time.monotonic() + 240
        while not ((ids / "rank1.txt").is_file() and len((ids / "rank1.txt").read_text().splitlines()) >= 3):
            assert all(p.poll() is None for p in launchers), (tmp_path / "hung.node0.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "node 1 trained no 2 steps within 240 s"
            time.sleep(0.1)
        node1 = psutil.Process(launchers[1].pid)
        for process in [node1, *node1.children(recursive=True)]:
            process.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        code = launchers[0].wait(timeout=COLLECTIVE_TIMEOUT_S + 90)
        waited = time.monotonic() - frozen_at
    finally:
        stop(launchers)  # SIGKILL ends stopped processes too
    log = (tmp_path / "hung.node0.log").read_text()
    assert code != 0, log[-3000:]
    assert re.search(r"[Tt]imed out", log), log[-3000:]
    # It waited for the deadline (not less: the peer was alive), and not much longer (torchrun's stop).
    assert COLLECTIVE_TIMEOUT_S - 1 < waited < COLLECTIVE_TIMEOUT_S + 60, waited
    print(f"node 0's launcher exited {waited:.1f} s after node 1 froze (AMH_COLLECTIVE_TIMEOUT={COLLECTIVE_TIMEOUT_S})")


# ---- Slurm: sbatch --nodes=2 train_multinode.sbatch --------------------------------------------

MAX_STEPS = 12
SAVE_EVERY = 3
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


@pytest.fixture(scope="module")
def cluster(hosts, tmp_path_factory):
    try:
        slurm = LocalSlurm(tmp_path_factory.mktemp("slurm2"), hosts=list(hosts))
        slurm.__enter__()
    except SlurmUnavailable as why:
        pytest.skip(f"cannot run a two-node Slurm cluster here: {why}")
    try:
        yield slurm
    finally:
        slurm.__exit__(None, None, None)




def runs_logged(run_dir: Path) -> list[list[int]]:
    """The steps each run logged (one TensorBoard event file per run), in the order the runs started."""
    files = [(Path(f).name, sorted(step for step, _ in tags["train/loss"]))
             for f, tags in step_log(run_dir).items() if "train/loss" in tags]
    return [steps for _, steps in sorted(files, key=lambda f: int(f[0].split(".")[3]))]


def complete_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*")
                  if (p / "COMPLETE").is_file())


def node_launcher(run_dir: Path, machine_rank: int) -> psutil.Process | None:
    """The `accelerate launch` that node_launch.sh became on the node with this machine rank."""
    for process in psutil.process_iter(["cmdline"]):
        cmd = process.info["cmdline"] or []
        if ("launch" in cmd and "--machine_rank" in cmd and cmd[cmd.index("--machine_rank") + 1] == str(machine_rank)
                and f"output_dir={run_dir}" in cmd and any(c.endswith("accelerate") for c in cmd[:2])):
            return process
    return None


def start_requeued(slurm: LocalSlurm, job: int) -> None:
    """Slurm holds a requeued job back ~2 minutes (BeginTime); a few seconds are enough here."""
    time.sleep(3)
    if slurm.job(job).get("JobState") == "PENDING":
        slurm.scontrol("update", f"JobId={job}", "StartTime=now")


@pytest.fixture(scope="module")
def multinode_job(cluster, hosts, tiny_release, demo_corpus, tmp_path_factory):
    """One job, three runs: preempted (USR1) -> requeued and resumed -> node 1 killed -> requeued -> done."""
    slurm, work = cluster, tmp_path_factory.mktemp("multinode_job")
    vocab = extended_vocab(tiny_release, demo_corpus, work / "vocab.json")
    run_dir, log = work / "run", work / "job.out"
    train_args = demo_overrides(tiny_release, demo_corpus, vocab, run_dir, max_steps=MAX_STEPS,
                                save_every=SAVE_EVERY, keep_last=10, batch_size=2)[2:]
    job = slurm.sbatch(["--nodes", "2", "--output", str(log), "--cpus-per-task", "1", "--gpus-per-node", "0",
                        "--time", "20", "--export", f"ALL,PATH={VENV_BIN}:/usr/bin:/bin:/usr/sbin:/sbin,NPROC=1",
                        str(REPO / "scripts" / "slurm" / "train_multinode.sbatch"), str(REPO / "configs" / "demo.yaml"),
                        *train_args], cwd=REPO)
    story = {"job": job, "run": run_dir, "log": log}
    try:
        # Run 1: preempted once a few steps are logged.
        wait_for("the first run to log 3 steps", lambda: sum(map(len, runs_logged(run_dir))) >= 3, 240, slurm, job, log)
        slurm.run("scancel", "--signal=USR1", str(job))
        wait_for("the job to be requeued", lambda: slurm.job(job).get("Restarts") == "1", 120, slurm, job, log)
        story["after_preemption"] = log.read_text()
        start_requeued(slurm, job)

        # Run 2: resumes; once it has written a checkpoint of its own, node 1 dies mid-run.
        first_stop = int(re.findall(r"checkpoint written at step (\d+), exiting with 75", story["after_preemption"])[0])
        wait_for("the second run to write a checkpoint and log a step after it",
                 lambda: (c := [s for s in complete_steps(run_dir) if s > first_stop])
                 and max(map(max, runs_logged(run_dir))) > c[-1], 240, slurm, job, log)
        launcher = wait_for("node 1's launcher", lambda: node_launcher(run_dir, 1), 30, slurm, job, log)
        assert launcher.environ().get("SLURM_NODEID") == "1"
        killed_at = time.monotonic()
        kill_tree(launcher.pid)
        story["last_complete"] = max(complete_steps(run_dir))
        wait_for("the job to end", lambda: slurm.job(job).get("JobState") in ENDED, NODE_DEATH_BOUND_S + 60,
                 slurm, job, log)
        story["failed_after_s"] = time.monotonic() - killed_at
        story["after_death"] = log.read_text()
        story["failed_info"] = slurm.job(job)

        # Run 3: an operator (or, for a node that really went down, Slurm itself) requeues the job.
        slurm.scontrol("requeue", str(job))
        start_requeued(slurm, job)
        wait_for("the requeued run to finish", lambda: slurm.job(job).get("JobState") in ENDED, 300, slurm, job, log)
        story["output"] = log.read_text()
        assert slurm.job(job)["JobState"] == "COMPLETED", story["output"][len(story["after_death"]):][-6000:]
        story["info"] = slurm.job(job)
        return story
    finally:
        for rank in (0, 1):  # nothing of this job outlives the fixture, whatever happened
            while (process := node_launcher(run_dir, rank)) is not None:
                kill_tree(process.pid)


@pytest.mark.slow
def test_two_node_job_preempted_checkpoints_on_both_nodes_and_resumes(multinode_job, hosts):
    output, run_dir = multinode_job["after_preemption"], multinode_job["run"]
    assert re.search(rf"2 node\(s\) x 1 process\(es\), rank 0 on {hosts[0].name}:\d+", output), output[-4000:]
    assert "launch: DDP, 2 process(es) on CPU" in output
    # Both nodes' trainers (one line each: rank 1 logs warnings too) stopped after the same step.
    stops = re.findall(r"checkpoint written at step (\d+), exiting with 75", output)
    assert len(stops) == 2 and len(set(stops)) == 1, output[-4000:]
    k = int(stops[0])
    assert 3 <= k < MAX_STEPS
    assert "requeueing; the next run resumes from it" in output
    assert {p.name for p in (run_dir / "checkpoints" / f"step_{k:08d}").glob("trainer_state_rank*")} == \
        {"trainer_state_rank0.pt", "trainer_state_rank1.pt"}
    full = multinode_job["output"]
    assert re.search(rf"resumed from \S+/step_{k:08d} at step {k} ", full), full[-4000:]
    runs = runs_logged(run_dir)
    assert runs[0] == list(range(1, k + 1)) and runs[1][0] == k + 1, runs


@pytest.mark.slow
def test_two_node_job_fails_when_a_node_dies_and_resumes_from_the_last_checkpoint(multinode_job, hosts):
    run_dir, full = multinode_job["run"], multinode_job["output"]
    assert multinode_job["failed_after_s"] < NODE_DEATH_BOUND_S, multinode_job["failed_after_s"]
    print(f"two-node job FAILED {multinode_job['failed_after_s']:.1f} s after node 1's processes were killed")
    failed = multinode_job["failed_info"]
    assert failed["JobState"] == "FAILED" and failed["ExitCode"] != "0:0", failed
    assert "requeueing" not in multinode_job["after_death"][len(multinode_job["after_preemption"]):]
    c = multinode_job["last_complete"]
    third_run = full[len(multinode_job["after_death"]):]
    assert re.search(rf"resumed from \S+/step_{c:08d} at step {c} ", third_run), third_run[-4000:]
    info = multinode_job["info"]
    assert info["Restarts"] == "2" and info["ExitCode"] == "0:0", info
    assert (run_dir / "exit_code").read_text().strip() == "0"
    assert complete_steps(run_dir)[-1] == MAX_STEPS

    # The step log: run 1 is 1..K, run 2 K+1..(past C, where node 1 died), run 3 C+1..MAX_STEPS. What
    # run 2 did after C is lost with it and done again; nothing is skipped.
    runs = runs_logged(run_dir)
    assert len(runs) == 3, runs
    assert runs[1] == list(range(runs[0][-1] + 1, runs[1][-1] + 1)) and runs[1][-1] > c, runs
    assert runs[2] == list(range(c + 1, MAX_STEPS + 1)), runs
    # One writer: every event file is rank 0's, on node 0; one export, from the run that finished.
    assert all(f".{hosts[0].name}." in Path(f).name for f in step_log(run_dir)), list(step_log(run_dir))
    assert full.count("INFO amh.train: export written to") == 1
    assert (run_dir / "export" / "model.pth").is_file()
