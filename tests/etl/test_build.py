"""End-to-end imports of real slices: counts, the build format, accounting of bad input,
images, idempotence and the never-half-written guarantee."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from etl.build import ImportFailed, import_catalog
from etl.catalog_build import CatalogBuild
from etl.mapping import load_mapping, parse_mapping
from etl.report import StrictImportError

FLAT = ["brandName", "gender", "ageGroup", "baseColour", "colour1", "colour2", "fashionType", "season", "year", "usage"]


def raw_pairs(record: dict) -> set[tuple[str, str]]:
    pairs = [(k, record[k]) for k in FLAT] + list(record["articleAttributes"].items())
    clean = {(" ".join(k.split()), " ".join(str(v).split())) for k, v in pairs}
    return {(k, v) for k, v in clean if v not in ("NA", "")}


def build_files(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_fashion_slice_matches_an_independent_count(fashion_slice_build, fashion_lines, fashion_dir):
    build = CatalogBuild.open(fashion_slice_build)
    records = [json.loads(line) for line in fashion_lines[:600]]
    with zipfile.ZipFile(fashion_dir / "images.zip") as z:
        in_zip = set(z.namelist())
    with_image = [f"images/{r['id']}.jpg" in in_zip for r in records]
    pairs = [raw_pairs(r) for r in records]

    summary = build.summary
    assert (summary["rows_read"], summary["items"], summary["rejected"]) == (600, 600, {})
    assert summary["triples"] == sum(map(len, pairs)) == len(build.triples)
    assert set(build.properties) == {p for s in pairs for p, _ in s}
    assert set(build.values) == {v for s in pairs for _, v in s}
    assert summary["images"] == {"ok": sum(with_image), "missing": 600 - sum(with_image), "bad": 0, "refused": 0}
    assert build.manifest["counts"]["items"] == build.num_items == 600

    items = build.items
    assert items["item_id"].tolist() == [str(r["id"]) for r in records]
    assert items["category"].tolist() == [r["articleType"]["typeName"] for r in records]
    assert [build.categories[i] for i in items["category_index"]] == items["category"].tolist()
    assert items["has_image"].tolist() == with_image
    offsets = build.item_triple_offsets
    for i in (0, 17, 599):
        rows = np.asarray(build.triples[offsets[i] : offsets[i + 1]])
        assert {(build.properties[p], build.values[v]) for _, p, v in rows} == pairs[i]


def test_build_arrays_follow_the_format(fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    triples = np.asarray(build.triples)
    assert triples.dtype == np.int32 and build.triple_split.dtype == np.int8
    order = np.lexsort((triples[:, 2], triples[:, 1], triples[:, 0]))
    assert (order == np.arange(len(triples))).all()
    assert len(np.unique(triples, axis=0)) == len(triples)
    assert build.properties == sorted(build.properties) and build.values == sorted(build.values)
    images = build.images
    assert images.shape == (600, 96, 96, 3) and images.dtype == np.uint8  # 80-px photos: stored at 96 (etl.image_size)
    assert not images[~build.has_image].any()
    assert all(images[i].any() for i in np.flatnonzero(build.has_image)[:50])
    assert set(build.items["split"]) == {"train", "valid", "test"}
    packages = build.manifest["packages"]
    assert {"python", "numpy", "pyarrow", "Pillow"} <= set(packages)
    assert build.manifest["sources"][0]["sha256"] and build.manifest["mapping"]["name"] == "fashion44k"


def test_k3m_sample_matches_its_readme(k3m_sample_build):
    build = CatalogBuild.open(k3m_sample_build)
    s = build.summary
    assert (s["items"], s["categories"], s["properties"], s["values"], s["pairs"]) == (500, 329, 496, 1562, 1813)
    assert s["images"]["missing"] == 500 and s["image_reasons"] == {"missing:remote_url_not_fetched": 500}
    assert not build.has_image.any() and build.images.shape == (500, 64, 64, 3)
    assert build.items["group"].isna().all()  # no group in the mapping: split by item id


def test_reimport_gives_identical_files(fashion_dir, tmp_path):
    source = [fashion_dir / "styles.jsonl.gz"]
    first = import_catalog(source, "fashion44k", tmp_path / "a", limit=150)
    import_catalog(source, "fashion44k", tmp_path / "b", limit=150)
    a, b = build_files(tmp_path / "a"), build_files(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 10
    assert {k for k in a if a[k] != b[k]} <= {"summary.json"}
    strip = lambda raw: {k: v for k, v in json.loads(raw).items() if k != "seconds"}  # noqa: E731
    assert strip(a["summary.json"]) == strip(b["summary.json"])
    # replacing an existing build in place gives the same files again
    again = import_catalog(source, "fashion44k", tmp_path / "a", limit=150)
    assert {k for k, v in build_files(tmp_path / "a").items() if v != b[k]} <= {"summary.json"}
    assert again["items"] == first["items"] == 150
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no partial or old directories left


def test_bad_rows_are_rejected_and_accounted(fashion_lines, tmp_path):
    lines = list(fashion_lines[:12])
    no_id = json.loads(lines[3])
    del no_id["id"]
    lines[3] = json.dumps(no_id).encode()
    lines[5] = lines[1]  # duplicate id
    lines[7] = lines[7][:40]  # unparseable
    lines[9] = lines[9].replace(b'"productDisplayName": "', b'"productDisplayName": "Caf\xe9 ', 1)  # latin-1 byte
    lines.insert(10, b"")  # a blank line, not a row
    path = tmp_path / "styles.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "build"
    summary = import_catalog([path], "fashion44k", out, images=str(tmp_path))

    assert summary["rows_read"] == 12 and summary["items"] == 8
    assert summary["rejected"] == {"duplicate_id": 1, "invalid_utf8": 1, "missing_id": 1, "unparseable": 1}
    assert summary["rows_read"] == summary["items"] + summary["rejected_rows"]
    assert summary["blank_lines"] == 1
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (4, "missing_id"), (6, "duplicate_id"), (8, "unparseable"), (10, "invalid_utf8")]
    assert all(r["source"] == str(path) for r in rejects)
    assert rejects[1]["raw"] == fashion_lines[1].decode() and f":{2}" in rejects[1]["detail"]
    assert rejects[2]["raw"] == fashion_lines[7][:40].decode()
    assert "\\xe9" in rejects[3]["raw"]


def test_malformed_knowledge_rejects_the_row(k3m_lines, tmp_path):
    lines = list(k3m_lines[:6])
    fields = lines[2].split(b"\t")
    fields[3] = fields[3].replace(b"#:#", b":", 1)
    lines[2] = b"\t".join(fields)
    lines[4] = b"\t".join(lines[4].split(b"\t")[:3])
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = import_catalog([path], "k3m-tsv", tmp_path / "build")
    assert summary["rejected"] == {"malformed_knowledge": 1, "wrong_field_count": 1}
    assert summary["items"] == 4
    with pytest.raises(StrictImportError, match=rf"{path}:3: row rejected \(malformed_knowledge\)"):
        import_catalog([path], "k3m-tsv", tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()


def test_strict_failure_keeps_the_previous_build(fashion_lines, fashion_dir, tmp_path):
    out = tmp_path / "build"
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", out, limit=40)
    before = build_files(out)
    path = tmp_path / "styles.jsonl"
    path.write_bytes(b"\n".join(fashion_lines[:30] + [fashion_lines[0]]))
    with pytest.raises(StrictImportError, match="duplicate_id"):
        import_catalog([path], "fashion44k", out, strict=True, images=str(fashion_dir / "images.zip"))
    assert build_files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "styles.jsonl"]


def test_refuses_to_replace_something_that_is_not_a_build(fashion_dir, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ImportFailed, match="is not a catalog build"):
        import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", tmp_path / "notes", limit=5)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_user_csv_with_image_column_counts_every_image_outcome(fashion_lines, fashion_dir, tmp_path):
    """A user's own CSV + mapping file: ok, missing, bad (undecodable) and refused images."""
    records = [json.loads(line) for line in fashion_lines[:8]]
    with zipfile.ZipFile(fashion_dir / "images.zip") as z:
        jpeg = {r["id"]: z.read(f"images/{r['id']}.jpg") for r in records[:5]}
    ids = [r["id"] for r in records]
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        z.writestr(f"p/{ids[0]}.jpg", jpeg[ids[0]])
        z.writestr(f"p/{ids[1]}.jpg", jpeg[ids[1]])
        z.writestr(f"p/{ids[2]}.jpg", jpeg[ids[2]][: len(jpeg[ids[2]]) // 4])  # truncated: bad
        z.writestr(f"../{ids[3]}.jpg", jpeg[ids[3]])  # a member named to escape
    image_refs = [f"p/{ids[0]}.jpg", f"p/{ids[1]}.jpg", f"p/{ids[2]}.jpg", f"../{ids[3]}.jpg",
                  "/etc/passwd", f"p/{ids[5]}.jpg", "", "NA"]
    with (tmp_path / "catalog.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sku", "name", "type", "colour", "tags", "photo"])
        for r, ref in zip(records, image_refs):
            writer.writerow([r["id"], r["productDisplayName"], r["articleType"]["typeName"], r["baseColour"],
                             r.get("displayCategories", ""), ref])
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({
        "id": "sku", "title": "name", "category": "type", "absent": ["NA", ""],
        "properties": [{"column": "colour", "as": "baseColour"}, {"column": "tags", "split": ","}],
        "image": {"archive": "photos.zip", "column": "photo"},
    }))
    summary = import_catalog([tmp_path / "catalog.csv"], tmp_path / "mine.yaml", tmp_path / "build")
    assert summary["items"] == 8
    assert summary["images"] == {"ok": 2, "missing": 3, "bad": 1, "refused": 2}
    assert summary["image_reasons"] == {"bad:undecodable": 1, "missing:no_image_reference": 2,
                                        "missing:not_in_archive": 1, "refused:escapes_image_root": 2}
    assert summary["unsafe_archive_members"] == 1
    build = CatalogBuild.open(tmp_path / "build")
    assert build.items["image_status"].tolist() == ["ok", "ok", "bad", "refused", "refused", "missing", "missing", "missing"]
    assert build.has_image.tolist() == [True, True] + [False] * 6
    tags = {build.values[v] for _, p, v in np.asarray(build.triples) if build.properties[p] == "tags"}
    assert tags == {t.strip() for r in records for t in r.get("displayCategories", "").split(",") if t.strip()}


