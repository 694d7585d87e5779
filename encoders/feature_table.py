"""One table of the feature cache: rows addressed by 16-byte content keys, checked on read.

Files of ``TABLE/``::

    data.npy       the rows (fixed shape [N, ...], or ragged: token rows [T, H])
    offsets.npy    ragged tables only: int64 [N+1], row i is data[offsets[i]:offsets[i+1]]
    keys.npy       uint8 [N, 16], the content key of each row (all zeros: a dropped row)
    manifest.json  the commit point, replaced last: how many rows are committed, their dtype
                   and shape, and two digests per block of BLOCK_ROWS rows (its keys and
                   offsets; its data bytes)
    damaged/       (sometimes) one file per block a reader found damaged, saying why

A table only ever grows: data rows are appended in place, offsets and keys are replaced,
the manifest last. A crash leaves the previous manifest, whose rows are a prefix of every
file; what lies past them is cut off by the next append.

Checks, from cheap to thorough:

- **at open** (:meth:`Table.inspect`): every file's header against the manifest, every
  file's size against the committed rows (a truncated file), and the keys/offsets digest of
  every block (24 bytes a row: 24 MB at a million rows);
- **data digests** per block: all of them when a writer asks (``for_build(verify="full")``,
  and ``auto`` for tables up to :data:`EAGER_VERIFY_BYTES`), otherwise lazily, once per
  process, on the first read of a block (:class:`TableReader`);
- **non-finite values** in every row read (a cheap ``isfinite`` of what was gathered), and
  nothing non-finite is ever written.

A damaged table is named (:class:`TableDamaged`, one line, exit 2). A writer repairs it
(:meth:`Table.repair`): the rows of a failing block are dropped (keys zeroed, so they are
missing and computed again), a truncated file cuts the table at the last whole block it
holds, an unreadable header or manifest drops the table. A reader cannot repair (it holds
row numbers); it leaves a note in ``damaged/`` so the next writer checks those blocks first.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from etl.atomic import partial_path, write_text

KEY_BYTES = 16
BLOCK_ROWS = 256  # rows per digest block: what a damaged spot costs to recompute
EAGER_VERIFY_BYTES = 4 << 30  # verify="auto": every data digest at open up to this table size
MANIFEST = "manifest.json"
TABLE_FORMAT = 1
DIGEST = "crc32"
_READ = 8 << 20  # bytes per read while digesting

# (table path, block, index digest, data digest) verified by this process
_VERIFIED: set[tuple[str, int, str, str]] = set()


class TableDamaged(RuntimeError):
    """A feature-cache table failed a check; the message names the file and what to do."""

    exit_code = 2  # the user's files, fixable by them (or by the next feature computation)


def _digest(chunks: Iterable[bytes | memoryview]) -> str:
    """CRC-32 (zlib), as Parquet's page checksums: it catches damage (any burst of up to 32
    bits, anything else but 1 in 4e9), not tampering, at 4-5x the speed of blake2b here."""
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


# -- .npy files, read defensively --------------------------------------------------------
@dataclass(frozen=True)
class NpyFile:
    path: Path
    shape: tuple
    dtype: np.dtype
    offset: int  # header bytes
    size: int  # file bytes

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))

    @property
    def rows_on_disk(self) -> int:
        """Whole rows the file holds (a truncated file holds fewer than its header says)."""
        if self.row_bytes == 0:
            return self.shape[0]
        return min(self.shape[0], max(self.size - self.offset, 0) // self.row_bytes)

    def map(self, rows: int) -> np.ndarray:
        """The first ``rows`` rows, memory-mapped (never past the end of the file)."""
        if rows > self.rows_on_disk:
            raise TableDamaged(f"{self.path}: holds {self.rows_on_disk} rows, the table needs {rows}")
        if rows == 0 or self.row_bytes == 0:
            return np.zeros((rows, *self.shape[1:]), self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=(rows, *self.shape[1:]))

    def read_bytes(self, lo_row: int, hi_row: int) -> Iterable[bytes]:
        """Rows [lo_row, hi_row) as raw bytes, in reads of a few MB (no mapping: the pages
        do not stay in this process's memory)."""
        start, end = self.offset + lo_row * self.row_bytes, self.offset + hi_row * self.row_bytes
        with open(self.path, "rb", buffering=0) as f:
            while start < end:
                chunk = os.pread(f.fileno(), min(_READ, end - start), start)
                if not chunk:
                    raise TableDamaged(f"{self.path}: ends before row {hi_row}")
                start += len(chunk)
                yield chunk


def read_npy(path: Path) -> NpyFile:
    """The header of a C-order .npy file; TableDamaged naming the file if it is not one."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
        size = path.stat().st_size
    except FileNotFoundError:
        raise TableDamaged(f"{path}: missing") from None
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise TableDamaged(f"{path}: not a readable .npy file ({exc})") from None
    if fortran or not shape:
        raise TableDamaged(f"{path}: not a C-order array of rows")
    return NpyFile(path, tuple(shape), np.dtype(dtype), offset, size)


def _replace_array(path: Path, array: np.ndarray) -> None:
    tmp = partial_path(path, "tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _append_in_place(path: Path, kept: int, rows: np.ndarray | None) -> bool:
    """Cut ``path`` (a C-order .npy) to its first ``kept`` rows, append ``rows`` and fix the
    header's row count; False (nothing written) when the file is not one rows can join or the
    new header would not fit where the old one is."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            return False
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0)(f)
        header_bytes = f.tell()
        if fortran or kept > shape[0] or (rows is not None and (rows.dtype != dtype or rows.shape[1:] != shape[1:])):
            return False
        count = kept + (len(rows) if rows is not None else 0)
        header = io.BytesIO()
        write = np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0
        write(header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (count, *shape[1:])})
        if len(header.getvalue()) != header_bytes:  # numpy leaves room for the row count to grow
            return False
        row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        f.truncate(header_bytes + kept * row_bytes)  # rows a crash left past the committed ones
        f.seek(header_bytes + kept * row_bytes)
        if rows is not None:
            f.write(np.ascontiguousarray(rows).tobytes())
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        f.write(header.getvalue())
    return True


