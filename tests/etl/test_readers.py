"""Readers on real rows of both datasets, in every supported format, and the unreadable-row cases."""
from __future__ import annotations

import csv
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.mapping import load_mapping, parse_mapping
from etl.readers import SourceError, read_rows


def rows(path, mapping):
    counts = Counter()
    return list(read_rows(path, mapping, counts)), counts


def test_k3m_tsv_rows_are_the_five_named_fields(k3m_lines, k3m_sample_dir):
    got, _ = rows(k3m_sample_dir / "small_train.tsv", load_mapping("k3m-tsv"))
    assert len(got) == 400
    first = k3m_lines[:1][0].decode().split("\t")
    assert got[0].record == dict(zip(["id", "title", "image_url", "knowledge", "category"], first))
    assert (got[0].source.endswith("small_train.tsv"), got[0].line, got[-1].line) == (True, 1, 400)


def test_jsonl_gzip_yields_nested_records_in_order(fashion_lines, fashion_dir):
    got, _ = rows(fashion_dir / "styles.jsonl.gz", load_mapping("fashion44k"))
    assert len(got) == 44441
    assert got[0].record == json.loads(fashion_lines[:1][0])
    assert got[0].record["articleType"]["typeName"] == "Skirts"
    assert all(r.record is not None for r in got)


def test_plain_jsonl_and_blank_lines_are_counted(fashion_lines, tmp_path):
    lines = fashion_lines[:3]
    path = tmp_path / "styles.jsonl"
    path.write_bytes(lines[0] + b"\n\n" + lines[1] + b"\r\n   \n" + lines[2])
    got, counts = rows(path, load_mapping("fashion44k"))
    assert [r.line for r in got] == [1, 3, 5]
    assert counts["blank_lines"] == 2


def test_bad_json_lines_are_reported_not_skipped(fashion_lines, tmp_path):
    good, cut, other = fashion_lines[:3]
    path = tmp_path / "styles.jsonl"
    broken_utf8 = other.replace(b"Palm", b"P\xffalm", 1)
    path.write_bytes(b"\n".join([good, cut[: len(cut) // 2], broken_utf8, b"[1, 2]"]))
    got, _ = rows(path, load_mapping("fashion44k"))
    assert [(r.line, r.reason) for r in got] == [(1, None), (2, "unparseable"), (3, "invalid_utf8"), (4, "unparseable")]
    assert got[1].raw == cut[: len(cut) // 2]
    assert "\\xff" in got[2].raw_text()


def test_tsv_wrong_field_count_and_invalid_utf8(k3m_lines, tmp_path):
    a, b, c = k3m_lines[:3]
    short = b"\t".join(b.split(b"\t")[:4])
    broken = c[:20] + b"\xc3\x28" + c[20:]
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"\n".join([a, short, broken]) + b"\n")
    got, _ = rows(path, load_mapping("k3m-tsv"))
    assert [(r.line, r.reason) for r in got] == [(1, None), (2, "wrong_field_count"), (3, "invalid_utf8")]
    assert got[1].detail == "expected 5 fields, got 4"


def _csv_of_fashion(fashion_lines, path, n: int, fields=("id", "productDisplayName", "brandName", "baseColour")):
    records = [json.loads(line) for line in fashion_lines[:n]]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in records:
            writer.writerow([r[k] for k in fields])
    return records


def test_csv_with_header_on_real_rows(fashion_lines, tmp_path):
    path = tmp_path / "styles.csv"
    records = _csv_of_fashion(fashion_lines, path, 20)
    mapping = parse_mapping({"id": "id", "title": "productDisplayName"}, origin="inline")
    got, _ = rows(path, mapping)
    assert len(got) == 20
    assert got[4].record == {k: str(records[4][k]) for k in ("id", "productDisplayName", "brandName", "baseColour")}
    assert got[4].line == 6  # header is line 1


def test_csv_quoted_multiline_field_keeps_line_numbers(fashion_lines, tmp_path):
    path = tmp_path / "styles.csv"
    records = [json.loads(line) for line in fashion_lines[:2]]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "description"])
        for r in records:
            writer.writerow([r["id"], r["productDescriptors"]["description"]["value"].replace("<br />", "\n")])
    got, _ = rows(path, parse_mapping({"id": "id"}, origin="inline"))
    assert [r.record["id"] for r in got] == [str(r["id"]) for r in records]
    assert got[0].line == 2 and got[1].line > 3
    assert "\n" in got[0].record["description"]


def test_csv_bad_rows(fashion_lines, tmp_path):
    path = tmp_path / "styles.csv"
    _csv_of_fashion(fashion_lines, path, 3)
    lines = path.read_bytes().split(b"\r\n")
    lines[2] = lines[2] + b",extra"
    lines[3] = lines[3].replace(b"Palm", b"Pa\xfflm", 1)
    path.write_bytes(b"\r\n".join(lines))
    got, _ = rows(path, parse_mapping({"id": "id"}, origin="inline"))
    assert [(r.line, r.reason) for r in got] == [(2, None), (3, "wrong_field_count"), (4, "invalid_utf8")]
    assert got[2].raw_text().count("\\xff") == 1


def test_csv_header_must_name_columns(fashion_lines, tmp_path):
    path = tmp_path / "styles.csv"
    _csv_of_fashion(fashion_lines, path, 2, fields=("id", "id"))
    with pytest.raises(SourceError, match="unique, non-empty column names"):
        rows(path, parse_mapping({"id": "id"}, origin="inline"))


def test_parquet_nested_records(fashion_lines, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:50]]
    keep = ("id", "productDisplayName", "baseColour", "articleType")
    table = pa.Table.from_pylist([{k: r[k] for k in keep} for r in records])
    path = tmp_path / "styles.parquet"
    pq.write_table(table, path, row_group_size=16)
    got, _ = rows(path, parse_mapping({"id": "id"}, origin="inline"))
    assert [r.record for r in got] == [{k: r[k] for k in keep} for r in records]
    assert got[-1].line == 50


def test_parquet_map_column_becomes_dict(fashion_lines, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:5]]
    attrs = pa.array([list(r["articleAttributes"].items()) for r in records], pa.map_(pa.string(), pa.string()))
    path = tmp_path / "attrs.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in records], "articleAttributes": attrs}), path)
    got, _ = rows(path, parse_mapping({"id": "id"}, origin="inline"))
    assert [r.record["articleAttributes"] for r in got] == [r["articleAttributes"] for r in records]


def test_truncated_gzip_is_a_clear_source_error(fashion_dir, tmp_path):
    data = (fashion_dir / "styles.jsonl.gz").read_bytes()
    path = tmp_path / "styles.jsonl.gz"
    path.write_bytes(data[: len(data) // 50])
    with pytest.raises(SourceError, match="corrupt or truncated"):
        rows(path, load_mapping("fashion44k"))


def test_unknown_extension_needs_format(fashion_lines, tmp_path):
    path = tmp_path / "styles.txt"
    path.write_bytes(b"\n".join(fashion_lines[:2]))
    with pytest.raises(SourceError, match="format"):
        rows(path, parse_mapping({"id": "id"}, origin="inline"))
    got, _ = rows(path, parse_mapping({"id": "id", "format": "jsonl"}, origin="inline"))
    assert len(got) == 2
