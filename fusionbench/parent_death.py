"""Worker processes that end when the process that started them dies.

A ``kill -9`` of ``pipelines fuse`` otherwise leaves its pool workers (hundreds of MB each) running
under PID 1: they hold their own end of the task queue, so they never see it close. On Linux the
kernel can send a signal to a process when its parent dies (``prctl(PR_SET_PDEATHSIG)``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Called first thing in a worker process: have the kernel kill it when ``parent_pid`` exits.

    No-op off Linux. The parent may already be gone before the request is registered; then exit now."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(1)
