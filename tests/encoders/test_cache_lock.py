"""A feature computation blocked by another process's lock says whose lock it waits for."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from encoders.cache import FeatureCache

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys; from pathlib import Path; from encoders.cache_lock import cache_lock\n"
        "with cache_lock(Path(sys.argv[1]), print):\n    print('held', flush=True); sys.stdin.read()")


@pytest.mark.usefixtures("single_thread")
def test_a_blocked_computation_names_the_holder_and_goes_on_when_it_lets_go(frozen_slice_index, slice_build, tmp_path):
    original = frozen_slice_index.features
    shutil.copytree(original.path, tmp_path / "features" / original.path.name)
    cache = FeatureCache(original.spec, tmp_path / "features")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(cache.path / ".lock"), "--holding-for-a-test"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        said: list[str] = []
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (cache.for_build(slice_build, progress=False, log=said.append), done.set()))
        waiter.start()
        deadline = time.monotonic() + 60
        while not said and time.monotonic() < deadline:
            time.sleep(0.1)
        assert said, "waited without a word"
        assert said[0].startswith(f"waiting for the feature cache lock {cache.path / '.lock'}, held by pid {holder.pid} ")
        assert "--holding-for-a-test" in said[0] and " since " in said[0] and "min ago" in said[0]
        assert not done.is_set()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    waiter.join(timeout=300)
    assert done.is_set() and said[-1].startswith("got the feature cache lock")
    assert (cache.path / ".lock").read_text() == ""  # the holder's note goes with the lock
