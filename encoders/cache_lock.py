"""The feature cache's writer lock, which says who holds it.

One process computes into a cache directory at a time (``flock`` on ``DIR/.lock``; the
kernel drops it when the holder dies, however it dies). The holder writes its pid, command
line and start time into the lock file, so a process that has to wait says whose lock it
waits for (and again every ``remind_s``) instead of hanging without a word.
"""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator


def _holder_line(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder.get("pid"):
        return "by a process that has not said who it is yet"
    since = float(holder.get("since", time.time()))
    ago = max(time.time() - since, 0)
    host = f" on {holder['host']}" if holder.get("host") and holder["host"] != socket.gethostname() else ""
    return (f"by pid {holder['pid']}{host} ({holder.get('command', '?')}) since "
            f"{datetime.fromtimestamp(since).strftime('%Y-%m-%d %H:%M:%S')} ({ago / 60:.0f} min ago)")


def _command() -> str:
    argv = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    line = shlex.join(argv)
    return line if len(line) <= 200 else line[:197] + "..."


@contextmanager
def cache_lock(path: Path, log: Callable[[str], None], remind_s: float = 60.0, poll_s: float = 0.2) -> Iterator[None]:
    """Hold the exclusive lock ``path`` for the block; log whose lock blocks us while waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:  # "a+": opening must not wipe the holder's note
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            started = time.monotonic()
            log(f"waiting for the feature cache lock {path}, held {_holder_line(path)}")
            reminded = started
            while True:
                time.sleep(poll_s)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() - reminded >= remind_s:
                        reminded = time.monotonic()
                        log(f"still waiting ({(reminded - started) / 60:.0f} min) for {path}, held {_holder_line(path)}")
            log(f"got the feature cache lock {path} after {time.monotonic() - started:.0f}s")
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "command": _command(), "since": time.time(),
                                     "host": socket.gethostname()}))
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
