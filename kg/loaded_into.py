"""Which graph database a build was loaded into: ``BUILD/graph.json``.

`k3m kg load BUILD --graph --database shop` records ``shop`` (with the server it lives on)
in the build, so that later commands on that build (`k3m kg load BUILD`, `k3m embed ... BUILD`,
`k3m query ... --build BUILD`) use that database without being told again. An explicit
``--database`` always wins. The file is small, written atomically, and not part of the
import's output (re-importing the build drops it, as the new build is not loaded yet).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

FILE = "graph.json"


def record(build_path: str | Path, db) -> None:
    """Note that ``build_path`` is now loaded into ``db`` (a :class:`kg.graph_db.GraphDB`)."""
    path = Path(build_path) / FILE
    entry = {"database": db.database, "server": db.where,
             "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_name(f".{FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def database_of(build_path: str | Path | None) -> str | None:
    """The database ``build_path`` was last loaded into, or None."""
    if build_path is None:
        return None
    try:
        entry = json.loads((Path(build_path) / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    database = entry.get("database") if isinstance(entry, dict) else None
    return database if isinstance(database, str) and database else None
