"""Per-item strings (ids, titles, timestamps, digests) as numpy string arrays, not Python objects.

A catalog of a million items holds a million ids: as a Python list, a dict or an object
array each one is a Python object (~60 bytes, plus a pointer, plus a hash-table slot). NumPy's
variable-width ``StringDType`` keeps them in one arena (short strings inline, 16 bytes each),
indexes to plain ``str`` and compares, sorts and searches vectorised. Parquet columns are
read in chunks, so no more than a chunk of Python strings ever exists at once.

:class:`RowOf` is the id -> row map over such an array: the ids sorted once, looked up by
binary search over their hashes (one id, or many at once), with the ``dict``-like ``get`` / ``in`` /
``[]`` of the dicts it replaces.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np
from numpy.dtypes import StringDType

CHUNK = 65536
STRINGS = StringDType()  # no missing values
OPTIONAL_STRINGS = StringDType(na_object=None)  # None = missing (a null in Parquet)


def strings(values, optional: bool = False) -> np.ndarray:
    """A StringDType array of ``values`` (an Arrow array or chunked array, a numpy array, a list)."""
    dtype = OPTIONAL_STRINGS if optional else STRINGS
    if hasattr(values, "combine_chunks"):  # pyarrow ChunkedArray
        values = values.combine_chunks()
    if hasattr(values, "to_pylist") and hasattr(values, "slice"):  # pyarrow Array: a chunk of Python strings at a time
        out = np.empty(len(values), dtype=dtype)
        for lo in range(0, len(values), CHUNK):
            # to_pylist, not to_numpy: a string array's to_numpy goes through pandas (a query
            # command would import it)
            out[lo:lo + CHUNK] = values.slice(lo, CHUNK).to_pylist()
        return out
    return np.asarray(values, dtype=dtype)


def missing(values: np.ndarray) -> np.ndarray:
    """bool [N]: where an OPTIONAL_STRINGS array holds None (a null)."""
    return np.asarray(values == None)  # noqa: E711 - elementwise: StringDType compares its NA object


def parquet_strings(path: str | Path, column: str, optional: bool = False) -> np.ndarray:
    """One string column of a Parquet file as a StringDType array (None for nulls if ``optional``)."""
    import pyarrow.parquet as pq

    # ParquetFile, not read_table: read_table goes through pyarrow.dataset, which imports pandas
    return strings(pq.ParquetFile(path).read(columns=[column]).column(column), optional)


class ParquetStringColumn:
    """One string column of a Parquet file, read a row group at a time as rows are asked for
    (``column[rows]`` -> StringDType array, ``column[row]`` -> str): a query that needs the
    ids of a few rows of a million-row store reads their row groups, not the column (0.3 s)."""

    def __init__(self, path: str | Path, column: str):
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path)
        self.column = column
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.groups: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _group(self, g: int) -> np.ndarray:
        if g not in self.groups:
            self.groups[g] = strings(self.file.read_row_group(g, columns=[self.column]).column(self.column))
        return self.groups[g]

    def __getitem__(self, rows):
        if isinstance(rows, (int, np.integer)):
            return str(self[np.array([rows])][0])
        rows = np.asarray(rows)
        if rows.dtype == bool:  # a mask would be read as rows 0 and 1
            raise TypeError("a ParquetStringColumn is indexed by row numbers, not a mask")
        rows = rows.astype(np.int64, copy=False)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range for a column of {len(self)}")
        out = np.empty(len(rows), dtype=STRINGS)
        group = np.searchsorted(self.starts, rows, side="right") - 1
        for g in np.unique(group).tolist():
            at = group == g
            out[at] = self._group(g)[rows[at] - self.starts[g]]
        return out


def arrow_strings(values: np.ndarray):
    """A pyarrow string array of a StringDType (or any string) array, converted in chunks."""
    import pyarrow as pa

    parts = [pa.array(values[lo:lo + CHUNK].tolist(), pa.string()) for lo in range(0, len(values), CHUNK)]
    return pa.chunked_array(parts, pa.string()) if parts else pa.chunked_array([], pa.string())


def string_hashes(values) -> np.ndarray:
    """int64 [N]: Python's hash of each string, a chunk of Python strings at a time (the hash
    is salted per process: only for maps that live in this process)."""
    values = np.asarray(values, dtype=STRINGS) if not isinstance(values, np.ndarray) else values
    out = np.empty(len(values), np.int64)
    for lo in range(0, len(values), CHUNK):
        out[lo:lo + CHUNK] = np.fromiter(map(hash, values[lo:lo + CHUNK].tolist()), np.int64)
    return out


def stable_string_hashes(values) -> np.ndarray:
    """int64 [N]: the first 8 bytes of each string's BLAKE2b digest, the same in every process
    (for maps written to disk; ~1 µs a string)."""
    values = np.asarray(values, dtype=STRINGS) if not isinstance(values, np.ndarray) else values
    out = np.empty(len(values), np.int64)
    for lo in range(0, len(values), CHUNK):
        out[lo:lo + CHUNK] = np.fromiter(
            (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little", signed=True)
             for s in values[lo:lo + CHUNK].tolist()), np.int64)
    return out


class RowOf:
    """id -> row over an array of distinct ids: their 64-bit hashes sorted once and binary-
    searched (numpy's searchsorted on StringDType is not reliable for longer strings, numpy
    2.4), every match checked against the id itself. Two arrays of N int64, no Python object
    per id.

    ``stable``: hashes that are the same in every process (:func:`stable_string_hashes`), so
    the two arrays can be written once and mapped by later processes (``sorted_hashes`` and
    ``order``, as :meth:`arrays` gives them): a query command then skips hashing every id."""

    def __init__(self, ids: np.ndarray, stable: bool = False, sorted_hashes: np.ndarray | None = None,
                 order: np.ndarray | None = None):
        # a ParquetStringColumn stays one: with precomputed hashes only the rows found are read
        keep = isinstance(ids, (np.ndarray, ParquetStringColumn))
        self.ids = ids if keep else np.asarray(ids, dtype=STRINGS)
        self.hash = stable_string_hashes if stable else string_hashes
        if sorted_hashes is not None and order is not None:
            if not stable or len(sorted_hashes) != len(self.ids) or len(order) != len(self.ids):
                raise ValueError(f"precomputed id hashes must be stable and one per id ({len(self.ids)})")
            self.hashes, self.order = sorted_hashes, order
            return
        hashes = self.hash(self.ids)
        self.order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[self.order]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted hashes, order): what a later process passes back (``stable`` maps only)."""
        return self.hashes, self.order

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, item_ids) -> np.ndarray:
        """int64 rows of ``item_ids`` (-1 where an id is not here)."""
        query = item_ids if isinstance(item_ids, np.ndarray) else np.asarray(list(item_ids), dtype=STRINGS)
        if not len(self.ids) or not len(query):
            return np.full(len(query), -1, np.int64)
        wanted = self.hash(query)
        at = np.minimum(np.searchsorted(self.hashes, wanted), len(self.hashes) - 1)
        rows = np.where(self.hashes[at] == wanted, self.order[at], -1)
        hit = rows >= 0
        hit[hit] = self.ids[rows[hit]] == np.asarray(query[hit], dtype=STRINGS)
        for n in np.flatnonzero(~hit & (self.hashes[at] == wanted)):  # another id with the same hash first
            run = np.arange(at[n], np.searchsorted(self.hashes, wanted[n], side="right"))
            same = self.order[run][self.ids[self.order[run]] == str(query[n])]
            hit[n], rows[n] = len(same) > 0, same[0] if len(same) else -1
        return np.where(hit, rows, -1).astype(np.int64)

    def get(self, item_id, default=None):
        if not isinstance(item_id, str):
            return default
        row = int(self.find(np.array([item_id], dtype=STRINGS))[0])
        return row if row >= 0 else default

    def __contains__(self, item_id) -> bool:
        return self.get(item_id) is not None

    def __getitem__(self, item_id) -> int:
        row = self.get(item_id)
        if row is None:
            raise KeyError(item_id)
        return row
