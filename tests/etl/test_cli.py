"""`k3m import`: exit codes, the warning line on rejects, --strict, clear errors."""
from __future__ import annotations

import argparse
import json

from etl.cli import add_parser


def main(argv: list[str]) -> int:
    """`k3m` with only this stage registered (k3m/cli.py adds the others the same way)."""
    parser = argparse.ArgumentParser(prog="k3m")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_import_writes_build_and_warns_on_rejects(k3m_lines, tmp_path, capsys):
    path = tmp_path / "part.tsv"
    path.write_bytes(b"\n".join(k3m_lines[:20] + [k3m_lines[3]]) + b"\n")  # one duplicate id
    out = tmp_path / "build"
    assert main(["import", str(path), "--mapping", "k3m-tsv", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "20 items" in captured.out and "missing 20" in captured.out
    assert f"warning: 1 of 21 rows rejected (duplicate_id=1); see {out}/rejects.jsonl" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert {"rows_read", "items", "rejected", "triples", "properties", "values", "images", "seconds"} <= set(summary)
    assert summary["images"] == {"ok": 0, "missing": 20, "bad": 0, "refused": 0}


def test_strict_turns_a_reject_into_an_error(k3m_lines, tmp_path, capsys):
    path = tmp_path / "part.tsv"
    path.write_bytes(b"\n".join(k3m_lines[:5] + [b"\t".join(k3m_lines[5].split(b"\t")[:4])]) + b"\n")
    out = tmp_path / "build"
    assert main(["import", str(path), "--mapping", "k3m-tsv", "--out", str(out), "--strict"]) == 1
    assert f"error: {path}:6: row rejected (wrong_field_count): expected 5 fields, got 4" in capsys.readouterr().err
    assert not out.exists()


def test_limit_and_no_warning_when_clean(fashion_dir, tmp_path, capsys):
    out = tmp_path / "build"
    args = ["import", str(fashion_dir / "styles.jsonl.gz"), "--mapping", "fashion44k", "--out", str(out), "--limit", "25"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "25 items" in captured.out and captured.err == ""


def test_mapping_and_source_errors_are_one_clear_line(k3m_sample_dir, tmp_path, capsys):
    mapping = tmp_path / "mine.yaml"
    mapping.write_text("id: id\nproperties: [{column: brand, splitt: ','}]\n")
    source = str(k3m_sample_dir / "small_valid.tsv")
    assert main(["import", source, "--mapping", str(mapping), "--out", str(tmp_path / "b")]) == 1
    assert f"error: {mapping}: properties[0].splitt: unknown key (did you mean 'split'?)" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "nope.tsv"), "--mapping", "k3m-tsv", "--out", str(tmp_path / "b")]) == 1
    assert "nope.tsv: no such source file" in capsys.readouterr().err
