"""Per-item strings as numpy StringDType arrays and the id -> row map over them, on the real
fashion44k ids (a million of them derived as the scale benchmark does: ID~k)."""
from __future__ import annotations

import gzip
import itertools
import json

import numpy as np
import pyarrow as pa
import pytest

from etl import string_arrays
from etl.string_arrays import OPTIONAL_STRINGS, STRINGS, RowOf, arrow_strings, missing, strings


@pytest.fixture(scope="module")
def ids(fashion_dir) -> np.ndarray:
    with gzip.open(fashion_dir / "styles.jsonl.gz", "rt", encoding="utf-8") as stream:
        base = [str(json.loads(line)["id"]) for line in itertools.islice(stream, 5000)]
    return np.array(base + [f"{i}~{k}" for k in range(1, 20) for i in base], dtype=STRINGS)  # 100k ids


def test_row_of_finds_every_id_and_only_those(ids):
    row_of = RowOf(ids)
    order = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(row_of.find(ids[order]), order)
    assert row_of.find(["no such id", str(ids[7]), "15970~99"]).tolist() == [-1, 7, -1]
    assert row_of.find(np.array([], dtype=STRINGS)).tolist() == []
    assert row_of.get(str(ids[123])) == 123 and row_of.get("missing") is None and row_of.get(5) is None
    assert str(ids[5]) in row_of and "missing" not in row_of and row_of[str(ids[9])] == 9
    with pytest.raises(KeyError):
        row_of["missing"]


def test_row_of_survives_equal_hashes(ids, monkeypatch):
    """Every id hashed alike: the map still answers by comparing the ids themselves."""
    monkeypatch.setattr(string_arrays, "string_hashes", lambda values: np.zeros(len(values), np.int64))
    few = ids[:300]
    row_of = RowOf(few)
    order = np.random.default_rng(1).permutation(len(few))
    np.testing.assert_array_equal(row_of.find(few[order]), order)
    assert row_of.find(["missing"]).tolist() == [-1]


def test_a_stable_map_is_written_once_and_read_back_by_another_process(ids, tmp_path):
    """The stable hashes are the same in a fresh interpreter (Python's own are salted per
    process), so the sorted arrays written once answer in any later process."""
    import subprocess
    import sys

    made = RowOf(ids, stable=True)
    hashes, order = made.arrays()
    np.save(tmp_path / "h.npy", hashes)
    np.save(tmp_path / "o.npy", order)
    other = subprocess.run([sys.executable, "-c", "import sys, numpy as np; from etl.string_arrays import stable_string_hashes;"
                            "print(int(stable_string_hashes(sys.argv[1:])[0]))", str(ids[42])],
                           capture_output=True, text=True, check=True)
    assert int(other.stdout) == int(string_arrays.stable_string_hashes(ids[42:43])[0])
    read = RowOf(ids, stable=True, sorted_hashes=np.load(tmp_path / "h.npy", mmap_mode="r"),
                 order=np.load(tmp_path / "o.npy", mmap_mode="r"))
    order_ = np.random.default_rng(2).permutation(len(ids))
    np.testing.assert_array_equal(read.find(ids[order_]), order_)
    assert read.find(["no such id", str(ids[7])]).tolist() == [-1, 7]
    with pytest.raises(ValueError, match="one per id"):
        RowOf(ids[:10], stable=True, sorted_hashes=hashes, order=order)


def test_arrow_round_trip_keeps_nulls_and_no_python_objects():
    values = pa.array(["a", None, "Ünïcode ✓", "", "x" * 100])
    optional = strings(values, optional=True)
    assert optional.dtype == OPTIONAL_STRINGS and optional.tolist() == ["a", None, "Ünïcode ✓", "", "x" * 100]
    assert missing(optional).tolist() == [False, True, False, False, False]
    assert arrow_strings(optional).to_pylist() == values.to_pylist()
    plain = strings(pa.chunked_array([["b", "c"], ["d"]]))
    assert plain.dtype == STRINGS and plain.tolist() == ["b", "c", "d"]
    assert plain.dtype != np.dtype(object)


def test_a_parquet_column_is_read_by_row_group(ids, tmp_path):
    import pyarrow.parquet as pq

    from etl.string_arrays import ParquetStringColumn

    with pq.ParquetWriter(tmp_path / "ids.parquet", pa.schema([("item_id", pa.string())])) as out:
        for lo in range(0, len(ids), 30000):
            out.write_table(pa.table({"item_id": arrow_strings(ids[lo:lo + 30000])}))
    column = ParquetStringColumn(tmp_path / "ids.parquet", "item_id")
    rows = np.array([99_999, 0, 31_000, 30_000, 5])
    assert len(column) == len(ids) and column[rows].tolist() == ids[rows].tolist() and column[7] == str(ids[7])
    assert sorted(column.groups) == [0, 1, 3]  # only the groups holding them were read
    with pytest.raises(IndexError):
        column[np.array([len(ids)])]
    with pytest.raises(TypeError, match="not a mask"):
        column[np.zeros(len(ids), bool)]
    stable = RowOf(ids, stable=True)
    lazy = RowOf(column, stable=True, sorted_hashes=stable.hashes, order=stable.order)
    assert lazy.find([str(ids[12345]), "missing"]).tolist() == [12345, -1]
