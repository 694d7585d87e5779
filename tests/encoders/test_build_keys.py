"""A build's content keys: images by their file's digest at the stored size (the image store
is not read), pixels only for builds without digests; arrays, whatever the build's size."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq

from encoders.build_keys import build_keys, distinct_pairs, image_file_key, image_key, text_key
from etl.catalog_build import CatalogBuild


def test_images_are_keyed_by_their_file_digest_without_reading_the_image_store(slice_build, tmp_path):
    copy = tmp_path / "fashion600"
    shutil.copytree(slice_build.path, copy)
    keys = build_keys(CatalogBuild.open(copy))
    items = slice_build.items
    has = items["has_image"].to_numpy(bool)
    assert (keys.has_image == has).all() and keys.image_keys_from_pixels == 0
    first = int(np.flatnonzero(has)[0])
    shape = slice_build.images.shape[1:]
    assert bytes(keys.image[first]) == image_file_key(items["image_digest"][first], shape)
    # the same file is the same key; the pixels are not read at all
    images = np.load(copy / "images.npy", mmap_mode="r+")
    images[:] = 0
    images.flush()
    del images
    assert np.array_equal(build_keys(CatalogBuild.open(copy)).image, keys.image)
    titled = np.flatnonzero(keys.has_title)
    assert bytes(keys.title[titled[0]]) == text_key("title", items["title"][titled[0]])
    assert not keys.title[~keys.has_title].any() and not keys.image[~keys.has_image].any()
    wanted = np.zeros(len(has), bool)
    wanted[:10] = True
    assert not build_keys(CatalogBuild.open(copy), wanted).has_image[10:].any()


def test_a_build_without_file_digests_is_keyed_by_its_pixels(slice_build, tmp_path):
    copy = tmp_path / "fashion600"
    shutil.copytree(slice_build.path, copy)
    table = pq.read_table(copy / "items.parquet")
    pq.write_table(table.drop_columns(["image_digest"]), copy / "items.parquet")
    keys = build_keys(CatalogBuild.open(copy))
    has = np.asarray(slice_build.has_image)
    assert keys.image_keys_from_pixels == int(has.sum())
    first = int(np.flatnonzero(has)[0])
    assert bytes(keys.image[first]) == image_key(slice_build.images[first])


def test_distinct_pairs_in_chunks_are_numpys_unique_rows(slice_build):
    pairs = np.asarray(slice_build.triples)[:, 1:]
    expected = np.unique(pairs.astype(np.int64), axis=0)
    assert np.array_equal(distinct_pairs(pairs, len(slice_build.values), chunk=997), expected)
