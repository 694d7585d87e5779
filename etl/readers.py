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

from etl.mapping import Mapping

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_BATCH_ROWS = 4096
EXTENSION_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class SourceError(RuntimeError):
    """A whole source file cannot be read (missing, wrong format, truncated archive)."""


@dataclass
class SourceRow:
    source: str
    line: int  # 1-based physical line where the row starts (row number for Parquet)
    record: dict[str, Any] | None = None
    reason: str | None = None  # why the row could not be read (record is None then)
    detail: str | None = None
    raw: bytes | None = None  # the row's bytes as read, for the rejects report

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
    """Rows of one source file. ``counts['blank_lines']`` counts skipped empty lines."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    fmt = source_format(path, mapping)
    if fmt == "parquet":
        yield from _parquet_rows(path)
        return
    with _open_binary(path) as stream:
        try:
            if fmt == "jsonl":
                yield from _jsonl_rows(stream, str(path), counts)
            else:
                delimiter = mapping.delimiter or ("\t" if fmt == "tsv" else ",")
                rows = _tsv_rows if fmt == "tsv" else _csv_rows
                yield from rows(stream, str(path), delimiter, mapping.columns, counts)
        except (EOFError, gzip.BadGzipFile, OSError) as exc:
            raise SourceError(f"{path}: the file is corrupt or truncated: {exc}") from None


def _open_binary(path: Path) -> BinaryIO:
    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else path.open("rb")


def _lines(stream: BinaryIO, counts: Counter) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, 1):
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
            yield SourceRow(source, number, reason="invalid_utf8", detail=str(exc), raw=line)
            continue
        except ValueError as exc:
            yield SourceRow(source, number, reason="unparseable", detail=f"not JSON: {exc}", raw=line)
            continue
        if not isinstance(record, dict):
            yield SourceRow(source, number, reason="unparseable", detail=f"a JSON {type(record).__name__}, not an object", raw=line)
            continue
        yield SourceRow(source, number, record=record, raw=line)


def _tsv_rows(stream, source, delimiter, columns, counts) -> Iterator[SourceRow]:
    """Delimiter-separated without quoting (the K3M format): a field never contains the delimiter."""
    header = columns
    for number, line in _lines(stream, counts):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield SourceRow(source, number, reason="invalid_utf8", detail=str(exc), raw=line)
            continue
        fields = text.split(delimiter)
        if header is None:
            header = _check_header(fields, source)
            continue
        if len(fields) != len(header):
            yield SourceRow(source, number, reason="wrong_field_count",
                            detail=f"expected {len(header)} fields, got {len(fields)}", raw=line)
            continue
        yield SourceRow(source, number, record=dict(zip(header, fields)), raw=line)


def _csv_rows(stream, source, delimiter, columns, counts) -> Iterator[SourceRow]:
    """RFC 4180 CSV (quoted fields may span lines). Bytes that are not UTF-8 survive decoding as
    surrogates so the row can be reported instead of aborting the file."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    header = list(columns) if columns is not None else None
    end = 0
    while True:
        start = end + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num < start:  # the reader made no progress: stop rather than loop
                raise SourceError(f"{source}:{start}: unreadable CSV: {exc}") from None
            end = reader.line_num
            yield SourceRow(source, start, reason="unparseable", detail=f"CSV: {exc}")
            continue
        end = reader.line_num
        if not fields or not any(f.strip() for f in fields):
            counts["blank_lines"] += 1
            continue
        raw = _csv_raw(fields, delimiter)
        try:
            "\x1f".join(fields).encode("utf-8")
        except UnicodeEncodeError as exc:
            yield SourceRow(source, start, reason="invalid_utf8", detail=str(exc), raw=raw)
            continue
        if header is None:
            header = _check_header(fields, source)
            continue
        if len(fields) != len(header):
            yield SourceRow(source, start, reason="wrong_field_count",
                            detail=f"expected {len(header)} fields, got {len(fields)}", raw=raw)
            continue
        yield SourceRow(source, start, record=dict(zip(header, fields)), raw=raw)


def _csv_raw(fields: list[str], delimiter: str) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow(fields)
    return buffer.getvalue().encode("utf-8", errors="surrogateescape")


def _check_header(fields: list[str], source: str) -> list[str]:
    names = [f.strip() for f in fields]
    if not all(names) or len(set(names)) != len(names):
        raise SourceError(f"{source}: the header row needs unique, non-empty column names, got {names}")
    return names


def _parquet_rows(path: Path) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise SourceError(f"{path}: not a readable Parquet file: {exc}") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            number += 1
            yield SourceRow(str(path), number, record=_plain(record))


def _plain(value: Any) -> Any:
    """Arrow map columns come back as lists of (key, value) tuples: make them dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(x, tuple) and len(x) == 2 for x in value):
            return {k: _plain(v) for k, v in value}
        return [_plain(x) for x in value]
    return value

