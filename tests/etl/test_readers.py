"""Readers on real rows of both datasets, in every supported format, and the unreadable-row cases."""
from __future__ import annotations

import csv
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.mapping import MappingError, load_mapping, parse_mapping
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


def _fashion_csv_lines(fashion_lines, n: int) -> list[str]:
    """n real records as CSV lines (header first), fields id,productDisplayName,articleType,brandName."""
    path_lines = ["sku,name,type,brand"]
    for line in fashion_lines[:n]:
        r = json.loads(line)
        path_lines.append(",".join([str(r["id"]), r["productDisplayName"].replace(",", " "), r["articleType"]["typeName"],
                                    r["brandName"]]))
    return path_lines


SHOP = {"id": "sku", "title": "name", "category": "type", "properties": ["brand"]}


def test_csv_stray_quote_costs_its_own_line_only(fashion_lines, tmp_path):
    """The issue's case on 20 real rows: an opening quote that never closes properly used to
    swallow the next rows into one title. Each physical line is now a row of its own."""
    lines = _fashion_csv_lines(fashion_lines, 20)
    lines[5] = lines[5].replace(",", ',"', 1)  # a stray quote opening the title of data line 5
    lines[7] = lines[7].replace(",", ',"', 1).replace(",", '",', 2).replace('",', ",", 1)  # a legit quoted title
    path = tmp_path / "shop.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got, _ = rows(path, parse_mapping(SHOP, origin="inline"))
    assert [r.line for r in got] == list(range(2, 22))  # one row per physical line
    rejected = [(r.line, r.reason) for r in got if r.record is None]
    assert rejected == [(6, "bad_quoting")]
    assert got[4].raw_text() == lines[5] and "does not close properly" in got[4].detail
    assert got[5].record["sku"] == lines[6].split(",")[0]
    assert got[6].record["name"] == lines[7].split('"')[1]


def test_csv_quoted_field_swallowing_complete_rows_is_rejected_line_by_line(fashion_lines, tmp_path):
    """Two stray quotes that happen to pair up parse without error; the lines between them
    are complete rows, so the merged record is refused, every line with its raw text."""
    lines = _fashion_csv_lines(fashion_lines, 20)
    lines[3] = lines[3].replace(",", ',"', 1)
    lines[5] = lines[5].replace(",", '",', 2).replace('",', ",", 1)
    path = tmp_path / "shop.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got, _ = rows(path, parse_mapping(SHOP, origin="inline"))
    assert len(got) == 20
    assert [(r.line, r.reason) for r in got if r.record is None] == [(4, "bad_quoting"), (5, "bad_quoting"), (6, "bad_quoting")]
    assert [r.raw_text() for r in got if r.record is None] == lines[3:6]
    assert "line 5 inside it is a complete row" in got[2].detail


def test_csv_multiline_text_that_is_not_row_shaped_is_kept(fashion_lines, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:3]]
    path = tmp_path / "shop.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sku", "name", "type", "brand"])
        for r in records:
            writer.writerow([r["id"], r["productDisplayName"] + "\nsecond line, with a comma", r["articleType"]["typeName"],
                             r["brandName"]])
    got, _ = rows(path, parse_mapping(SHOP, origin="inline"))
    assert [r.line for r in got] == [2, 4, 6] and all(r.record for r in got)
    assert got[0].record["name"].endswith("\nsecond line, with a comma")


def test_csv_misplaced_quote_on_one_line(fashion_lines, tmp_path):
    lines = _fashion_csv_lines(fashion_lines, 3)
    sku, name, rest = lines[2].split(",", 2)
    lines[2] = f'{sku},"{name}" extra,{rest}'
    path = tmp_path / "shop.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got, _ = rows(path, parse_mapping(SHOP, origin="inline"))
    assert [(r.line, r.reason) for r in got] == [(2, None), (3, "bad_quoting"), (4, None)]
    assert got[1].raw_text() == lines[2]


def test_csv_field_over_the_size_limit_is_rejected_with_its_raw_text(fashion_lines, tmp_path):
    lines = _fashion_csv_lines(fashion_lines, 4)
    sku, name, rest = lines[2].split(",", 2)
    lines[2] = f"{sku},{name} {'x' * (10 * 2**20)},{rest}"  # a 10 MB title
    path = tmp_path / "shop.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got, _ = rows(path, parse_mapping(SHOP, origin="inline"))
    assert [(r.line, r.reason) for r in got] == [(2, None), (3, "field_too_large"), (4, None), (5, None)]
    assert got[1].raw_text() == lines[2]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name(fashion_lines, tmp_path, fmt):
    sep = "," if fmt == "csv" else "\t"
    lines = [line.replace(",", sep) for line in _fashion_csv_lines(fashion_lines, 5)]
    with_header = tmp_path / f"header.{fmt}"
    with_header.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())
    got, _ = rows(with_header, parse_mapping(SHOP, origin="inline"))
    assert [r.record["sku"] for r in got] == [line.split(sep)[0] for line in lines[1:]]
    headerless = tmp_path / f"plain.{fmt}"
    headerless.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines[1:]).encode())
    got, _ = rows(headerless, parse_mapping({**SHOP, "columns": ["sku", "name", "type", "brand"]}, origin="inline"))
    assert got[0].record["sku"] == lines[1].split(sep)[0] and got[0].line == 1


