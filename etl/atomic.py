"""Writes that are complete or absent, never half there.

Every directory the project produces (a catalog build, an RDF store, a checkpoint, an
embedding store) is written into a hidden sibling first and then moved into place with
:func:`replace_directory`; single files go through :func:`write_text`. A reader (or a crash)
sees the old version or the new one.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


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
