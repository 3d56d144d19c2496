"""Stop the trainer when the launcher that started it dies.

`accelerate launch` (and torchrun behind it) exit at once on SIGTERM without always passing it on,
which used to leave the trainer training and writing with no one to stop it. Two mechanisms, both
ending in the trainer's own stop path (finish the step, checkpoint, exit 75):
- Linux `prctl(PR_SET_PDEATHSIG, SIGTERM)`: the kernel signals this process when its parent exits.
- `LauncherWatch.parent_died()`, polled once per optimizer step: the parent pid changed, for
  platforms without prctl and for a parent that died before prctl was set.
Only processes started by a launcher are watched (torchrun/accelerate set LOCAL_RANK or
ACCELERATE_* variables); a plain `python train.py` in a shell that closes is left alone.
"""
from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Mapping

PR_SET_PDEATHSIG = 1


def launched(environ: Mapping[str, str]) -> bool:
    return "LOCAL_RANK" in environ or any(k.startswith("ACCELERATE_") for k in environ)


class LauncherWatch:
    def __init__(self, environ: Mapping[str, str]):
        self.active = launched(environ)
        self.parent = os.getppid()
        if self.active:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            except (OSError, AttributeError):  # not Linux: polling alone
                pass

    def parent_died(self) -> bool:
        return self.active and os.getppid() != self.parent
