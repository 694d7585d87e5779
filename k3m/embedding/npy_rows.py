"""Rows of a 2-D ``.npy`` file read and written with positioned file I/O, not a memory map.

A memory map of a large matrix is the right way to fetch a few rows (a query), but a pass
over all of it (writing a store, checking it, sending it to the graph, building an index)
leaves every page it touched mapped into the process: its resident size grows to the
file's, though the pages are the kernel's page cache. :class:`NpyRows` reads and writes row
ranges with ``pread``/``pwrite`` (``np.fromfile`` at an offset, ``os.pwrite``), so such a pass
holds one chunk, whatever the file's size. Sorted rows are read and written as runs of
consecutive rows.
"""
from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Iterator

import numpy as np


class NpyRows:
    def __init__(self, path: str | Path, writable: bool = False):
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"{path}: .npy format {version} is not read here")
            shape, fortran, dtype = read_header[version](handle)
            self.offset = handle.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{self.path}: a C-ordered 2-D array was expected, found shape {shape}")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        self.fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        # a reader kept by a long-lived object (an index's rescoring rows) closes with it
        self._closer = weakref.finalize(self, os.close, self.fd)

    @classmethod
    def create(cls, path: str | Path, shape: tuple[int, int], dtype) -> "NpyRows":
        """A new file of ``shape`` (zeros: a sparse file until written)."""
        dtype = np.dtype(dtype)
        with open(path, "wb") as handle:
            np.lib.format.write_array_header_2_0(handle, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                           "fortran_order": False, "shape": tuple(shape)})
            handle.truncate(handle.tell() + int(shape[0]) * int(shape[1]) * dtype.itemsize)
        return cls(path, writable=True)

    def close(self) -> None:
        if self.fd is not None:
            self._closer()
            self.fd = None

    def __enter__(self) -> "NpyRows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        """``rows[a:b]`` (a range) or ``rows[array]`` (a gather), read from the file: the
        indexing a pass needs, so a reader stands where an array or a memory map did."""
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self.take(np.arange(start, stop, step))
            return self.read(start, stop)
        if isinstance(key, (int, np.integer)):
            return self.read(int(key), int(key) + 1)[0]
        return self.take(np.asarray(key))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (a new array)."""
        stop = min(stop, self.shape[0])
        count = max(stop - start, 0)
        out = np.empty((count, self.shape[1]), self.dtype)
        if count:
            view = memoryview(out).cast("B")
            done = 0
            while done < len(view):  # pread may return fewer bytes than asked
                got = os.preadv(self.fd, [view[done:]], self.offset + start * self.row_bytes + done)
                if got <= 0:
                    raise OSError(f"{self.path}: ends before row {stop}")
                done += got
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any order), read as runs of consecutive rows."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.shape[1]), self.dtype)
        order = np.argsort(rows, kind="stable")
        for lo, hi in _runs(rows[order]):
            out[order[lo:hi]] = self.read(int(rows[order[lo]]), int(rows[order[hi - 1]]) + 1)[rows[order[lo:hi]] - rows[order[lo]]]
        return out

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Rows ``rows`` (distinct) hold ``values`` (cast to the file's dtype)."""
        rows = np.asarray(rows, np.int64)
        values = np.ascontiguousarray(values, dtype=self.dtype)
        order = np.argsort(rows, kind="stable")
        for lo, hi in _runs(rows[order], consecutive=True):
            data = np.ascontiguousarray(values[order[lo:hi]]).tobytes()
            position, done = self.offset + int(rows[order[lo]]) * self.row_bytes, 0
            while done < len(data):
                done += os.pwrite(self.fd, data[done:], position + done)

    def chunks(self, size: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
        """(start, rows start:start+size) over the whole file."""
        for start in range(0, self.shape[0], size):
            yield start, self.read(start, start + size)


def _runs(sorted_rows: np.ndarray, consecutive: bool = False, gap: int = 8, span: int = 4096) -> list[tuple[int, int]]:
    """[lo, hi) positions of runs in sorted rows: consecutive rows (``consecutive``), or rows at
    most ``gap`` apart (read together, the rows between skipped); no run spans more than
    ``span`` rows (what one read holds)."""
    if not len(sorted_rows):
        return []
    step = np.diff(sorted_rows)
    breaks = np.flatnonzero(step != 1 if consecutive else step > gap) + 1
    edges = np.concatenate([[0], breaks, [len(sorted_rows)]]).tolist()
    runs = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        while lo < hi:
            end = min(hi, lo + int(np.searchsorted(sorted_rows[lo:hi], sorted_rows[lo] + span)))
            runs.append((lo, end))
            lo = end
    return runs
