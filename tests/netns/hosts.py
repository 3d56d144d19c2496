"""Two hosts on one machine for tests: two network namespaces on a private veth link, each with its own hostname.

    with TwoHosts() as hosts:
        a, b = hosts                          # Host(name="amh123n0", addr="10.213.57.1", netns=...)
        subprocess.run(a.command(["hostname"]))   # -> amh123n0, on a's network
        subprocess.run(b.command(["python", "-c", "..."]))

What a host has of its own: a network namespace whose only links are `lo` and one end of a veth pair
(10.213.N.1/24 and .2/24, nothing routed anywhere else), a hostname (`unshare --uts`, set before the
command starts, so gloo and TensorBoard see it), and an /etc/hosts naming both hosts (bind-mounted
in a private mount namespace). Everything else is shared with this machine: the filesystem (as on a
cluster with a shared home/scratch), /sys (slurmd needs the cgroup mounts, which `ip netns exec`'s
fresh sysfs would hide: hence nsenter), the process table (so the test can end what it started by
pid), the CPUs. Needs root; `TwoHosts.__enter__` raises HostsUnavailable with the reason where
namespaces cannot be made, and `__exit__` removes the namespaces even after an error (the veth pair
goes with them, the hosts file lives in the caller's folder).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Runs as `sh -c SCRIPT NAME HOSTS_FILE CMD...` in new UTS and mount namespaces: the hostname, the
# hosts file over /etc/hosts (private to this mount namespace), then becomes the command.
_ENTER = 'hostname "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"'


class HostsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no `ip`/`unshare`, or the kernel refuses)."""


@dataclass(frozen=True)
class Host:
    name: str
    addr: str
    netns: str
    hosts_file: Path

    def command(self, cmd: list[str]) -> list[str]:
        """`cmd` run on this host: its network, its hostname, its /etc/hosts."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--uts", "--mount", "sh", "-c", _ENTER,
                self.name, str(self.hosts_file), *cmd]


class TwoHosts:
    def __init__(self, folder: str | Path | None = None):
        # Names and the subnet carry this process's id, so that two test sessions on one machine
        # do not collide (interface names have at most 15 characters).
        tag = os.getpid()
        subnet = f"10.213.{20 + tag % 200}"
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="amh-hosts-"))
        hosts_file = self.folder / "hosts"
        self.hosts = [Host(name=f"amh{tag}n{i}", addr=f"{subnet}.{i + 1}", netns=f"amh{tag}n{i}",
                           hosts_file=hosts_file) for i in (0, 1)]
        self.veth = (f"amh{tag}v0", f"amh{tag}v1")
        self._made: list[str] = []

    def __iter__(self):
        return iter(self.hosts)

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def __enter__(self) -> TwoHosts:
        missing = [b for b in ("ip", "nsenter", "unshare", "mount", "hostname") if shutil.which(b) is None]
        if missing:
            raise HostsUnavailable(f"not installed: {', '.join(missing)} (apt-get install iproute2 util-linux)")
        if os.geteuid() != 0:
            raise HostsUnavailable("network namespaces need root (ip netns add); run the tests as root")
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ip(self, *args: str) -> None:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise HostsUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")

    def _create(self) -> None:
        for host in self.hosts:
            self._ip("netns", "add", host.netns)
            self._made.append(host.netns)
        a, b = self.hosts
        self._ip("link", "add", self.veth[0], "netns", a.netns, "type", "veth", "peer", "name", self.veth[1],
                 "netns", b.netns)
        self.folder.mkdir(parents=True, exist_ok=True)
        a.hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"{h.addr} {h.name}\n" for h in self.hosts))
        for host, veth in zip(self.hosts, self.veth):
            self._ip("-n", host.netns, "addr", "add", f"{host.addr}/24", "dev", veth)
            self._ip("-n", host.netns, "link", "set", veth, "up")
            self._ip("-n", host.netns, "link", "set", "lo", "up")
        probe = subprocess.run(b.command(["getent", "hosts", b.name]), capture_output=True, text=True, timeout=30)
        if probe.returncode != 0 or probe.stdout.split()[:1] != [b.addr]:
            why = probe.stderr.strip() or probe.stdout.strip()
            raise HostsUnavailable(f"unshare --uts --mount in {b.netns}: {why}")

    def close(self) -> None:
        """Remove the namespaces (their veth ends go with them)."""
        for netns in reversed(self._made):
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=30)
        self._made.clear()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
