"""Leftover work directories: removed once their writer is gone, never while it works."""
from __future__ import annotations

import os
import subprocess
import sys

from etl.atomic import LOCK_NAME, directory_lock, owned, remove_stale, writing_directory


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_leftovers_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    final = tmp_path / "build"
    dead = _dead_pid()
    (tmp_path / f".build.partial-{dead}").mkdir()
    (tmp_path / f".build.partial-{dead}" / "items.parquet").write_bytes(b"x" * 100)
    (tmp_path / f".build.old-{dead}").mkdir()
    (tmp_path / ".other.partial-1").mkdir()  # another build's: not ours to judge
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom etl.atomic import owned\n"
         f"with owned(Path({str(tmp_path)!r}) / '.build.partial-999999999'):\n"
         "    print('ready', flush=True)\n    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "ready\n"
        removed = remove_stale(final)
        assert sorted(p.name for p in removed) == [f".build.old-{dead}", f".build.partial-{dead}"]
        # the pid in the name is long gone, but the lock says its writer is alive
        assert (tmp_path / ".build.partial-999999999").is_dir()
    finally:
        writer.kill()
        writer.wait()
    assert [p.name for p in remove_stale(final)] == [".build.partial-999999999"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-1"]


def test_owned_removes_its_lock_file_when_done(tmp_path):
    with owned(tmp_path / ".b.partial-1") as partial:
        assert (partial / LOCK_NAME).is_file()
        (partial / "manifest.json").write_text("{}")
    assert [p.name for p in (tmp_path / ".b.partial-1").iterdir()] == ["manifest.json"]


def test_a_writer_between_creating_and_locking_is_left_alone(tmp_path):
    import os

    live = os.getppid()  # alive, and not us
    young = tmp_path / f".build.partial-{live}"
    young.mkdir()
    (young / LOCK_NAME).write_text("")  # created, not locked yet
    assert remove_stale(tmp_path / "build") == [] and young.is_dir()
    os.utime(young / LOCK_NAME, (0, 0))  # an old, unlocked lock file: that pid was reused
    assert remove_stale(tmp_path / "build") == [young]


def test_a_directory_named_through_a_symbolic_link_is_written_at_its_target(tmp_path):
    target = tmp_path / "builds" / "B"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old")
    link = tmp_path / "L"
    link.symlink_to(target)
    with writing_directory(link) as partial:
        (partial / "new.txt").write_text("new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["L", "builds"]  # no .L.old-PID left behind
    assert sorted(p.name for p in target.parent.iterdir()) == ["B"]


def _holder(final) -> subprocess.Popen:
    """Another process holding the writer lock of ``final`` until its stdin closes."""
    script = ("import sys\nfrom etl.atomic import directory_lock\n"
              f"with directory_lock({str(final)!r}):\n    print('held', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_writers_of_one_directory_wait_for_each_other_across_processes(tmp_path):
    import threading

    final = tmp_path / "build"
    holder = _holder(final)
    said, entered = [], threading.Event()

    def writer():
        with directory_lock(final, "import or sync", waiting=said.append):
            entered.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert not entered.wait(1.0)  # still held by the other process
    assert said == [f"another import or sync of {final} is running; waiting for it to finish"]
    holder.stdin.close()
    holder.wait(30)
    assert entered.wait(30)
    thread.join()
    with directory_lock(final), directory_lock(tmp_path / "other" / ".." / "build"):  # reentrant, by resolved path
        pass
