"""The stored image size chosen from the catalog's photos (`--image-size auto`, the default),
on three real catalogs: fashion44k's 60x80 photos, homegoods3k's 600-px AVIF/WebP photos
and k3m-sample's remote URLs (no photo at all)."""
from __future__ import annotations

import pytest

from etl.build import import_catalog
from etl.catalog_build import CatalogBuild
from etl.image_size import choose_image_size


@pytest.mark.parametrize("sides, size", [([80] * 5, 96), ([600, 600, 300], 224), ([50, 60], 64), ([1000] * 3, 224),
                                         ([128, 129, 200], 160), ([], 64)])
def test_rule(sides, size):
    assert choose_image_size(sides).size == size


def test_small_photos_are_stored_at_their_size(fashion_slice_build):
    build = CatalogBuild.open(fashion_slice_build)
    assert build.manifest["image_size"] == 96 and build.images.shape[1:] == (96, 96, 3)
    choice = build.manifest["image_size_choice"]
    assert choice["median_longest_side"] == 80 and choice["photos_sampled"] == 64


def test_large_photos_are_stored_at_224(homegoods_dir, tmp_path):
    import_catalog([homegoods_dir / "products.jsonl"], "homegoods3k", tmp_path / "b", limit=30)
    build = CatalogBuild.open(tmp_path / "b")
    assert build.manifest["image_size"] == 224 and build.has_image.sum() == 30
    assert build.manifest["image_size_choice"]["median_longest_side"] >= 300


def test_no_photo_to_read(k3m_sample_build):
    build = CatalogBuild.open(k3m_sample_build)
    assert build.manifest["image_size"] == 64 and build.manifest["image_size_choice"]["photos_sampled"] == 0


def test_a_given_size_is_kept(fashion_dir, tmp_path):
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", tmp_path / "b", limit=5, image_size=64)
    build = CatalogBuild.open(tmp_path / "b")
    assert build.manifest["image_size"] == 64 and "image_size_choice" not in build.manifest
