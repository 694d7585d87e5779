"""One graph load per database at a time.

Two `k3m kg load` of one build into one database used to race: both saw the same items
missing and the second died on the uniqueness constraints. A load now holds an exclusive
``flock`` on a file named after the server and the database for its whole duration; a
second load waits for it (saying so once), then finds everything loaded and writes nothing.
The kernel drops the lock when its holder dies, so a killed load never blocks the next one.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from kg.paths import data_dir


def lock_path(db) -> Path:
    """Embedded: next to the server's files; another server: under the data directory."""
    if db.server is not None:
        folder = db.server.home / "locks"
    else:
        folder = data_dir() / "locks"
    key = hashlib.sha1(f"{db.uri}\x1f{db.database}".encode()).hexdigest()[:12]
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / f"load-{key}.lock"


@contextmanager
def load_lock(db, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    waiting = waiting or (lambda message: print(f"[k3m] {message}", file=sys.stderr, flush=True))
    with os.fdopen(os.open(lock_path(db), os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(f"another load into database {db.database!r} is running; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
