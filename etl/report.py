"""Accounting for an import: every row read is either an item or a line in ``rejects.jsonl``,
every dropped value and every image outcome is counted. Becomes ``summary.json``."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from etl.errors import UserError
from etl.readers import SourceRow

RAW_LIMIT = 65536  # characters of a rejected row kept in rejects.jsonl


class StrictImportError(UserError, RuntimeError):
    """``--strict``: a row was rejected."""


@dataclass
class ImportReport:
    rejects_path: Path
    strict: bool = False
    rows_read: int = 0
    items: int = 0
    rejected: Counter = field(default_factory=Counter)
    dropped_values: Counter = field(default_factory=Counter)
    images: Counter = field(default_factory=lambda: Counter(ok=0, missing=0, bad=0, refused=0))
    image_reasons: Counter = field(default_factory=Counter)
    reader_counts: Counter = field(default_factory=Counter)  # blank_lines
    titles_missing: int = 0
    first_reject: dict | None = None  # for the error when no row gives an item
    # the id of each rejected row whose id could be read -> where and why (first reject of
    # that id): an update names the items of the previous version its rejects would remove
    rejected_ids: dict = field(default_factory=dict)
    rejected_without_id: int = 0
    _rejects: IO[str] | None = None

    def __post_init__(self):
        self._rejects = self.rejects_path.open("w", encoding="utf-8")

    def reject(self, row: SourceRow, reason: str, detail: str | None, item_id: str | None = None) -> None:
        """``item_id``: the id the row carries, where it can be read (never imported)."""
        if self.strict:
            raise StrictImportError(f"{row.source}:{row.line}: row rejected ({reason}): {detail}")
        self.rejected[reason] += 1
        raw = row.raw_text()
        entry = {"source": row.source, "line": row.line, "reason": reason, "detail": detail, "raw": raw[:RAW_LIMIT]}
        if len(raw) > RAW_LIMIT:
            entry["raw_truncated"] = True
        if item_id is not None:
            entry["id"] = item_id
            self.rejected_ids.setdefault(item_id, {k: entry[k] for k in ("source", "line", "reason", "detail")})
        else:
            self.rejected_without_id += 1
        if self.first_reject is None:
            self.first_reject = {k: entry[k] for k in ("source", "line", "reason", "detail")}
        self._rejects.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def image(self, status: str, reason: str | None = None) -> None:
        self.images[status] += 1
        if reason is not None:
            self.image_reasons[f"{status}:{reason}"] += 1

    def close(self) -> None:
        self._rejects.close()

    def rejected_rows(self) -> int:
        return sum(self.rejected.values())

    def summary(self, **extra) -> dict:
        if self.rows_read != self.items + self.rejected_rows():
            raise RuntimeError(f"accounting bug: {self.rows_read} rows read != {self.items} items + {self.rejected_rows()} rejected")
        return {
            "rows_read": self.rows_read,
            "items": self.items,
            "rejected_rows": self.rejected_rows(),
            "rejected": dict(sorted(self.rejected.items())),
            **extra,
            "images": dict(self.images),
            "image_reasons": dict(sorted(self.image_reasons.items())),
            "dropped_values": dict(sorted(self.dropped_values.items())),
            "titles_missing": self.titles_missing,
            "blank_lines": self.reader_counts["blank_lines"],
        }
