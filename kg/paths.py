"""Where the project keeps its mutable state (graph server files, RDF stores).

``K3M_DATA_DIR`` wins; otherwise ``data/`` under the project root, which is the nearest
directory above the working directory holding a ``pyproject.toml`` (so running `k3m` from a
subdirectory does not scatter data folders), or the working directory itself.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "K3M_DATA_DIR"


def project_root(start: Path | None = None) -> Path:
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return start


def data_dir() -> Path:
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    return project_root() / "data"
