"""`k3m import` through the real entry point: exit codes, the warning lines, --strict, clear errors."""
from __future__ import annotations

import csv
import json

from k3m.cli import main


def k3m(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_import_writes_build_and_warns_on_rejects(k3m_lines, tmp_path, capsys):
    path = tmp_path / "part.tsv"
    path.write_bytes(b"\n".join(k3m_lines[:20] + [k3m_lines[3]]) + b"\n")  # one duplicate id
    out = tmp_path / "build"
    code, stdout, err = k3m(capsys, "import", path, "--mapping", "k3m-tsv", "--out", out)
    assert code == 0
    assert "20 items" in stdout and "missing 20" in stdout
    assert f"warning: 1 of 21 rows rejected (duplicate_id=1); see {out}/rejects.jsonl" in err
    summary = json.loads((out / "summary.json").read_text())
    assert {"rows_read", "items", "rejected", "triples", "properties", "values", "images", "seconds"} <= set(summary)
    assert summary["images"] == {"ok": 0, "missing": 20, "bad": 0, "refused": 0}


def test_strict_turns_a_reject_into_an_error(k3m_lines, tmp_path, capsys):
    path = tmp_path / "part.tsv"
    path.write_bytes(b"\n".join(k3m_lines[:5] + [b"\t".join(k3m_lines[5].split(b"\t")[:4])]) + b"\n")
    out = tmp_path / "build"
    code, _, err = k3m(capsys, "import", path, "--mapping", "k3m-tsv", "--out", out, "--strict")
    assert code == 2
    assert err == f"k3m import: error: {path}:6: row rejected (wrong_field_count): expected 5 fields, got 4\n"
    assert not out.exists()


def test_limit_and_no_warning_when_clean(fashion_dir, tmp_path, capsys):
    out = tmp_path / "build"
    code, stdout, err = k3m(capsys, "import", fashion_dir / "styles.jsonl.gz", "--mapping", "fashion44k", "--out", out,
                            "--limit", "25")
    assert code == 0 and "25 items" in stdout and err == ""


def test_mapping_and_source_errors_are_one_clear_line(k3m_sample_dir, tmp_path, capsys):
    mapping = tmp_path / "mine.yaml"
    mapping.write_text("id: id\nproperties: [{column: brand, splitt: ','}]\n")
    source = k3m_sample_dir / "small_valid.tsv"
    code, _, err = k3m(capsys, "import", source, "--mapping", mapping, "--out", tmp_path / "b")
    assert code == 2
    assert err == f"k3m import: error: {mapping}: properties[0].splitt: unknown key (did you mean 'split'?)\n"
    code, _, err = k3m(capsys, "import", tmp_path / "nope.tsv", "--mapping", "k3m-tsv", "--out", tmp_path / "b")
    assert code == 2 and err.count("\n") == 1 and "nope.tsv: no such source file" in err


def test_out_pointing_at_a_file_is_a_clear_error(k3m_sample_dir, tmp_path, capsys):
    target = tmp_path / "build.txt"
    target.write_text("keep me")
    code, _, err = k3m(capsys, "import", k3m_sample_dir / "small_valid.tsv", "--mapping", "k3m-tsv", "--out", target)
    assert code == 2 and err == f"k3m import: error: {target}: is a file; --out names the build directory to write\n"
    code, _, err = k3m(capsys, "import", k3m_sample_dir / "small_valid.tsv", "--mapping", "k3m-tsv",
                       "--out", target / "build")
    assert code == 2 and err == f"k3m import: error: {target}: is a file, so {target / 'build'} cannot be created\n"
    assert target.read_text() == "keep me"


def _fashion_csv(fashion_lines, path, rows: int, header: bool = True) -> list[dict]:
    records = [json.loads(line) for line in fashion_lines[:rows]]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(["sku", "name", "type", "brand"])
        for r in records:
            writer.writerow([r["id"], r["productDisplayName"], r["articleType"]["typeName"], r["brandName"]])
    return records


def test_empty_and_header_only_sources(fashion_lines, tmp_path, capsys):
    """Zero items is an error that says why; an empty file among others is a warning."""
    mapping = tmp_path / "shop.yaml"
    mapping.write_text("id: sku\ntitle: name\ncategory: type\nproperties: [brand]\n")
    header_only = tmp_path / "header.csv"
    _fashion_csv(fashion_lines, header_only, 0)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    for source in (header_only, empty):
        code, _, err = k3m(capsys, "import", source, "--mapping", mapping, "--out", tmp_path / "b")
        assert code == 2 and err == f"k3m import: error: no items: {source} holds no data rows (empty, or a header only)\n"
        assert not (tmp_path / "b").exists()

    rows = tmp_path / "rows.csv"
    _fashion_csv(fashion_lines, rows, 12)
    code, stdout, err = k3m(capsys, "import", rows, header_only, "--mapping", mapping, "--out", tmp_path / "b")
    assert code == 0 and "12 items" in stdout
    assert err == f"k3m import: warning: {header_only} holds no data rows (empty, or a header only)\n"


def test_all_rows_rejected_is_an_error_naming_the_first(fashion_lines, tmp_path, capsys):
    mapping = tmp_path / "shop.yaml"
    mapping.write_text("id: sku\ntitle: name\nformat: csv\ncolumns: [sku, name, type, brand]\n")
    rows = tmp_path / "rows.csv"
    records = _fashion_csv(fashion_lines, rows, 6, header=False)
    rows.write_text("".join(f",{line.split(',', 1)[1]}" for line in rows.read_text().splitlines(keepends=True)))
    code, _, err = k3m(capsys, "import", rows, "--mapping", mapping, "--out", tmp_path / "b")
    assert code == 2 and err.startswith("k3m import: error: no items: all 6 rows were rejected (missing_id=6); "
                                        f"the first, {rows}:1: missing_id: ")
    assert len(records) == 6


def test_label_leakage_is_a_warning_with_the_fix(fashion_lines, tmp_path, capsys):
    """A column restating the label (the sub-category of 1,000 real items) is flagged."""
    records = [json.loads(line) for line in fashion_lines]
    source = tmp_path / "shop.csv"
    with source.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sku", "name", "type", "colour", "dept"])
        for r in records:
            writer.writerow([r["id"], r["productDisplayName"], r["articleType"]["typeName"], r["baseColour"],
                             r["subCategory"]["typeName"]])
    mapping = tmp_path / "shop.yaml"
    mapping.write_text("id: sku\ntitle: name\ncategory: type\nproperties: [colour, dept]\n")
    code, _, err = k3m(capsys, "import", source, "--mapping", mapping, "--out", tmp_path / "b")
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    leakage = summary["label_leakage"]
    assert code == 0 and leakage["suspects"] == ["dept"]
    dept = next(p for p in leakage["properties"] if p["property"] == "dept")
    assert f"property 'dept' alone predicts the category of {100 * dept['accuracy']:.0f}% of held-out items" in err
    assert "add it to the mapping's exclude: list" in err and "'colour'" not in err

    mapping.write_text("id: sku\ntitle: name\ncategory: type\nproperties: [colour, dept]\nnot_leakage: [dept]\n")
    code, _, err = k3m(capsys, "import", source, "--mapping", mapping, "--out", tmp_path / "b")
    assert code == 0 and err == ""


def test_image_size_0_is_refused_not_read_as_the_default(fashion_dir, tmp_path, capsys):
    """`--image-size 0` used to mean 64 silently, while -5 was refused."""
    for size in ("0", "-5", "2000"):
        code, _, err = k3m(capsys, "import", fashion_dir / "styles.jsonl.gz", "--mapping", "fashion44k",
                           "--out", tmp_path / "b", "--limit", "5", "--image-size", size)
        assert code == 2 and err == f"k3m import: error: image_size must be within 8..1024, got {size}\n"
    assert not (tmp_path / "b").exists()


def test_a_short_result_and_the_whole_summary_with_json(k3m_lines, tmp_path, capsys):
    path = tmp_path / "part.tsv"
    path.write_bytes(b"\n".join(k3m_lines[:20] + [k3m_lines[3]]) + b"\n")
    code, stdout, err = k3m(capsys, "import", path, "--mapping", "k3m-tsv", "--out", tmp_path / "a")
    assert code == 0 and stdout.count("\n") == 1 and "rows rejected (duplicate_id=1)" in err
    code, stdout, err = k3m(capsys, "import", path, "--mapping", "k3m-tsv", "--out", tmp_path / "b", "--json")
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert code == 0 and json.loads(stdout) == summary and "label_leakage" in summary
    assert "rows rejected (duplicate_id=1)" in err
    code, _, err = k3m(capsys, "import", path, "--mapping", "k3m-tsv", "--out", tmp_path / "c", "--allow-removals")
    assert code == 2 and err == "k3m import: error: --allow-removals and --mapping-changed apply to --update only\n"
