"""Worker processes that die with their parent.

A pool worker waits on a pipe for its next task. When the parent is killed (``kill -9``),
nothing closes that pipe (the worker holds its own copy of both ends since the fork), so
the worker would wait forever. :func:`die_with_parent` is the pool's initializer: on Linux
the kernel sends the worker SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); everywhere,
a daemon thread also checks every second that the parent is still the same process.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
CHECK_EVERY_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # the watch thread below still covers it
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="die-with-parent", daemon=True).start()


def _watch(parent_pid: int) -> None:
    while True:
        time.sleep(CHECK_EVERY_S)
        if os.getppid() != parent_pid:
            os._exit(1)