def test_jsonl_byte_order_mark(fashion_lines, tmp_path):
    path = tmp_path / "styles.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(fashion_lines[:2]))
    got, _ = rows(path, load_mapping("fashion44k"))
    assert [r.record["id"] for r in got] == [json.loads(line)["id"] for line in fashion_lines[:2]]


def test_header_without_a_mapped_column_is_a_mapping_error(fashion_lines, tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text("\n".join(_fashion_csv_lines(fashion_lines, 3)) + "\n")
    with pytest.raises(MappingError, match=r"^inline: properties\[0\]: 'brnd' is not a column of .*shop.csv "
                                           r"\(did you mean 'brand'\?\); its columns are 'sku', 'name', 'type', 'brand'"):
        rows(path, parse_mapping({**SHOP, "properties": ["brnd"]}, origin="inline"))
    with pytest.raises(MappingError, match=r"^inline: image.path: 'photo' is not a column"):
        rows(path, parse_mapping({**SHOP, "image": {"dir": ".", "path": "{photo[:3]}/{sku}.jpg"}}, origin="inline"))


def test_parquet_binary_columns_are_text_or_a_reject(fashion_lines, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:6]]
    brands = [r["brandName"].encode() for r in records]
    brands[4] = b"Caf\xe9 " + brands[4]  # latin-1, not UTF-8
    table = pa.table({"id": [r["id"] for r in records], "brandName": pa.array(brands, pa.binary()),
                      "productDisplayName": pa.array([r["productDisplayName"].encode() for r in records], pa.large_binary())})
    path = tmp_path / "styles.parquet"
    pq.write_table(table, path)
    got, _ = rows(path, parse_mapping({"id": "id", "title": "productDisplayName", "properties": ["brandName"]}, origin="inline"))
    assert [r.reason for r in got] == [None, None, None, None, "invalid_utf8", None]
    assert got[0].record["brandName"] == records[0]["brandName"]
    assert got[0].record["productDisplayName"] == records[0]["productDisplayName"]
    assert "'brandName'" in got[4].detail and "Caf\\xe9" in got[4].raw_text()


def test_parquet_schema_without_a_mapped_column(fashion_lines, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:3]]
    path = tmp_path / "styles.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "articleType": r["articleType"]} for r in records]), path)
    assert len(rows(path, parse_mapping({"id": "id", "category": "articleType.typeName"}, origin="inline"))[0]) == 3
    with pytest.raises(MappingError, match="'brandName' is not a column"):
        rows(path, parse_mapping({"id": "id", "properties": ["brandName"]}, origin="inline"))


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_a_header_that_is_not_utf8_is_an_error_never_a_dropped_row(fashion_lines, tmp_path, fmt):
    """The header was once rejected as a bad row, and the first data row became the header."""
    sep = "," if fmt == "csv" else "\t"
    lines = [line.replace(",", sep).encode() for line in _fashion_csv_lines(fashion_lines, 5)]
    lines[0] = lines[0].replace(b"brand", b"br\xffand")
    path, at = tmp_path / f"h.{fmt}", lines[0].index(b"\xff")
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(SourceError, match=rf"^{path}:1: the header row is not UTF-8 text \(byte ff at position "
                                          rf"{at}\); save the file as UTF-8"):
        rows(path, parse_mapping(SHOP, origin="inline"))


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_utf16_and_utf32_files_with_a_byte_order_mark_are_decoded(fashion_lines, tmp_path, fmt, encoding):
    """Excel's "Unicode text" export is UTF-16LE with a byte-order mark."""
    if fmt == "jsonl":
        text, mapping = "\r\n".join(line.decode() for line in fashion_lines[:30]), load_mapping("fashion44k")
    else:
        sep = "," if fmt == "csv" else "\t"
        text = "\r\n".join(line.replace(",", sep) for line in _fashion_csv_lines(fashion_lines, 30))
        mapping = parse_mapping(SHOP, origin="inline")
    utf8, wide = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    utf8.write_bytes(text.encode())
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-32-le": b"\xff\xfe\x00\x00"}[encoding]
    wide.write_bytes(bom + text.encode(encoding))
    expected, got = rows(utf8, mapping)[0], rows(wide, mapping)[0]
    assert len(got) == 30 and all(r.record is not None for r in got)
    assert [(r.line, r.record) for r in got] == [(r.line, r.record) for r in expected]


def test_a_utf16_file_with_a_lone_surrogate_rejects_that_row_only(fashion_lines, tmp_path):
    lines = _fashion_csv_lines(fashion_lines, 4)
    data = bytearray(b"\xff\xfe" + "\n".join(lines).encode("utf-16-le"))
    at = data.index(("\n" + lines[2]).encode("utf-16-le")) + 2  # the first character of row 2 (line 3)
    data[at:at + 2] = b"\x00\xd8"  # a high surrogate without its pair
    path = tmp_path / "s.csv"
    path.write_bytes(bytes(data))
    got, _ = rows(path, parse_mapping(SHOP, origin="inline"))
    assert [(r.line, r.reason) for r in got] == [(2, None), (3, "invalid_utf8"), (4, None), (5, None)]
    truncated = tmp_path / "t.csv"
    truncated.write_bytes(b"\xff\xfe" + "\n".join(lines).encode("utf-16-le")[:-1])
    with pytest.raises(SourceError, match="starts with a UTF-16 byte-order mark but is not valid UTF-16 text"):
        rows(truncated, parse_mapping(SHOP, origin="inline"))
