"""A Slurm cluster on this machine for tests: munged, slurmctld and slurmd as root, all state in one folder.

    with LocalSlurm(tmp_dir) as slurm:        # starts the daemons, waits until the node is idle
        job = slurm.sbatch(["--wrap", "hostname"])
        slurm.scontrol("show", "job", str(job))

    with TwoHosts() as hosts, LocalSlurm(tmp_dir, hosts=list(hosts)) as slurm:   # two nodes
        ...

One node (default): this machine's hostname, on localhost. With `hosts` (tests/netns/hosts.py): one
slurmd per host, each in its host's network namespace with its hostname and address, slurmctld on
the first host, and the client commands (sbatch, scontrol, ...) run from the first host too; munged
stays on this machine, its socket is a file that every host sees.

Nothing outside `root` is touched: the munge key, munged's socket, slurm.conf (with this machine's
hostname and `slurmd -C`'s hardware line), spool/state folders and logs all live there, the daemons
listen on free ports, and client commands find the cluster through SLURM_CONF in `env`. `stop()`
(also on errors inside the `with`) cancels the jobs and ends the daemons by their pids.
Debian 12's slurm-wlm 22.05 and munge 0.5 (Makefile SYSTEM_PACKAGES). For a look by hand:

    python tests/slurm/local_slurm.py /tmp/slurm     # starts, prints the SLURM_CONF to export, Ctrl-C stops
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

DAEMONS = ("munged", "slurmctld", "slurmd")


class Node(Protocol):
    """A host to run a slurmd on (tests/netns/hosts.py's Host)."""

    name: str
    addr: str

    def command(self, cmd: list[str]) -> list[str]: ...


class SlurmUnavailable(RuntimeError):
    """The daemons cannot run on this machine (missing binaries, not root, slurmd refused to start)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hardware_line() -> str:
    """`slurmd -C`'s NodeName line (CPUs, sockets, cores, memory as slurmd will detect them)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("NodeName="))
    fields = dict(f.split("=", 1) for f in line.split())
    fields["RealMemory"] = str(int(int(fields["RealMemory"]) * 0.9))  # slurmd drains a node that reports less
    return " ".join(f"{k}={v}" for k, v in fields.items())


class LocalSlurm:
    def __init__(self, root: str | Path, hosts: Sequence[Node] | None = None):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.hosts = list(hosts or [])

    @property
    def nodes(self) -> list[str]:
        return [h.name for h in self.hosts] or [socket.gethostname().split(".")[0]]

    def on_head(self, cmd: list[str]) -> list[str]:
        """`cmd` as run where slurmctld runs (the first host; here when there are no hosts)."""
        return self.hosts[0].command(cmd) if self.hosts else cmd

    # ---- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> LocalSlurm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        missing = [b for b in (*DAEMONS, "mungekey", "sbatch", "scontrol") if shutil.which(b) is None]
        if missing:
            raise SlurmUnavailable(f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("slurmd must run as root (it starts jobs as their user); run the tests as root")
        munge = self.root / "munge"
        for d in (munge, self.root / "state", self.root / "spool", self.root / "jobs"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(munge, 0o700)
        key = munge / "munge.key"
        if not key.exists():
            subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        socket_path = munge / "munge.socket.2"
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={socket_path}", f"--key-file={key}",
                               f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'munged.seed'}",
                               f"--log-file={munge / 'munged.log'}"])
        self._wait(lambda: socket_path.exists(), timeout, "munged did not create its socket")
        self.conf.write_text(self._slurm_conf(socket_path))
        (self.root / "plugstack.conf").write_text("")
        self._spawn("slurmctld", self.on_head(["slurmctld", "-D", "-i", "-f", str(self.conf)]))
        self._wait(lambda: self._ok("scontrol", "ping"), timeout, "slurmctld does not answer `scontrol ping`")
        for i, node in enumerate(self.nodes):
            cmd = ["slurmd", "-D", "-f", str(self.conf), "-N", node]
            (self.root / "spool" / node).mkdir(exist_ok=True)
            self._spawn(f"slurmd-{node}", self.hosts[i].command(cmd) if self.hosts else cmd)
        self._wait(self._nodes_idle, timeout, "slurmd did not register the node(s) as idle")

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            # Job steps run under slurmstepd, which outlives slurmd: end the jobs first.
            subprocess.run(self.on_head(["scancel", "--partition=ci"]), env=self.env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.run("squeue", "--noheader", check=False).strip():
                time.sleep(1)
        for name in reversed(list(self.procs)):  # slurmds, slurmctld, munged
            proc = self.procs.pop(name)
            if proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---- client commands ------------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, env: dict | None = None) -> str:
        result = subprocess.run(self.on_head(list(cmd)), capture_output=True, text=True,
                                env={**self.env, **(env or {})}, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def scontrol(self, *args: str) -> str:
        return self.run("scontrol", *args)

    def sbatch(self, args: list[str], env: dict | None = None, cwd: str | Path | None = None) -> int:
        result = subprocess.run(self.on_head(["sbatch", "--parsable", *args]), capture_output=True, text=True,
                                env={**self.env, **(env or {})}, cwd=cwd, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {result.stderr.strip()}")
        return int(result.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, RestartCnt, ExitCode, ...); {} once Slurm forgot the job."""
        result = subprocess.run(self.on_head(["scontrol", "show", "job", "--oneliner", str(job_id)]),
                                capture_output=True, text=True, env=self.env, timeout=60)
        if result.returncode != 0:
            return {}
        return dict(f.split("=", 1) for f in result.stdout.split() if "=" in f)

    def log(self, name: str, node: str | None = None) -> str:
        """The tail of a daemon's log (slurmd: the first node's unless `node`), for failure messages."""
        if name == "slurmd":
            name = f"slurmd-{node or self.node}"
        path = self.root / ("munge/munged.log" if name == "munged" else f"{name}.log")
        return path.read_text(errors="replace")[-3000:] if path.exists() else f"({path} missing)"

    # ---- internals -------------------------------------------------------------------------------
    @property
    def node(self) -> str:
        """The first node's name (the only one without hosts)."""
        return self.nodes[0]

    def _slurm_conf(self, munge_socket: Path) -> str:
        r = self.root
        # Every host is this machine: the same hardware line for each node name.
        hardware = " ".join(f for f in _hardware_line().split() if not f.startswith("NodeName="))
        if self.hosts:
            controller = f"{self.hosts[0].name}({self.hosts[0].addr})"
            nodes = "\n".join(f"NodeName={h.name} NodeAddr={h.addr} NodeHostname={h.name} {hardware} State=UNKNOWN"
                              for h in self.hosts)
        else:
            controller, nodes = self.node, f"NodeName={self.node} {hardware} State=UNKNOWN"
        return f"""\
ClusterName=amhci
SlurmctldHost={controller}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool' / '%n'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd-%n.pid'}
SlurmctldLogFile={r / 'slurmctld.log'}
SlurmdLogFile={r / 'slurmd-%n.log'}
SlurmdDebug=info
SlurmctldDebug=info
PlugStackConfig={r / 'plugstack.conf'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
{nodes}
PartitionName=ci Nodes={",".join(self.nodes)} Default=YES MaxTime=INFINITE State=UP
"""

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / f"{name}.stdout", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)

    def _ok(self, *cmd: str) -> bool:
        return subprocess.run(self.on_head(list(cmd)), capture_output=True, env=self.env, timeout=30).returncode == 0

    def _nodes_idle(self) -> bool:
        sinfo = ["sinfo", "--noheader", "--Node", "--format=%T", "--nodes", ",".join(self.nodes)]
        out = subprocess.run(self.on_head(sinfo), capture_output=True, text=True, env=self.env, timeout=30).stdout.split()
        return len(out) == len(self.nodes) and all(state.startswith("idle") for state in out)

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmUnavailable(f"{name} exited with {proc.returncode}: "
                                           f"{(self.root / f'{name}.stdout').read_text()[-2000:]}\n{self.log(name)}")
            if ready():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"{what} within {timeout:.0f} s\n{self.log('slurmctld')}\n"
                               + "\n".join(self.log("slurmd", node) for node in self.nodes))


if __name__ == "__main__":
    with LocalSlurm(sys.argv[1] if len(sys.argv) > 1 else "/tmp/amh-slurm") as cluster:
        print(f"export SLURM_CONF={cluster.conf}   # Ctrl-C stops the cluster", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


def wait_for(what: str, check, timeout: float, slurm: LocalSlurm, job: int, log: Path, poll: float = 0.25):
    """Poll `check()` until it returns something true (returned) or `timeout` s pass; the failure
    message carries the job's state, its output and every node's slurmd log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; job {slurm.job(job)}\n"
                         f"--- job output ---\n{log.read_text()[-6000:] if log.exists() else '(none)'}\n"
                         + "\n".join(f"--- slurmd {n} ---\n{slurm.log('slurmd', n)}" for n in slurm.nodes))
