"""A worker started with die_with_parent ends when its parent is killed (kill -9).
(The import's own pool is checked end to end in test_build.py.)"""
from __future__ import annotations

import os
import subprocess
import sys
import time


def test_orphaned_worker_exits(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", (
        "import multiprocessing as mp, os, sys, time\n"
        "from etl.worker_lifetime import die_with_parent\n"
        "def work(parent):\n    die_with_parent(parent)\n    time.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    child = mp.get_context('fork').Process(target=work, args=(os.getpid(),))\n"
        "    child.start()\n    print(child.pid, flush=True)\n    time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.3)  # the child has set itself up
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        if open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.05)
    os.kill(child, 9)
    raise AssertionError("the worker outlived its parent")
