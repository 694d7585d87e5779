"""`k3m import --update`: an updated build equals a fresh import of the new catalog (as strings),
keeps every id of the previous build valid, and says exactly what changed (sync.json).

Real fashion44k rows (fixture ``update_catalogs``): the previous catalog is rows 0-599, the
new one rows 40-639 with 20 titles, 10 colours and 12 images changed."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from etl.build import ImportFailed, import_catalog
from etl.catalog_build import CatalogBuild
from etl.sync import read_sync


@pytest.fixture(scope="module")
def catalogs(update_catalogs):
    return update_catalogs


def _import(catalogs, which: str, out: Path, **kwargs) -> dict:
    root = catalogs[0]
    return import_catalog([root / f"{which}.jsonl"], "fashion44k", out, images=str(root / f"{which}.zip"), workers=0, **kwargs)


@pytest.fixture(scope="module")
def updated(catalogs, tmp_path_factory):
    """(previous build copy, updated build, fresh import of the new catalog)."""
    base = tmp_path_factory.mktemp("sync-builds")
    _import(catalogs, "old", base / "build")
    shutil.copytree(base / "build", base / "previous")
    _import(catalogs, "new", base / "build", update=True)
    _import(catalogs, "new", base / "fresh")
    return CatalogBuild.open(base / "previous"), CatalogBuild.open(base / "build"), CatalogBuild.open(base / "fresh")


def _item_table(build: CatalogBuild) -> dict:
    items = build.items
    columns = ("title", "category", "group", "has_image", "image_status", "image_digest")
    return {row["item_id"]: tuple(row[c] if isinstance(row[c], (str, bool, np.bool_)) else None for c in columns)
            for row in items.to_dict("records")}


def _facts(build: CatalogBuild) -> set:
    ids, props, values = build.items["item_id"].tolist(), build.properties, build.values
    return {(ids[i], props[p], values[v], int(s)) for (i, p, v), s in zip(np.asarray(build.triples).tolist(),
                                                                         np.asarray(build.triple_split).tolist())}


def test_an_updated_build_holds_what_a_fresh_import_of_the_new_catalog_holds(updated):
    _, build, fresh = updated
    assert build.items["item_id"].tolist() == fresh.items["item_id"].tolist()  # the new catalog's order
    assert _item_table(build) == _item_table(fresh)
    assert _facts(build) == _facts(fresh)  # facts and their held-out split, as strings
    assert np.array_equal(np.asarray(build.images), np.asarray(fresh.images))
    assert build.summary["items"] == fresh.summary["items"] and build.summary["triples"] == fresh.summary["triples"]


def test_an_update_keeps_every_id_of_the_previous_build_valid(updated):
    previous, build, fresh = updated
    for name in ("properties", "values", "categories"):
        old, new = getattr(previous, name), getattr(build, name)
        assert new[:len(old)] == old  # nothing renumbered
        assert new[len(old):] == sorted(set(new) - set(old))  # new names appended, sorted
        assert set(getattr(fresh, name)) <= set(new)
    old_split = dict(zip(previous.items["item_id"], previous.items["split"]))
    kept = [(i, s) for i, s in zip(build.items["item_id"], build.items["split"]) if i in old_split]
    assert kept and all(old_split[i] == s for i, s in kept)  # items never change split
    assert build.manifest["seed"] == previous.manifest["seed"] and build.manifest["image_size"] == previous.manifest["image_size"]


def test_sync_json_names_exactly_the_added_removed_and_changed_items(updated, catalogs):
    previous, build, _ = updated
    _, edited, old_ids, new_ids = catalogs
    sync = read_sync(build.path)
    assert sorted(sync["added"]) == sorted(new_ids - old_ids) and sorted(sync["removed"]) == sorted(old_ids - new_ids)
    kept = old_ids & new_ids
    expected = {i for ids in edited.values() for i in ids} & kept
    changed = set(sync["changed"])
    # beyond the edits, only items whose held-out facts moved (the sample is catalog-wide)
    assert expected <= changed and len(changed - expected) <= sync["changed_fields"]["held_out"]
    for field, ids in edited.items():
        assert sync["changed_fields"][field] == len(ids & kept)
    assert sync["counts"] == {"added": len(new_ids - old_ids), "removed": len(old_ids - new_ids),
                              "changed": len(changed), "unchanged": len(kept) - len(changed)}
    assert sync["previous_manifest_sha256"] != sync["manifest_sha256"]
    assert build.summary["update"]["changed"] == len(changed)


def test_an_update_with_the_same_catalog_changes_nothing(catalogs, tmp_path):
    _import(catalogs, "old", tmp_path / "b")
    before = (tmp_path / "b" / "triples.npy").read_bytes()
    summary = _import(catalogs, "old", tmp_path / "b", update=True)
    assert summary["update"]["unchanged"] == summary["items"]
    assert read_sync(tmp_path / "b")["changed"] == [] and (tmp_path / "b" / "triples.npy").read_bytes() == before


def test_unchanged_images_are_copied_from_the_previous_build_and_changed_ones_decoded(catalogs, tmp_path):
    """Rows of the previous image array are marked: an unchanged item's row comes back marked
    (copied, not decoded), a changed image's row does not. Decoding in worker processes too."""
    _, edited, _, _ = catalogs
    _import(catalogs, "old", tmp_path / "b")
    build = CatalogBuild.open(tmp_path / "b")
    ids = build.items["item_id"].tolist()
    images = np.load(tmp_path / "b" / "images.npy", mmap_mode="r+")
    images[:] = 7
    images.flush()
    del images
    root = catalogs[0]
    import_catalog([root / "new.jsonl"], "fashion44k", tmp_path / "b", images=str(root / "new.zip"), update=True,
                   workers=1, image_batch=128)
    after = CatalogBuild.open(tmp_path / "b")
    row_of = {i: r for r, i in enumerate(after.items["item_id"].tolist())}
    pixels = np.asarray(after.images)
    unchanged = [i for i in ids if i in row_of and i not in edited["image"] and after.has_image[row_of[i]]]
    assert unchanged and all((pixels[row_of[i]] == 7).all() for i in unchanged)
    assert all(not (pixels[row_of[i]] == 7).all() for i in edited["image"])


