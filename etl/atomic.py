"""Writes that are complete or absent, never half there, and what killed writers leave.

Every directory the project produces (a catalog build, an RDF store, a checkpoint, an
embedding store, a feature-cache table) is written by :func:`writing_directory`: into a
hidden sibling ``.NAME.partial-PID`` first, then moved into place with
:func:`replace_directory` (a reader, or a crash, sees the old version or the new one). Single
files go through :func:`write_text`.

A directory named through a symbolic link is written where the link points (the link stays,
the target is replaced): :func:`writing_directory` resolves the name once, first. Renaming
onto the link itself would replace the link with a real directory and leave the target, and
the old version beside it, behind.

A killed writer leaves its sibling behind (hundreds of MB for a catalog build). The writer
holds an exclusive ``flock`` on a lock file inside it for as long as it works (:func:`owned`);
the kernel drops that lock when the writer dies, however it dies, so a later writer of the
same directory can tell a leftover from a directory still being written
(:func:`remove_stale`) without trusting a pid that may have been reused. A sibling without a
lock file (being created, or being renamed) counts as live while its pid is.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

LOCK_NAME = ".owner.lock"
YOUNG_S = 60.0  # a lock file this recent may belong to a writer between creating and locking it
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old|tmp)-(?P<pid>\d+)$")
_held: dict[str, int] = {}  # writer locks this process holds -> depth (a sync holds its build's around the import)


@contextmanager
def owned(partial: Path) -> Iterator[Path]:
    """Create ``partial`` and hold its lock until the block ends (the lock file is removed
    then, so it never travels into the finished directory)."""
    partial.mkdir(parents=True)
    lock = partial / LOCK_NAME
    handle = open(lock, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield partial
    finally:
        lock.unlink(missing_ok=True)
        handle.close()


def remove_stale(final: Path) -> list[Path]:
    """Remove the hidden siblings of ``final`` whose writer is gone; returns what was removed."""
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    for entry in final.parent.iterdir():
        match = _SIBLING.match(entry.name)
        if match is None or match["name"] != final.name or int(match["pid"]) == os.getpid():
            continue
        if entry.is_dir() and _abandoned(entry, int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _abandoned(directory: Path, pid: int) -> bool:
    lock = directory / LOCK_NAME
    try:
        handle = open(lock, "r+")
    except FileNotFoundError:
        return not pid_alive(pid)
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer still holds it
        # free: the writer is gone, unless it created the file a moment ago and is about to
        # lock it (a live pid with a young file); a live pid with an old file was reused
        young = time.time() - os.fstat(handle.fileno()).st_mtime < YOUNG_S
        return not (young and pid_alive(pid))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def resolved(path: str | Path) -> Path:
    """``path`` with every symbolic link followed (also a dangling one, to where it points),
    so a directory is written, keyed and compared by one name."""
    return Path(os.path.realpath(path))


def partial_path(final: Path, kind: str = "partial") -> Path:
    """The hidden sibling a process writes ``final`` into: ``.NAME.KIND-PID``."""
    return final.with_name(f".{final.name}.{kind}-{os.getpid()}")


def replace_directory(partial: Path, final: Path) -> None:
    """Move the finished directory ``partial`` to ``final``, replacing what was there.

    With an existing ``final`` the swap is two renames (old aside, new in), and the old
    directory is removed only after the new one is in place."""
    partial, final = Path(partial), Path(final)
    if final.exists():
        old = partial_path(final, "old")
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old)
    else:
        partial.rename(final)


@contextmanager
def writing_directory(final: Path) -> Iterator[Path]:
    """Write the directory ``final`` completely aside, then swap it in.

    Yields the hidden sibling to write into (held as this process's with :func:`owned`);
    when the block ends it replaces ``final``, and when the block raises it is removed.
    Leftovers of killed writers of ``final`` are removed first. A ``final`` that is (or
    lies under) a symbolic link is written at the link's target."""
    final = resolved(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    partial = partial_path(final)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with owned(partial):
            yield partial
        replace_directory(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def write_text(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` atomically (a temporary sibling, fsync, rename); ``mode``
    (e.g. 0o600) applies from the first byte."""
    path = Path(path)
    tmp = partial_path(path, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def lock_dir() -> Path:
    """Where writer locks live: one file per directory written, outside the user's folders
    (a lock file cannot be removed safely after use, and a build's parent should hold builds)."""
    folder = Path(tempfile.gettempdir()) / f"k3m-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


@contextmanager
def directory_lock(final: str | Path, what: str = "write", waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """One writer of the directory ``final`` at a time, across processes: an exclusive
    ``flock`` on a file named after its resolved path (:func:`lock_dir`) for the whole block.
    Another writer waits, saying so once (two updates of one build would otherwise race on
    the build they both replace, and two RDF writers on the store's own lock). The kernel
    drops the lock when its holder dies. Reentrant within a process. ``what`` names the
    writer for the message."""
    final = resolved(final)
    digest = hashlib.sha1(str(final).encode()).hexdigest()[:16]
    path = lock_dir() / f"{final.name[:64]}-{digest}.lock"
    key = str(path)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    waiting = waiting or (lambda message: print(f"[k3m] {message}", file=sys.stderr, flush=True))
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(f"another {what} of {final} is running; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            fcntl.flock(handle, fcntl.LOCK_UN)
