"""One run per output directory: an exclusive lock held by the main process for the whole run.

Two trainers on one output_dir interleave silently (the second resumes from the first's checkpoint,
both write the same steps, one deletes the other's temporary checkpoint). `RunLock` takes
`fcntl.flock` on `<output_dir>/.lock`: the kernel releases it when the holder exits in any way,
kill -9 included, so a stale lock cannot outlive a crash. The file records who holds it (pid,
host, start time, command) so the refusal can name the holder. flock is advisory and local to a
host's kernel (on NFS it is emulated with byte-range locks, which Linux NFS clients support).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from amh.errors import UserError

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise UserError(f"{self.path.parent} is in use by another training run ({holder}); wait for it to "
                            "finish, stop it, or give this run another output_dir") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['command']}"
    except (ValueError, KeyError, UnicodeDecodeError):
        return "holder unknown"
