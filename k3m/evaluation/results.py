"""Resumable results: one JSON line per finished grid cell in ``results.jsonl``.

A cell is keyed by (task, setting, ratio, model, mode, seed). A rerun over the same output
directory skips the keys already present, so an interrupted grid resumes where it stopped;
a line is only written once its cell has finished, and written whole (one ``write`` of a
complete line, then ``flush``/``fsync``), so a crash never leaves half a result that looks
finished. A truncated last line (killed mid-write) is ignored on load and redone.

Timing lines (``"kind": "timing"``) record what is not a cell: pretraining a model,
training TransE, encoding items; the report sums them per part. Every line carries the
id of the invocation that wrote it and the seconds since that invocation started, so the
wall time of a run that was killed still counts up to its last line.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from etl.atomic import write_text

KEY_FIELDS = ("task", "setting", "ratio", "model", "mode", "seed")


@dataclass
class CellResult:
    task: str
    setting: str
    ratio: float
    model: str
    mode: str
    seed: int
    metrics: dict[str, float]
    seconds: float
    sizes: dict[str, int] = field(default_factory=dict)  # n_train, n_test, n_queries ...
    kind: str = "cell"
    reused_clean: bool = False  # the model reads none of what the setting corrupts: the clean cell
    probe: dict = field(default_factory=dict)  # how the probe was fitted (kind, chosen C, converged)

    @property
    def key(self) -> tuple:
        return cell_key(self.task, self.setting, self.ratio, self.model, self.mode, self.seed)


def cell_key(task: str, setting: str, ratio: float, model: str, mode: str, seed: int) -> tuple:
    return (task, setting, round(float(ratio), 6), model, mode, int(seed))


class ResultStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self._started = time.perf_counter()
        self.records: list[dict] = []
        self._keys: set[tuple] = set()
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: that cell is simply redone
                self._remember(record)

    def _remember(self, record: dict) -> None:
        self.records.append(record)
        if record.get("kind", "cell") == "cell":
            self._keys.add(cell_key(*(record[k] for k in KEY_FIELDS)))

    def has(self, key: tuple) -> bool:
        return key in self._keys

    def cells(self) -> list[dict]:
        return [r for r in self.records if r.get("kind", "cell") == "cell"]

    def timings(self) -> list[dict]:
        return [r for r in self.records if r.get("kind") == "timing"]

    def forget(self, tasks: list[str], parts: set[str]) -> int:
        """Drop every cell of ``tasks`` and the timing lines of ``parts`` that recomputing
        them writes again (each task declares its ``timing_parts``), so a rerun redoes those
        cells and the report's time sums stay whole. The file is rewritten aside and renamed
        over the old one. Returns the number of lines dropped."""
        tasks = set(tasks)

        def dropped(record: dict) -> bool:
            if record.get("kind", "cell") == "cell":
                return record.get("task") in tasks
            return record.get("kind") == "timing" and record.get("part") in parts

        keep = [r for r in self.records if not dropped(r)]
        gone = len(self.records) - len(keep)
        if gone:
            write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
            self.records, self._keys = [], set()
            for record in keep:
                self._remember(record)
        return gone

    def add(self, result: CellResult) -> None:
        self._append(asdict(result))

    def add_timing(self, part: str, name: str, seconds: float, **extra) -> None:
        self._append({"kind": "timing", "part": part, "name": name, "seconds": float(seconds), **extra})

    def _append(self, record: dict) -> None:
        record = {
            **record,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "run": self.run_id,
            "run_elapsed": round(time.perf_counter() - self._started, 3),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with open(self.path, "a+b") as f:
            # a previous run killed mid-line leaves no newline: start on a fresh line
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = b"\n" + line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._remember(record)
