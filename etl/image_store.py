"""Writing ``images.npy`` in place: the .npy header is reserved up front and filled in last
(it holds the row count), and each batch of decoded rows is written straight to its offset,
by this process or by a decoding worker. Memory stays flat whatever the catalog size, and
decoded pixels never travel between processes. Rows never written (items without an image)
read back as zeros.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from etl.images import ImageLimits, decode_batch

HEADER_BYTES = 128  # magic + version + length + padded dict; a multiple of 64 keeps rows aligned


def row_bytes(size: int) -> int:
    return size * size * 3


class ImageStoreWriter:
    def __init__(self, path: Path, size: int):
        self.path = path
        self.size = size
        with path.open("wb") as f:
            f.write(b"\0" * HEADER_BYTES)

    def write_rows(self, start: int, pixels: np.ndarray) -> None:
        write_rows(self.path, self.size, start, pixels)

    def finish(self, rows: int) -> None:
        """Set the length to exactly ``rows`` rows and write the header."""
        header = repr({"descr": "|u1", "fortran_order": False, "shape": (rows, self.size, self.size, 3)})
        prefix = b"\x93NUMPY\x01\x00"
        body_len = HEADER_BYTES - len(prefix) - 2
        body = header.encode("latin1").ljust(body_len - 1) + b"\n"
        if len(body) != body_len:
            raise ValueError(f"image store header does not fit in {HEADER_BYTES} bytes: {header}")
        with self.path.open("r+b") as f:
            f.truncate(HEADER_BYTES + rows * row_bytes(self.size))
            f.write(prefix + body_len.to_bytes(2, "little") + body)


def write_rows(path: Path, size: int, start: int, pixels: np.ndarray) -> None:
    if pixels.dtype != np.uint8 or pixels.shape[1:] != (size, size, 3):
        raise ValueError(f"expected uint8 [n, {size}, {size}, 3], got {pixels.dtype} {pixels.shape}")
    fd = os.open(path, os.O_WRONLY)
    try:
        data = memoryview(np.ascontiguousarray(pixels)).cast("B")
        offset = HEADER_BYTES + start * row_bytes(size)
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written
    finally:
        os.close(fd)


# an earlier build's images, memory-mapped once per process; keyed by inode too, as an update
# puts a new file at the same path
_PREVIOUS: dict[tuple, np.ndarray] = {}


def decode_into_store(job: tuple) -> tuple[np.ndarray, list[str | None]]:
    """Read and decode a batch of located images (None = no image) into rows ``start...`` of
    the store; returns decode_batch's status and digest per row. Top-level so a process pool
    can run it.

    ``job`` is ``(store path, size, start, sources, limits, reuse, previous store path)``;
    ``reuse`` and the previous path may be None (see :func:`etl.images.decode_batch`)."""
    path, size, start, sources, limits, reuse, previous_path = job
    previous = None
    if previous_path is not None:
        stat = os.stat(previous_path)
        key = (str(previous_path), stat.st_ino, stat.st_mtime_ns)
        if key not in _PREVIOUS:
            _PREVIOUS.clear()
            _PREVIOUS[key] = np.load(previous_path, mmap_mode="r")
        previous = _PREVIOUS[key]
    pixels, status, digests = decode_batch(sources, size, limits, reuse, previous)
    write_rows(path, size, start, pixels)
    return status, digests
