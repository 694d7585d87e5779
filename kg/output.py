"""Printing query results: aligned text tables for people, JSON for programs.

Shared by `k3m kg` and the `k3m query` scripts (the one place Bolt values become JSON)."""
from __future__ import annotations

import json
import shutil
import sys


def jsonable(value):
    """Bolt values as JSON: nodes/relationships are already dicts in ``Record.data()``;
    temporal and spatial values become their string form."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def dumps(document) -> str:
    return json.dumps(jsonable(document), ensure_ascii=False, indent=1)


def cell(value, width: int) -> str:
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.4f}"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(jsonable(value), ensure_ascii=False)
    text = text.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def table(rows: list[dict], columns: list[str] | None = None, max_width: int | None = None) -> str:
    """Rows as a left-aligned text table; long cells are cut to share the terminal width."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    total = max_width or max(60, shutil.get_terminal_size((120, 24)).columns)
    limit = max(8, (total - 2 * (len(columns) - 1)) // max(1, len(columns)))
    texts = [[cell(row.get(c), 10_000) for c in columns] for row in rows]
    widths = [max(len(c), *(len(t[j]) for t in texts)) for j, c in enumerate(columns)]
    # give narrow columns their width and split the rest among the wide ones
    spare = total - 2 * (len(columns) - 1) - sum(min(w, limit) for w in widths)
    widths = [w if w <= limit else min(w, limit + max(0, spare) // max(1, sum(x > limit for x in widths))) for w in widths]
    lines = ["  ".join(c.ljust(w)[:w] for c, w in zip(columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(cell(row.get(c), w).ljust(w) for c, w in zip(columns, widths)).rstrip())
    return "\n".join(lines)


def progress_printer(what: str):
    """``report(done, total)``: one updating stderr line on a terminal, one line per call in a log."""
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        print(f"{chr(13) if tty else ''}[k3m] {done}/{total} {what}", end="" if tty and done < total else "\n",
              file=sys.stderr, flush=True)
    return report
