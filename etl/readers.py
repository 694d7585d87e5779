"""Streaming catalog readers: K3M-style TSV, CSV, JSON Lines (each optionally gzip) and Parquet.

Every reader yields one :class:`SourceRow` per row, in file order, holding either a record
(a dict, possibly nested) or the reason it could not be read; nothing is skipped silently
(blank lines are the one exception, and they are counted). Only one row, or one Parquet
batch, is held at a time.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from etl.errors import UserError
from etl.mapping import Mapping

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# byte-order marks of text that is not UTF-8 (Excel's "Unicode text" is UTF-16LE): such a file
# is read as the UTF-8 of its text; the longer marks first (UTF-32LE starts like UTF-16LE)
OTHER_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
              (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
PARQUET_BATCH_ROWS = 4096
EXTENSION_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class SourceError(UserError, RuntimeError):
    """A whole source file cannot be read (missing, wrong format, truncated archive)."""


@dataclass
class SourceRow:
    source: str
    line: int  # 1-based physical line where the row starts (row number for Parquet)
    record: dict[str, Any] | None = None
    reason: str | None = None  # why the row could not be read (record is None then)
    detail: str | None = None
    raw: bytes | None = None  # the row's bytes as read, for the rejects report
    # a rejected row's fields read leniently (bad bytes as U+FFFD), only to tell whose row it
    # was: an update names the items its rejects would remove (never imported from)
    salvaged: dict[str, Any] | None = None

    def raw_text(self) -> str:
        if self.raw is not None:
            return self.raw.decode("utf-8", errors="backslashreplace")
        if self.record is not None:
            return json.dumps(self.record, ensure_ascii=False, default=str)
        return ""  # a CSV row the parser could not delimit


def source_format(path: Path, mapping: Mapping) -> str:
    if mapping.format:
        return mapping.format
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = EXTENSION_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise SourceError(f"{path}: cannot tell the format from the extension; set `format:` in the mapping")
    return fmt


def read_rows(path: str | Path, mapping: Mapping, counts: Counter) -> Iterator[SourceRow]:
    """Rows of one source file. ``counts['blank_lines']`` counts skipped empty lines.

    The header (or Parquet schema) is checked against the fields the mapping reads before
    the first row is yielded (:meth:`Mapping.check_columns`).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    fmt = source_format(path, mapping)
    if fmt == "parquet":
        yield from _parquet_rows(path, mapping)
        return
    with _open_binary(path) as stream:
        try:
            stream = _as_utf8(stream)
            if fmt == "jsonl":
                yield from _jsonl_rows(stream, str(path), counts)
            else:
                delimiter = mapping.delimiter or ("\t" if fmt == "tsv" else ",")
                rows = _tsv_rows if fmt == "tsv" else _csv_rows
                yield from rows(stream, str(path), delimiter, mapping, counts)
        except (EOFError, gzip.BadGzipFile, OSError) as exc:
            raise SourceError(f"{path}: the file is corrupt or truncated: {exc}") from None
        except _BadText as exc:
            raise SourceError(f"{path}: starts with a {exc.encoding.upper()} byte-order mark but is not valid "
                              f"{exc.encoding.upper()} text ({exc.error.reason} at byte {exc.error.start})") from None


def _open_binary(path: Path) -> BinaryIO:
    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else path.open("rb")