def test_parquet_import_equals_jsonl_import(fashion_lines, fashion_dir, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:200]]
    keep = ["id", "productDisplayName", "articleType", *FLAT]
    table = pa.Table.from_pylist([{k: r[k] for k in keep} for r in records])
    attrs = pa.array([list(r["articleAttributes"].items()) for r in records], pa.map_(pa.string(), pa.string()))
    pq.write_table(table.append_column("articleAttributes", attrs), tmp_path / "styles.parquet")
    config = yaml.safe_load(open(load_mapping("fashion44k").origin))
    config.update(format="parquet")
    parquet_mapping = parse_mapping(config, origin="fashion44k-parquet")
    from_parquet = import_catalog([tmp_path / "styles.parquet"], parquet_mapping, tmp_path / "pq",
                                  images=str(fashion_dir / "images.zip"))
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", tmp_path / "jsonl", limit=200)
    assert from_parquet["triples"] > 2000
    for name in ("triples.npy", "triple_split.npy", "properties.json", "values.json", "images.npy", "items.parquet"):
        assert (tmp_path / "pq" / name).read_bytes() == (tmp_path / "jsonl" / name).read_bytes(), name


def test_limit_spans_sources_and_workers_do_not_change_the_build(fashion_dir, k3m_sample_dir, tmp_path):
    sources = [k3m_sample_dir / "small_train.tsv", k3m_sample_dir / "small_valid.tsv"]
    summary = import_catalog(sources, "k3m-tsv", tmp_path / "k3m", limit=450)
    items = CatalogBuild.open(tmp_path / "k3m").items
    assert summary["rows_read"] == 450 and len(items) == 450
    first_valid = (k3m_sample_dir / "small_valid.tsv").read_text(encoding="utf-8").split("\t")[0]
    assert items["item_id"].iloc[400] == first_valid

    source = [fashion_dir / "styles.jsonl.gz"]
    import_catalog(source, "fashion44k", tmp_path / "inline", limit=260, workers=0)
    import_catalog(source, "fashion44k", tmp_path / "pool", limit=260, workers=2, image_batch=64)
    inline = (tmp_path / "inline" / "images.npy").read_bytes()
    assert (tmp_path / "pool" / "images.npy").read_bytes() == inline
    # a script without a __main__ guard, read from stdin: worker processes must still start
    script = (f"from etl.build import import_catalog\n"
              f"import_catalog([{str(source[0])!r}], 'fashion44k', {str(tmp_path / 'stdin')!r}, limit=260, image_batch=64)\n")
    done = subprocess.run([sys.executable, "-"], input=script, text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "stdin" / "images.npy").read_bytes() == inline


