"""The results store resumes: finished cells are known after a reopen, a line cut by a
crash is ignored (and redone), and appending after it stays parseable."""
from __future__ import annotations

import json

from k3m.evaluation.results import CellResult, ResultStore, cell_key


def cell(task="classification", ratio=0.5, value=0.8):
    return CellResult(task, "TMR", ratio, "k3m", "probe", 0, {"accuracy": value}, 1.0, {"n_test": 10})


def test_reopen_knows_finished_cells(tmp_path):
    store = ResultStore(tmp_path / "results.jsonl")
    store.add(cell())
    store.add_timing("pretrain", "k3m", 12.5)
    again = ResultStore(tmp_path / "results.jsonl")
    assert again.has(cell_key("classification", "TMR", 0.5, "k3m", "probe", 0))
    assert not again.has(cell_key("classification", "TMR", 0.8, "k3m", "probe", 0))
    assert not again.has(cell_key("classification", "TMR", 0.5, "k3m", "probe", 1))
    assert [t["seconds"] for t in again.timings()] == [12.5]
    assert again.cells()[0]["metrics"] == {"accuracy": 0.8}


def test_a_truncated_line_is_ignored_and_the_file_stays_valid(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultStore(path)
    store.add(cell(ratio=0.2))
    line = json.dumps({"kind": "cell", "task": "qa"})
    with open(path, "a") as f:
        f.write(line[: len(line) // 2])  # killed mid-write
    store = ResultStore(path)
    assert len(store.cells()) == 1
    store.add(cell(ratio=0.8))
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["ratio"] == 0.8
    assert len(ResultStore(path).cells()) == 2