def _as_utf8(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself, or, for a file with a UTF-16/32 byte-order mark, the UTF-8 bytes of
    its text: every reader works on UTF-8 bytes and reports bytes that are not UTF-8 per row."""
    head = stream.peek(4)[:4]
    encoding = next((name for bom, name in OTHER_BOMS if head.startswith(bom)), None)
    if encoding is None:
        return stream
    return io.BufferedReader(_Recoded(stream, encoding))


class _BadText(Exception):
    def __init__(self, encoding: str, error: UnicodeDecodeError):
        self.encoding, self.error = encoding, error


class _Recoded(io.RawIOBase):
    """A UTF-16/32 text stream read as UTF-8 bytes (its byte-order mark consumed). Lone
    surrogates pass through as bytes that are not UTF-8, so their rows are rejected
    (``invalid_utf8``) like any other undecodable row."""

    def __init__(self, binary: BinaryIO, encoding: str):
        self.encoding = encoding
        self.text = io.TextIOWrapper(binary, encoding=encoding, errors="surrogatepass", newline="")
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            try:
                chunk = self.text.read(1 << 16)
            except UnicodeDecodeError as exc:  # e.g. a file cut in the middle of a character
                raise _BadText(self.encoding, exc) from None
            if not chunk:
                return 0
            self.pending = chunk.encode("utf-8", errors="surrogatepass")
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def _lines(stream: BinaryIO, counts: Counter) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, 1):
        if number == 1 and line.startswith(UTF8_BOM):  # editors on Windows write one
            line = line[len(UTF8_BOM):]
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield number, line
        else:
            counts["blank_lines"] += 1


def _jsonl_rows(stream: BinaryIO, source: str, counts: Counter) -> Iterator[SourceRow]:
    for number, line in _lines(stream, counts):
        try:
            record = json.loads(line)
        except UnicodeDecodeError as exc:
            yield SourceRow(source, number, reason="invalid_utf8", detail=str(exc), raw=line,
                            salvaged=_lenient_json(line))
            continue
        except ValueError as exc:
            yield SourceRow(source, number, reason="unparseable", detail=f"not JSON: {exc}", raw=line)
            continue
        if not isinstance(record, dict):
            yield SourceRow(source, number, reason="unparseable", detail=f"a JSON {type(record).__name__}, not an object", raw=line)
            continue
        yield SourceRow(source, number, record=record, raw=line)


def _tsv_rows(stream, source, delimiter, mapping, counts) -> Iterator[SourceRow]:
    """Delimiter-separated without quoting (the K3M format): a field never contains the delimiter."""
    header = mapping.columns
    for number, line in _lines(stream, counts):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            if header is None:
                raise _header_not_utf8(source, number, line) from None
            yield SourceRow(source, number, reason="invalid_utf8", detail=str(exc), raw=line,
                            salvaged=_fields_of(header, line.decode("utf-8", errors="replace").split(delimiter)))
            continue
        fields = text.split(delimiter)
        if header is None:
            header = _check_header(fields, source, mapping)
            continue
        if len(fields) != len(header):
            yield SourceRow(source, number, reason="wrong_field_count",
                            detail=f"expected {len(header)} fields, got {len(fields)}", raw=line)
            continue
        yield SourceRow(source, number, record=dict(zip(header, fields)), raw=line)


class _PhysicalLines:
    """The text lines fed to ``csv.reader``, remembered until :meth:`take`, so every record
    (and every record the parser fails on) comes with its line numbers and raw text."""

    def __init__(self, text: io.TextIOBase):
        self.text = text
        self.number = 0  # lines read so far
        self.pending: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.text.readline()
        if not line:
            raise StopIteration
        if self.number == 0 and line.startswith("\ufeff"):  # a UTF-8 byte-order mark
            line = line[1:]
        self.number += 1
        self.pending.append(line)
        return line

    def take(self) -> tuple[int, list[str]]:
        """(number of the first pending line, the pending lines); clears them."""
        lines, self.pending = self.pending, []
        return self.number - len(lines) + 1, lines


def _csv_rows(stream, source, delimiter, mapping, counts) -> Iterator[SourceRow]:
    """RFC 4180 CSV: quoted fields may hold delimiters and line breaks.

    A stray quote must not swallow the rows after it silently:

    * the parser runs strict: a quote that opens a field must close it, followed by the
      delimiter or the line end. When it does not, the lines the failed record took are read
      again one by one, each becoming a row (an item or a reject) of its own: a stray quote
      costs its own line only;
    * a record that parses but spans several lines is trusted only if none of the lines
      wholly inside its quoted field would be a complete row by itself; otherwise each of its
      lines is a ``bad_quoting`` reject (nothing is guessed into an item).

    Either way every physical line is accounted for with its raw text, so ``rows_read``
    counts lines the user can find in the file. Bytes that are not UTF-8 survive decoding
    as surrogates so the row can be reported instead of aborting the file."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    lines = _PhysicalLines(text)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    state = _CsvState(source, delimiter, mapping, counts)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            start, physical = lines.take()
            yield from state.failed(start, physical, str(exc))
            continue
        start, physical = lines.take()
        if len(physical) > 2 and state.header is not None:
            # lines wholly inside the quoted field; the last one also holds the record's
            # remaining fields, so it looks like a row whenever the text has delimiters
            inner = state.row_shaped(physical[1:-1])
            if inner is not None:
                yield from state.reject_lines(start, physical, f"a quoted field spans lines {start}-{start + len(physical) - 1} "
                                              f"and line {start + 1 + inner} inside it is a complete row: a stray quote?")
                continue
        yield from state.row(start, fields, physical)


class _CsvState:
    def __init__(self, source: str, delimiter: str, mapping: Mapping, counts: Counter):
        self.source, self.delimiter, self.mapping, self.counts = source, delimiter, mapping, counts
        self.header: list[str] | None = list(mapping.columns) if mapping.columns is not None else None

    def _parse_alone(self, line: str) -> list[str] | None:
        """The fields of one physical line parsed on its own; None if it cannot be."""
        try:
            return next(csv.reader([line], delimiter=self.delimiter, strict=True), [])
        except csv.Error:
            return None

    def row_shaped(self, continuation: list[str]) -> int | None:
        """Index of the first continuation line that would be a complete row on its own."""
        width = len(self.header)
        if width < 2:
            return None
        return next((n for n, line in enumerate(continuation) if len(self._parse_alone(line) or ()) == width), None)

    def row(self, start: int, fields: list[str], physical: list[str]) -> Iterator[SourceRow]:
        if not fields or not any(f.strip() for f in fields):
            self.counts["blank_lines"] += 1
            return
        raw = _raw(physical)
        try:
            "\x1f".join(fields).encode("utf-8")
        except UnicodeEncodeError as exc:
            if self.header is None:
                raise _header_not_utf8(self.source, start, raw) from None
            lenient = [f.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace") for f in fields]
            yield SourceRow(self.source, start, reason="invalid_utf8", detail=str(exc), raw=raw,
                            salvaged=_fields_of(self.header, lenient))
            return
        if self.header is None:
            self.header = _check_header(fields, self.source, self.mapping)
            return
        if len(fields) != len(self.header):
            yield SourceRow(self.source, start, reason="wrong_field_count",
                            detail=f"expected {len(self.header)} fields, got {len(fields)}", raw=raw)
            return
        yield SourceRow(self.source, start, record=dict(zip(self.header, fields)), raw=raw)

    def failed(self, start: int, physical: list[str], error: str) -> Iterator[SourceRow]:
        """The parser gave up on a record: report it, or re-read its lines one by one."""
        if self.header is None:
            raise SourceError(f"{self.source}:{start}: the header row cannot be parsed: CSV: {error}")
        if "field larger than field limit" in error:
            yield SourceRow(self.source, start, reason="field_too_large",
                            detail=f"a field over csv's limit of {csv.field_size_limit()} characters", raw=_raw(physical))
        elif len(physical) > 1:
            yield from self.one_by_one(start, physical, f"a quoted field does not close properly (CSV: {error})")
        else:
            yield SourceRow(self.source, start, reason="bad_quoting", detail=f"misplaced quote (CSV: {error})",
                            raw=_raw(physical))

    def reject_lines(self, start: int, physical: list[str], why: str) -> Iterator[SourceRow]:
        """Every physical line of a doubtful record is a reject: guessing which of them are
        rows could turn a product description into items."""
        for offset, line in enumerate(physical):
            yield SourceRow(self.source, start + offset, reason="bad_quoting", detail=why, raw=_raw([line]))

    def one_by_one(self, start: int, physical: list[str], why: str) -> Iterator[SourceRow]:
        last = start + len(physical) - 1
        for offset, line in enumerate(physical):
            fields = self._parse_alone(line)
            if fields is None:
                yield SourceRow(self.source, start + offset, reason="bad_quoting",
                                detail=f"{why} (lines {start}-{last} read one by one)", raw=_raw([line]))
            else:
                yield from self.row(start + offset, fields, [line])


def _raw(physical: list[str]) -> bytes:
    return "".join(physical).rstrip("\r\n").encode("utf-8", errors="surrogateescape")


def _lenient_json(line: bytes) -> dict | None:
    try:
        record = json.loads(line.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _fields_of(header: list[str] | tuple[str, ...], fields: list[str]) -> dict | None:
    """A row's fields by name, when it has as many as the header (otherwise they cannot be told apart)."""
    return dict(zip(header, fields)) if len(fields) == len(header) else None


def _header_not_utf8(source: str, line: int, raw: bytes) -> SourceError:
    """The header is never dropped as a bad row: the next row would become the header."""
    try:
        raw.decode("utf-8")
        where = ""
    except UnicodeDecodeError as exc:
        where = f" (byte {raw[exc.start:exc.end][:4].hex(' ')} at position {exc.start})"
    return SourceError(f"{source}:{line}: the header row is not UTF-8 text{where}; save the file as UTF-8 "
                       f"(UTF-16 with its byte-order mark is read too)")


def _check_header(fields: list[str], source: str, mapping: Mapping) -> list[str]:
    names = [f.strip() for f in fields]
    if not all(names) or len(set(names)) != len(names):
        raise SourceError(f"{source}: the header row needs unique, non-empty column names, got {names}")
    mapping.check_columns(names, source)
    return names


def _parquet_rows(path: Path, mapping: Mapping) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise SourceError(f"{path}: not a readable Parquet file: {exc}") from None
    mapping.check_columns(parquet.schema_arrow.names, str(path), nested=True)
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            number += 1
            try:
                yield SourceRow(str(path), number, record=_plain(record))
            except _NotUtf8 as exc:
                # the undecodable bytes travel as they are: the report shows them as \xNN
                raw = json.dumps(record, ensure_ascii=False, default=_bytes_text).encode("utf-8", errors="surrogateescape")
                yield SourceRow(str(path), number, reason="invalid_utf8",
                                detail=f"binary field {exc.field!r} is not UTF-8 text: {exc.error}", raw=raw)


class _NotUtf8(Exception):
    def __init__(self, field: str, error: UnicodeDecodeError):
        self.field, self.error = field, error


def _plain(value: Any, where: str = "") -> Any:
    """Arrow map columns come back as lists of (key, value) tuples: make them dicts. Binary
    columns come back as bytes: decode them as UTF-8 text (str(b'Acme') would be the text
    "b'Acme'"), or refuse the row when they are not text."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotUtf8(where, exc) from None
    if isinstance(value, dict):
        return {_plain(k, where): _plain(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(x, tuple) and len(x) == 2 for x in value):
            return {_plain(k, where): _plain(v, f"{where}.{_plain(k, where)}") for k, v in value}
        return [_plain(x, where) for x in value]
    return value


def _bytes_text(value: Any) -> str:
    return bytes(value).decode("utf-8", errors="surrogateescape") if isinstance(value, (bytes, bytearray)) else str(value)