def test_an_update_carries_over_what_later_stages_wrote(catalogs, tmp_path):
    _import(catalogs, "old", tmp_path / "b")
    (tmp_path / "b" / "graph.json").write_text('{"database": "shop"}\n')
    (tmp_path / "b" / "embeddings" / "m1").mkdir(parents=True)
    (tmp_path / "b" / "embeddings" / "m1" / "meta.json").write_text("{}\n")
    summary = _import(catalogs, "new", tmp_path / "b", update=True)
    assert summary["update"]["carried_over"] == ["embeddings", "graph.json"]
    assert json.loads((tmp_path / "b" / "graph.json").read_text()) == {"database": "shop"}
    assert (tmp_path / "b" / "embeddings" / "m1" / "meta.json").read_text() == "{}\n"


def test_update_refuses_what_is_not_a_build_and_settings_it_would_ignore(catalogs, tmp_path):
    with pytest.raises(ImportFailed, match="--update: .*not a catalog build"):
        _import(catalogs, "new", tmp_path / "nothing", update=True)
    _import(catalogs, "old", tmp_path / "b")
    cli = [sys.executable, "-m", "k3m", "import", str(catalogs[0] / "new.jsonl"), "--mapping", "fashion44k",
           "--images", str(catalogs[0] / "new.zip"), "--workers", "0", "--update", str(tmp_path / "b")]
    done = subprocess.run([*cli, "--seed", "3"], capture_output=True, text=True)
    assert done.returncode == 2 and "--update keeps the build's image size and seed" in done.stderr
    done = subprocess.run(cli, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "update: 40 added" in done.stdout and "40 removed" in done.stdout