def test_image_size_option(fashion_dir, tmp_path):
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", tmp_path / "b", limit=10, image_size=96)
    build = CatalogBuild.open(tmp_path / "b")
    assert build.images.shape == (10, 96, 96, 3) and build.manifest["image_size"] == 96
    with pytest.raises(ValueError, match="image_size"):
        import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", tmp_path / "c", image_size=4)


def test_a_missing_image_root_is_an_error_not_silence(fashion_lines, tmp_path):
    path = tmp_path / "styles.jsonl"  # fashion44k looks for images.zip next to the source
    path.write_bytes(b"\n".join(fashion_lines[:5]))
    with pytest.raises(ImportFailed, match="images.zip: image root not found"):
        import_catalog([path], "fashion44k", tmp_path / "build")
    assert not (tmp_path / "build").exists()


def test_sharded_image_layout_through_a_sliced_template(fashion_lines, fashion_dir, tmp_path):
    """images/100/10000.jpg (the directory is the id's first characters): no extra column needed."""
    records = [json.loads(line) for line in fashion_lines[:30]]
    with zipfile.ZipFile(fashion_dir / "images.zip") as src, zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        for r in records:
            name = f"images/{r['id']}.jpg"
            if name in src.namelist():
                z.writestr(f"images/{str(r['id'])[:3]}/{r['id']}.jpg", src.read(name))
    (tmp_path / "styles.jsonl").write_bytes(b"\n".join(fashion_lines[:30]))
    config = yaml.safe_load(open(load_mapping("fashion44k").origin))
    config["image"] = {"archive": "photos.zip", "path": "images/{id[:3]}/{id}.jpg"}
    sharded = import_catalog([tmp_path / "styles.jsonl"], parse_mapping(config, origin="sharded"), tmp_path / "sharded")
    flat = import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", tmp_path / "flat", limit=30)
    assert sharded["images"] == flat["images"] and sharded["images"]["ok"] > 25
    assert (tmp_path / "sharded" / "images.npy").read_bytes() == (tmp_path / "flat" / "images.npy").read_bytes()