# -- what a check found ------------------------------------------------------------------
@dataclass
class Damage:
    """What :meth:`Table.inspect` found: nothing, a table to drop, a cut, damaged blocks."""

    unusable: Optional[str] = None  # why the whole table cannot be read
    keep_rows: Optional[int] = None  # a file ends early: only these rows can be kept
    cut_reason: str = ""
    bad_blocks: dict[int, str] = field(default_factory=dict)  # block -> which file failed

    def __bool__(self) -> bool:
        return self.unusable is not None or self.keep_rows is not None or bool(self.bad_blocks)


@dataclass(frozen=True)
class Committed:
    """The committed state of a table (its manifest), with its files' headers."""

    manifest: dict
    keys: NpyFile
    data: NpyFile
    offsets: Optional[NpyFile]

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def data_rows(self) -> int:
        return int(self.manifest["data_rows"])

    @property
    def blocks(self) -> list[list[str]]:
        return self.manifest["blocks"]


class Table:
    """A table of the feature cache (see the module docstring). Writers hold the cache's lock."""

    def __init__(self, path: Path, ragged: bool = False):
        self.path, self.ragged = Path(path), ragged
        self._committed: Optional[Committed] = None
        self._lookup: Optional[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = None

    # -- reading the committed state -----------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def committed(self) -> Optional[Committed]:
        """The manifest and file headers (None: no table); TableDamaged when unreadable."""
        if self._committed is None:
            self._committed = self._read_committed()
        return self._committed

    def _read_committed(self) -> Optional[Committed]:
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            if self.path.is_dir() and any(p.suffix == ".npy" for p in self.path.iterdir()):
                raise TableDamaged(f"{manifest_path}: missing beside the table's files (an interrupted first write, or damage)")
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            rows, data_rows, blocks = int(manifest["rows"]), int(manifest["data_rows"]), manifest["blocks"]
            if manifest.get("format") != TABLE_FORMAT or manifest.get("digest") != DIGEST:
                raise ValueError(f"format {manifest.get('format')}/{manifest.get('digest')}")
            if bool(manifest["ragged"]) != self.ragged or int(manifest["block_rows"]) != BLOCK_ROWS:
                raise ValueError("another table layout")
            if len(blocks) != -(-rows // BLOCK_ROWS) or rows < 0 or data_rows < 0:
                raise ValueError(f"{len(blocks)} block digests for {rows} rows")
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise TableDamaged(f"{manifest_path}: unreadable ({exc})") from None
        keys = read_npy(self.path / "keys.npy")
        if keys.dtype != np.uint8 or keys.shape[1:] != (KEY_BYTES,):
            raise TableDamaged(f"{keys.path}: holds {keys.dtype} {keys.shape}, not uint8 [N, {KEY_BYTES}] keys")
        data = read_npy(self.path / "data.npy")
        if str(data.dtype) != manifest["dtype"] or list(data.shape[1:]) != list(manifest["row_shape"]):
            raise TableDamaged(f"{data.path}: holds {data.dtype} rows of {list(data.shape[1:])}, the manifest says "
                               f"{manifest['dtype']} {manifest['row_shape']}")
        offsets = read_npy(self.path / "offsets.npy") if self.ragged else None
        if offsets is not None and (offsets.dtype != np.int64 or len(offsets.shape) != 1):
            raise TableDamaged(f"{offsets.path}: holds {offsets.dtype} {offsets.shape}, not int64 offsets")
        return Committed(manifest, keys, data, offsets)

    @property
    def rows(self) -> int:
        committed = self.committed()
        return committed.rows if committed else 0

    def keys(self) -> np.ndarray:
        """uint8 [N, 16] keys of the committed rows (zeros: a dropped row)."""
        committed = self.committed()
        return committed.keys.map(committed.rows) if committed else np.zeros((0, KEY_BYTES), np.uint8)

    def offsets(self) -> np.ndarray:
        committed = self.committed()
        return committed.offsets.map(committed.rows + 1) if committed else np.zeros(1, np.int64)

    def array(self, name: str) -> np.ndarray:
        """``data`` (the committed data rows) or ``offsets``, memory-mapped."""
        committed = self.committed()
        if name == "offsets":
            return self.offsets()
        return committed.data.map(committed.data_rows)

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """int64 row of each key (uint8 [m, 16]), -1 where the table has none. Sorted key
        prefixes and a binary search: no per-key Python object, whatever the table's size."""
        keys = np.ascontiguousarray(np.asarray(keys, np.uint8).reshape(-1, KEY_BYTES))
        out = np.full(len(keys), -1, np.int64)
        if not len(keys) or not self.rows:
            return out
        stored, order, sorted_prefix = self._sorted_keys()
        query = keys.view(">u8")  # [m, 2] big-endian halves: numeric order == byte order
        at = np.minimum(np.searchsorted(sorted_prefix, query[:, 0]), len(sorted_prefix) - 1)
        row = order[at]
        hit = (sorted_prefix[at] == query[:, 0]) & (stored[row] == keys).all(1) & keys.any(1)
        out[hit] = row[hit]
        # two stored keys sharing their first 8 bytes (p ~ n^2 / 2^65): look along the run
        for i in np.flatnonzero(~hit & (sorted_prefix[at] == query[:, 0]) & keys.any(1)):
            j = at[i]
            while j < len(sorted_prefix) and sorted_prefix[j] == query[i, 0]:
                if (stored[order[j]] == keys[i]).all():
                    out[i] = order[j]
                    break
                j += 1
        return out

    def _sorted_keys(self):
        rows = self.rows
        if self._lookup is None or self._lookup[0] != rows:
            stored = np.ascontiguousarray(self.keys())
            prefix = stored.view(">u8")[:, 0]
            order = np.argsort(prefix, kind="stable")
            self._lookup = (rows, stored, order, prefix[order])
        return self._lookup[1:]

    # -- digests -------------------------------------------------------------------------
    def _block_range(self, committed: Committed, block: int) -> tuple[int, int]:
        return block * BLOCK_ROWS, min((block + 1) * BLOCK_ROWS, committed.rows)

    def _index_digest(self, keys: np.ndarray, offsets: Optional[np.ndarray], lo: int, hi: int) -> str:
        parts = [np.ascontiguousarray(keys[lo:hi]).tobytes()]
        if offsets is not None:
            parts.append(np.ascontiguousarray(offsets[lo:hi + 1]).tobytes())
        return _digest(parts)

    def _data_digest(self, data: NpyFile, offsets: Optional[np.ndarray], lo: int, hi: int) -> str:
        d_lo, d_hi = (int(offsets[lo]), int(offsets[hi])) if offsets is not None else (lo, hi)
        return _digest(data.read_bytes(d_lo, d_hi))

    def data_bytes(self) -> int:
        committed = self.committed()
        return committed.data_rows * committed.data.row_bytes if committed else 0

    # -- checks --------------------------------------------------------------------------
    def inspect(self, data_blocks: str | Iterable[int] = "none") -> Damage:
        """Check the table (module docstring); ``data_blocks``: "all", "none" or which
        blocks' data digests to check (those this process verified are not read again)."""
        try:
            committed = self.committed()
        except TableDamaged as exc:
            return Damage(unusable=str(exc))
        if committed is None:
            return Damage()
        n, damage = committed.rows, Damage()
        keep, why = n, ""
        if committed.keys.rows_on_disk < n:
            keep, why = committed.keys.rows_on_disk, f"{committed.keys.path} holds {committed.keys.rows_on_disk} of {n} keys"
        if committed.offsets is not None and committed.offsets.rows_on_disk - 1 < keep:
            keep, why = max(committed.offsets.rows_on_disk - 1, 0), f"{committed.offsets.path} ends early"
        keys = committed.keys.map(min(keep, n))
        offsets = committed.offsets.map(min(keep, n) + 1) if committed.offsets is not None else None
        last_block = -(-keep // BLOCK_ROWS)
        for block in range(last_block):
            lo, hi = self._block_range(committed, block)
            if hi > keep:
                break
            if self._index_digest(keys, offsets, lo, hi) != committed.blocks[block][0]:
                damage.bad_blocks[block] = self._why(self._index_files, lo, hi)
        data_rows_on_disk = committed.data.rows_on_disk
        for block in range(last_block):  # data past the end of a truncated data.npy
            lo, hi = self._block_range(committed, block)
            if hi > keep or block in damage.bad_blocks:
                continue
            end = int(offsets[hi]) if offsets is not None else hi
            if end > data_rows_on_disk or (offsets is not None and int(offsets[lo]) > end):
                keep, why = lo, f"{committed.data.path} holds {data_rows_on_disk} of {committed.data_rows} rows"
                break
        if keep < n:
            damage.keep_rows, damage.cut_reason = (keep // BLOCK_ROWS) * BLOCK_ROWS, why
        wanted = range(-(-(damage.keep_rows if damage.keep_rows is not None else n) // BLOCK_ROWS)) \
            if data_blocks == "all" else [] if data_blocks == "none" else data_blocks
        wanted = [b for b in wanted if b not in damage.bad_blocks]
        damage.bad_blocks.update(self.verify_blocks(wanted, index=False))
        if damage.keep_rows is not None:
            damage.bad_blocks = {b: f for b, f in damage.bad_blocks.items() if b * BLOCK_ROWS < damage.keep_rows}
        return damage

    def verify_blocks(self, blocks: Iterable[int], index: bool = True) -> dict[int, str]:
        """Check the data digests (and with ``index`` the keys/offsets digests) of ``blocks``
        not verified by this process yet; the failing blocks, each with the file to blame."""
        committed = self.committed()
        bad: dict[int, str] = {}
        blocks = sorted(set(int(b) for b in blocks))
        for block in blocks:
            if block >= len(committed.blocks):
                bad[block] = f"{self.path / MANIFEST}: block {block} is past the table's {committed.rows} rows"
        todo = [b for b in blocks if b not in bad and (str(self.path), b, *committed.blocks[b]) not in _VERIFIED]
        if not todo:
            return bad
        end = self._block_range(committed, todo[-1])[1]  # map no further than needed: a file may end early
        keys = committed.keys.map(end) if index else None
        offsets = committed.offsets.map(end + 1) if committed.offsets is not None else None
        for block in todo:
            memo = (str(self.path), block, *committed.blocks[block])
            lo, hi = self._block_range(committed, block)
            if index and self._index_digest(keys, offsets, lo, hi) != committed.blocks[block][0]:
                bad[block] = self._why(self._index_files, lo, hi)
            elif self._data_digest(committed.data, offsets, lo, hi) != committed.blocks[block][1]:
                bad[block] = self._why(str(committed.data.path), lo, hi)
            else:
                _VERIFIED.add(memo)
        return bad

    @property
    def _index_files(self) -> str:
        return f"{self.path / 'keys.npy'}{' or offsets.npy' if self.ragged else ''}"

    @staticmethod
    def _why(what: str, lo: int, hi: int, how: str = "fail their digest (damaged on disk)") -> str:
        return f"{what}: rows {lo}-{hi - 1} {how}"

    def noted(self) -> dict[int, str]:
        """Blocks a reader found damaged (its notes in ``damaged/``), each with why: they are
        dropped whatever their digests say (a NaN row can have a matching digest)."""
        committed = self.committed() if self.exists else None
        out = {}
        for block in self.noted_damage():
            if committed is not None and block < len(committed.blocks):
                lo, hi = self._block_range(committed, block)
                try:
                    said = (self.path / "damaged" / str(block)).read_text().strip()
                except OSError:
                    said = ""
                out[block] = (said + " (found when read)") if said else self._why(str(self.path), lo, hi, "were found damaged when read")
        return out

    def noted_damage(self) -> list[int]:
        """Blocks readers found damaged (notes in ``damaged/``)."""
        notes = self.path / "damaged"
        return sorted(int(p.name) for p in notes.iterdir() if p.name.isdigit()) if notes.is_dir() else []

    def repair(self, damage: Damage, log: Callable[[str], None]) -> int:
        """Drop what ``damage`` names (module docstring); the rows dropped (-1: the whole table)."""
        shutil.rmtree(self.path / "damaged", ignore_errors=True)
        if not damage:
            return 0
        if damage.unusable is not None:
            log(f"{damage.unusable}: the table {self.path} is dropped and computed again")
            aside = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(self.path, aside)
            shutil.rmtree(aside, ignore_errors=True)
            self._reset()
            return -1
        committed = self.committed()
        n = damage.keep_rows if damage.keep_rows is not None else committed.rows
        keys = np.array(committed.keys.map(n))  # a copy: rows of damaged blocks are zeroed
        offsets = np.array(committed.offsets.map(n + 1)) if committed.offsets is not None else None
        dropped = committed.rows - n
        for block, why in sorted(damage.bad_blocks.items()):
            lo, hi = block * BLOCK_ROWS, min((block + 1) * BLOCK_ROWS, n)
            keys[lo:hi] = 0
            dropped += hi - lo
            log(f"{why}: dropped, computed again")
        if damage.keep_rows is not None:
            log(f"{damage.cut_reason}: rows {n}-{committed.rows - 1} dropped, computed again")
        data_rows = int(offsets[n]) if offsets is not None else n
        if data_rows < committed.data_rows and not _append_in_place(committed.data.path, data_rows, None):
            raise TableDamaged(f"{committed.data.path}: cannot be cut to its {data_rows} whole rows; delete {self.path}")
        if offsets is not None:
            _replace_array(self.path / "offsets.npy", offsets)
        _replace_array(self.path / "keys.npy", keys)
        blocks = [list(b) for b in committed.blocks[: -(-n // BLOCK_ROWS)]]
        self._reset()
        data = read_npy(self.path / "data.npy")
        for block in damage.bad_blocks:  # the zeroed rows' digests, over what is there now
            lo, hi = block * BLOCK_ROWS, min((block + 1) * BLOCK_ROWS, n)
            blocks[block] = [self._index_digest(keys, offsets, lo, hi), self._data_digest(data, offsets, lo, hi)]
        write_text(self.path / MANIFEST, json.dumps({**committed.manifest, "rows": n, "data_rows": data_rows, "blocks": blocks}))
        self._reset()
        return dropped

    def _reset(self) -> None:
        self._committed, self._lookup = None, None

    # -- writing -------------------------------------------------------------------------
    def append(self, keys: np.ndarray, rows) -> None:
        """Add rows (``rows``: an array [m, ...], or for a ragged table a list of [L_i, H]
        arrays) under ``keys`` (uint8 [m, 16]). Data first, then offsets and keys, the
        manifest last; the rows become visible with it."""
        new_keys = np.ascontiguousarray(np.asarray(keys, np.uint8).reshape(-1, KEY_BYTES))
        if self.ragged:
            lengths = np.fromiter((len(r) for r in rows), np.int64, count=len(rows))
            parts = [np.asarray(r) for r in rows if len(r)]
            data = np.concatenate(parts) if parts else None
        else:
            data = np.asarray(rows)
            lengths = None
        if len(new_keys) != len(rows):
            raise ValueError(f"{len(new_keys)} keys for {len(rows)} rows")
        if data is not None and not np.isfinite(data).all():
            raise ValueError(f"{self.path}: refusing to store non-finite features (the encoder gave NaN or inf)")
        committed = self.committed()
        if committed is None:
            self._write_first(new_keys, data, lengths)
        else:
            self._write_more(committed, new_keys, data, lengths)
        self._reset()

    def _write_first(self, keys: np.ndarray, data: Optional[np.ndarray], lengths: Optional[np.ndarray]) -> None:
        if self.path.exists():  # an interrupted first write: nothing committed
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        if data is None:
            raise ValueError(f"{self.path}: a first write without rows")
        np.save(self.path / "data.npy", np.ascontiguousarray(data))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64) if self.ragged else None
        if offsets is not None:
            np.save(self.path / "offsets.npy", offsets)
        np.save(self.path / "keys.npy", keys)
        manifest = {"format": TABLE_FORMAT, "digest": DIGEST, "ragged": self.ragged, "block_rows": BLOCK_ROWS,
                    "dtype": str(data.dtype), "row_shape": list(data.shape[1:]), "rows": 0, "data_rows": 0, "blocks": []}
        self._commit(manifest, keys, offsets, 0)

    def _write_more(self, committed: Committed, new_keys: np.ndarray, data, lengths) -> None:
        n, d = committed.rows, committed.data_rows
        if n % BLOCK_ROWS:  # the last block's digest is extended: check what it covers first
            last = n // BLOCK_ROWS
            damage = self.inspect([last])
            if damage:
                raise TableDamaged(f"{self.path}: rows {last * BLOCK_ROWS}-{n - 1} fail their digest; the next "
                                   "feature computation drops them")
        if data is not None and (str(data.dtype) != committed.manifest["dtype"]
                                 or list(data.shape[1:]) != committed.manifest["row_shape"]):
            raise ValueError(f"{self.path}: rows of {data.dtype} {list(data.shape[1:])} do not join "
                             f"{committed.manifest['dtype']} {committed.manifest['row_shape']}")
        path = self.path / "data.npy"
        if not _append_in_place(path, d, data):  # the header has no room: rewrite the file
            old = committed.data.map(d)
            _replace_array(path, np.concatenate([old, data]) if data is not None else np.array(old))
        offsets = None
        if self.ragged:
            offsets = np.concatenate([committed.offsets.map(n + 1), d + np.cumsum(lengths)]).astype(np.int64)
            _replace_array(self.path / "offsets.npy", offsets)
        keys = np.concatenate([committed.keys.map(n), new_keys])
        _replace_array(self.path / "keys.npy", keys)
        self._commit(committed.manifest, keys, offsets, n)

    def _commit(self, manifest: dict, keys: np.ndarray, offsets: Optional[np.ndarray], old_rows: int) -> None:
        """Digest the blocks from the one holding row ``old_rows`` on (read back from disk)
        and replace the manifest: the commit."""
        rows = len(keys)
        data_rows = int(offsets[-1]) if offsets is not None else rows
        data = read_npy(self.path / "data.npy")
        blocks = [list(b) for b in manifest["blocks"][: old_rows // BLOCK_ROWS]]
        for block in range(old_rows // BLOCK_ROWS, -(-rows // BLOCK_ROWS)):
            lo, hi = block * BLOCK_ROWS, min((block + 1) * BLOCK_ROWS, rows)
            blocks.append([self._index_digest(keys, offsets, lo, hi), self._data_digest(data, offsets, lo, hi)])
            _VERIFIED.add((str(self.path), block, *blocks[-1]))
        write_text(self.path / MANIFEST, json.dumps({**manifest, "rows": rows, "data_rows": data_rows, "blocks": blocks}))


# -- reading rows, checked ---------------------------------------------------------------
class TableReader:
    """Rows of a table for the data pipeline: every block is verified the first time this
    process reads it (unless the process that made the view already did), and every row
    read is checked for non-finite values. Damage raises :class:`TableDamaged` and leaves a
    note for the next writer."""

    def __init__(self, path: Path, ragged: bool, verified: Iterable[int] = ()):
        self.table = Table(path, ragged)
        try:
            committed = self.table.committed()
            if committed is None:
                raise TableDamaged(f"{path}: the feature table is gone")
            self.data = committed.data.map(committed.data_rows)
            self.offsets = np.asarray(committed.offsets.map(committed.rows + 1)) if ragged else None
        except TableDamaged as exc:
            raise TableDamaged(f"{exc}; the next feature computation repairs it: run the command again") from None
        self.committed = committed
        self.verified = set(verified)

    def check(self, rows: np.ndarray) -> None:
        """Verify the blocks of ``rows`` not verified yet in this process."""
        blocks = np.unique(np.asarray(rows, np.int64) // BLOCK_ROWS)
        todo = [int(b) for b in blocks if int(b) not in self.verified]
        if not todo:
            return
        if max(todo) >= len(self.committed.blocks):
            raise TableDamaged(f"{self.table.path}: row {max(todo) * BLOCK_ROWS} past the table's "
                               f"{self.committed.rows} rows; run the command again")
        try:
            failed = self.table.verify_blocks(todo)
        except TableDamaged as exc:
            self.note(todo[0], str(exc))
            raise
        bad = sorted(failed)
        if bad:
            for block in bad:
                self.note(block, failed[block])
            raise TableDamaged(f"{failed[bad[0]]}; the next feature computation drops and computes them again: "
                               "run the command again")
        self.verified.update(todo)

    def finite(self, values: np.ndarray, rows: np.ndarray, per_row: Optional[np.ndarray] = None) -> np.ndarray:
        """``values`` if all finite, else TableDamaged naming the first row that is not."""
        if np.isfinite(values).all():
            return values
        flat = values.reshape(len(values), -1) if per_row is None else values
        bad_at = int(np.flatnonzero(~np.isfinite(flat).all(1))[0])
        row = int(rows[bad_at] if per_row is None else per_row[bad_at])
        why = f"{self.committed.data.path}: row {row} holds NaN or inf"
        self.note(row // BLOCK_ROWS, why)
        raise TableDamaged(f"{why}; the next feature computation "
                           "drops and computes it again: run the command again")

    def note(self, block: int, why: str) -> None:
        try:
            (self.table.path / "damaged").mkdir(exist_ok=True)
            (self.table.path / "damaged" / str(block)).write_text(why + "\n")
        except OSError:  # a read-only cache: the message still says what is wrong
            pass

    def fixed_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of a fixed-shape table, as an array (gathered, checked)."""
        rows = np.asarray(rows, np.int64)
        self.check(rows)
        return self.finite(np.asarray(self.data[rows]), rows)

    def ragged_row(self, row: int) -> np.ndarray:
        self.check(np.array([row]))
        values = np.asarray(self.data[self.offsets[row]: self.offsets[row + 1]])
        return self.finite(values[None], np.array([row]))[0] if len(values) else values

    def ragged_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the token rows of ``rows`` concatenated, their lengths), gathered in one go."""
        rows = np.asarray(rows, np.int64)
        self.check(rows)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        index = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))
        values = np.asarray(self.data[index])
        return self.finite(values, rows, per_row=np.repeat(rows, lengths)), lengths

