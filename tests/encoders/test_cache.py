"""The feature cache: frozen encoder outputs computed once per content and encoder, read back
exactly, grown only by what a build adds, never reused across encoders."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from encoders.cache import FeatureCache, FeatureSpec
from encoders.frozen import FrozenImage, FrozenText, text_model_dir
from etl.catalog_build import CatalogBuild

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_build_view_reads_back_what_the_encoders_give(frozen_slice_index, slice_build):
    f = frozen_slice_index.features
    assert f.title_rows.shape == f.image_rows.shape == (slice_build.num_items,)
    assert ((f.image_rows >= 0) == np.asarray(slice_build.has_image)).all()
    rows = [0, 5, 17]
    titles = slice_build.items["title"].to_numpy()[rows].tolist()
    text = FrozenText("minilm")
    for row, tokens in zip(rows, text.tokens(titles, f.spec.max_title_tokens)):
        np.testing.assert_allclose(np.asarray(f.title_tokens(row), np.float32), tokens.astype(np.float32), atol=2e-2)
    image = FrozenImage("lite0", f.spec.image_size)
    grid = image.grid(slice_build.images[rows])
    np.testing.assert_allclose(f.image_grid(np.array(rows)).astype(np.float32), grid.astype(np.float32), atol=5e-2)
    # images go through the network batch_size at a time (memory), with the same result
    in_ones = FrozenImage("lite0", f.spec.image_size, batch_size=1).grid(slice_build.images[rows])
    np.testing.assert_allclose(in_ones.astype(np.float32), grid.astype(np.float32), atol=1e-2)
    p, v = (int(x) for x in np.asarray(slice_build.triples)[0, 1:])
    pair = text.pooled([f"{slice_build.properties[p]} : {slice_build.values[v]}"], f.spec.max_string_tokens)[0]
    np.testing.assert_allclose(f.pair_vectors(np.array([p]), np.array([v]))[0].astype(np.float32), pair, atol=2e-2)
    np.testing.assert_allclose(f.value_vectors[v], text.pooled([slice_build.values[v]], 32)[0], atol=2e-2)
    assert f.title_vectors(np.array([-1])).sum() == 0 and f.image_grid(np.array([-1])).sum() == 0  # absent: zeros


def test_a_grown_build_computes_only_what_is_new(fashion_dir, tmp_path):
    from etl.build import import_catalog

    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", tmp_path / "a", limit=40)
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", tmp_path / "b", limit=60)
    a, b = CatalogBuild.open(tmp_path / "a"), CatalogBuild.open(tmp_path / "b")
    cache = FeatureCache(FeatureSpec(image_size=64), tmp_path / "cache")
    said: list[str] = []
    view_a = cache.for_build(a, progress=False, log=said.append)
    assert [s.split()[1] for s in said] == ["titles", "pairs", "strings", "images"]
    said.clear()
    assert cache.for_build(a, progress=False, log=said.append) and said == []  # nothing twice
    view_b = cache.for_build(b, progress=False, log=said.append)
    titles_b = {t for t in b.items["title"].tolist()[40:]} - set(a.items["title"].tolist())
    assert f"{len(titles_b)} titles" in said[0]
    assert any(s.startswith(f"{int(np.asarray(b.has_image)[40:].sum())} images") for s in said)
    # the first 40 items of b are a's: the same rows, so the same features
    assert (view_b.title_rows[:40] == view_a.title_rows).all() and (view_b.image_rows[:40] == view_a.image_rows).all()
    assert not list((tmp_path / "cache").glob("*/.*partial*"))  # every table swapped in whole


def test_another_encoder_or_setting_is_another_cache(tmp_path):
    base = FeatureSpec()
    assert FeatureSpec(image_size=128).fingerprint() != base.fingerprint()
    assert FeatureSpec(max_title_tokens=24).fingerprint() != base.fingerprint()
    changed = tmp_path / "minilm"
    shutil.copytree(text_model_dir("minilm"), changed)
    assert FeatureSpec(text=str(changed)).fingerprint() == base.fingerprint()  # where it lives does not matter
    with open(changed / "config.json", "a") as handle:
        handle.write("\n")
    assert FeatureSpec(text=str(changed)).fingerprint() != base.fingerprint()  # what it is does
    with pytest.raises(ValueError, match="multiple of 32"):
        FeatureSpec(image_size=100)


def test_a_catalog_without_images_reads_absent_grids(k3m_sample_build, tmp_path):
    """k3m-sample's images are remote URLs, never fetched: no image table is ever written,
    and every grid reads as absent (zeros) instead of failing on the missing table."""
    build = CatalogBuild.open(k3m_sample_build)
    assert not np.asarray(build.has_image).any()
    cache = FeatureCache(FeatureSpec(image_size=64), tmp_path / "cache")
    view = cache.for_build(build, progress=False, rows=np.arange(20))
    assert not (view.path / "image").exists()
    grid = view.image_grid(np.arange(5))
    assert grid.shape == (5, FeatureSpec(image_size=64).num_image_tokens, view.image_dim) and not grid.any()


def test_tables_grow_in_place_and_a_crash_leaves_only_rows_no_manifest_commits(slice_build, tmp_path):
    """An update adds a few rows to tables of a GB: appended in place, the manifest last. Rows a
    crash wrote past the committed ones are never read and are cut off by the next append."""
    from encoders.feature_table import KEY_BYTES, Table, _append_in_place

    pixels = np.asarray(slice_build.images[:12], dtype=np.uint8)  # real rows of real shapes
    keys = np.array([[k + 1] * KEY_BYTES for k in range(12)], np.uint8)
    grid, ragged = Table(tmp_path / "grid"), Table(tmp_path / "ragged", ragged=True)
    grid.append(keys[:5], pixels[:5])
    ragged.append(keys[:5], [pixels[k, :k + 1, 0] for k in range(5)])
    inode = (tmp_path / "grid" / "data.npy").stat().st_ino
    grid.append(keys[5:8], pixels[5:8])
    ragged.append(keys[5:8], [pixels[k, :k + 1, 0] for k in range(5, 8)])
    assert (tmp_path / "grid" / "data.npy").stat().st_ino == inode  # in place, not rewritten
    # a crash after the data was appended and before the manifest was replaced
    assert _append_in_place(tmp_path / "grid" / "data.npy", 8, np.full_like(pixels[8:10], 99))
    grid = Table(tmp_path / "grid")
    assert grid.rows == 8 and grid.rows_of(keys[8:9]).tolist() == [-1] and not grid.inspect("all")
    grid.append(keys[8:12], pixels[8:12])
    ragged.append(keys[8:12], [pixels[k, :k + 1, 0] for k in range(8, 12)])
    assert np.array_equal(grid.array("data"), pixels) and grid.rows_of(keys).tolist() == list(range(12))
    offsets = ragged.array("offsets")
    for k in range(12):
        assert np.array_equal(ragged.array("data")[offsets[k]:offsets[k + 1]], pixels[k, :k + 1, 0])
    assert not grid.inspect("all") and not ragged.inspect("all")


def test_title_vectors_are_the_mean_of_each_titles_tokens(frozen_slice_index, slice_build):
    f = frozen_slice_index.features
    rows = np.array([3, -1, 0, 599, 3, 42])
    expected = np.stack([np.asarray(f.title_tokens(r), np.float32).mean(0) if r >= 0 and len(f.title_tokens(r))
                         else np.zeros(f.text_dim, np.float32) for r in rows])
    np.testing.assert_allclose(f.title_vectors(rows), expected, rtol=1e-5, atol=1e-6)
    assert f.title_vectors(np.array([], np.int64)).shape == (0, f.text_dim)


def test_key_lookup_finds_keys_sharing_their_first_eight_bytes(tmp_path):
    """Lookups search sorted 8-byte prefixes; two keys may share one (p ~ n^2/2^65): the full
    key decides."""
    from encoders.feature_table import Table

    keys = np.zeros((6, 16), np.uint8)
    keys[:, :8] = 7  # one prefix for all
    keys[:, 8:] = np.arange(1, 7)[:, None]
    table = Table(tmp_path / "t")
    table.append(keys[[4, 1, 5, 0]], np.arange(4, dtype=np.float16)[:, None])
    assert table.rows_of(keys).tolist() == [3, 1, -1, -1, 0, 2]
    assert table.rows_of(np.zeros((1, 16), np.uint8)).tolist() == [-1]  # zeros: a dropped row, never a key