def test_a_template_field_a_row_lacks_is_a_counted_reason(fashion_lines, fashion_dir, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:10]]
    records[3]["gender"] = "NA"
    del records[5]["gender"]
    with zipfile.ZipFile(fashion_dir / "images.zip") as src, zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        for r in records:
            if f"images/{r['id']}.jpg" in src.namelist():
                z.writestr(f"{r.get('gender')}/{r['id']}.jpg", src.read(f"images/{r['id']}.jpg"))
    (tmp_path / "styles.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    config = yaml.safe_load(open(load_mapping("fashion44k").origin))
    config["image"] = {"archive": "photos.zip", "path": "{gender}/{id}.jpg"}
    summary = import_catalog([tmp_path / "styles.jsonl"], parse_mapping(config, origin="by-gender"), tmp_path / "b")
    assert summary["image_reasons"]["missing:template_field_missing"] == 2
    assert summary["images"]["ok"] == sum(f"images/{r['id']}.jpg" in zipfile.ZipFile(fashion_dir / "images.zip").namelist()
                                          for i, r in enumerate(records) if i not in (3, 5))


def test_a_stray_quote_in_a_csv_loses_nothing(fashion_lines, tmp_path):
    """20 real rows as CSV, one title opening a quote it never closes: every physical line is
    an item or a reject with its raw text, and the rows after it are items again."""
    records = [json.loads(line) for line in fashion_lines[:20]]
    lines = ["sku,name,type,brand"] + [
        ",".join([str(r["id"]), r["productDisplayName"].replace(",", " "), r["articleType"]["typeName"], r["brandName"]])
        for r in records]
    lines[4] = lines[4].replace(",", ',"', 1)
    (tmp_path / "shop.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "shop.yaml").write_text("id: sku\ntitle: name\ncategory: type\nproperties: [brand]\n")
    summary = import_catalog([tmp_path / "shop.csv"], tmp_path / "shop.yaml", tmp_path / "b")
    assert (summary["rows_read"], summary["items"], summary["rejected"]) == (20, 19, {"bad_quoting": 1})
    assert summary["rows_read"] == summary["items"] + summary["rejected_rows"] == len(lines) - 1
    build = CatalogBuild.open(tmp_path / "b")
    assert build.items["item_id"].tolist() == [str(r["id"]) for n, r in enumerate(records) if n != 3]
    assert build.items["title"].tolist()[3] == records[4]["productDisplayName"]  # not swallowed into row 4
    rejects = [json.loads(line) for line in (tmp_path / "b" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["raw"]) for r in rejects] == [(5, lines[4])]


def test_a_huge_csv_field_is_rejected_with_its_raw_text(fashion_lines, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:5]]
    lines = ["sku,name,type"] + [f"{r['id']},{r['productDisplayName']},{r['articleType']['typeName']}" for r in records]
    lines[2] = lines[2].replace(",", "," + "x" * (10 * 2**20), 1)  # a 10 MB title
    (tmp_path / "shop.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "shop.yaml").write_text("id: sku\ntitle: name\ncategory: type\n")
    summary = import_catalog([tmp_path / "shop.csv"], tmp_path / "shop.yaml", tmp_path / "b")
    assert (summary["rows_read"], summary["items"], summary["rejected"]) == (5, 4, {"field_too_large": 1})
    reject = json.loads((tmp_path / "b" / "rejects.jsonl").read_text())
    assert reject["line"] == 3 and reject["raw_truncated"] and reject["raw"] == lines[2][:65536]


def test_parquet_binary_columns_import_as_text(fashion_lines, fashion_dir, tmp_path):
    records = [json.loads(line) for line in fashion_lines[:50]]
    table = pa.table({
        "id": [r["id"] for r in records],
        "productDisplayName": pa.array([r["productDisplayName"].encode() for r in records], pa.binary()),
        "articleType": pa.array([r["articleType"] for r in records]),
        **{k: pa.array([str(r[k]).encode() for r in records], pa.binary()) for k in FLAT},
    })
    pq.write_table(table, tmp_path / "styles.parquet")
    config = yaml.safe_load(open(load_mapping("fashion44k").origin))
    config.update(format="parquet", properties=FLAT)
    summary = import_catalog([tmp_path / "styles.parquet"], parse_mapping(config, origin="binary"), tmp_path / "b",
                             images=str(fashion_dir / "images.zip"))
    build = CatalogBuild.open(tmp_path / "b")
    assert summary["items"] == 50 and not any(v.startswith("b'") for v in build.values)
    assert build.items["title"].tolist() == [r["productDisplayName"] for r in records]
    assert {"Puma", "Nike"} <= set(build.values)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_a_zip_bomb_member_costs_no_memory(fashion_lines, fashion_dir, tmp_path):
    """A real slice whose archive holds one 256 MiB member that deflates to a few hundred KB:
    refused (image_too_large) before a byte of it is read; peak RSS stays far below 300 MB."""
    records = [json.loads(line) for line in fashion_lines[:40]]
    (tmp_path / "styles.jsonl").write_bytes(b"\n".join(fashion_lines[:40]))
    with zipfile.ZipFile(fashion_dir / "images.zip") as src, \
            zipfile.ZipFile(tmp_path / "images.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for r in records[1:]:
            if f"images/{r['id']}.jpg" in src.namelist():
                z.writestr(f"images/{r['id']}.jpg", src.read(f"images/{r['id']}.jpg"))
        with z.open(f"images/{records[0]['id']}.jpg", "w", force_zip64=True) as bomb:
            for _ in range(256):
                bomb.write(bytes(2**20))
    assert (tmp_path / "images.zip").stat().st_size < 2 * 2**20
    script = (
        "import json, resource, sys\n"
        "from etl.build import import_catalog\n"
        f"s = import_catalog([{str(tmp_path / 'styles.jsonl')!r}], 'fashion44k', {str(tmp_path / 'b')!r}, image_batch=8)\n"
        # VmHWM, not RUSAGE_SELF: Linux carries the pytest parent's peak across fork+exec into ru_maxrss
        "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "peak = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # the decoding workers\n"
        "print(json.dumps({'images': s['images'], 'reasons': s['image_reasons'], 'peak_mb': peak / 1024}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["reasons"] == {"refused:image_too_large": 1} and result["images"]["refused"] == 1
    assert result["images"]["ok"] == sum(f"images/{r['id']}.jpg" in zipfile.ZipFile(fashion_dir / "images.zip").namelist()
                                         for r in records[1:])
    assert result["peak_mb"] < 300, result


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")
def test_kill_9_leaves_no_worker_and_the_next_import_removes_the_leftover(fashion_dir, tmp_path):
    out = tmp_path / "build"
    script = (f"from etl.build import import_catalog\n"
              f"import_catalog([{str(fashion_dir / 'styles.jsonl.gz')!r}], 'fashion44k', {str(out)!r}, limit=20000,"
              f" workers=2, image_batch=16)\n")
    importer = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(importer.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(workers) == 2 and importer.poll() is None
    finally:
        importer.kill()
        importer.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{w}").exists() for w in workers), "a decoding worker outlived its killed parent"
    leftover = tmp_path / f".build.partial-{importer.pid}"
    assert leftover.is_dir() and not out.exists()

    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", out, limit=20, workers=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]
