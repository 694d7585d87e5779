"""A damaged feature cache is never read as features: every table is checked (sizes against
the keys, per-block digests, non-finite rows), the damage is named, and the damaged rows are
dropped and computed again. Each case damages a private copy of the session's cache of the
real fashion44k slice the way a disk, a full filesystem or a stray write would."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from encoders.cache import FeatureCache
from encoders.feature_table import BLOCK_ROWS, MANIFEST, Table, TableDamaged

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def private_cache(frozen_slice_index, tmp_path):
    """(a FeatureCache over a private copy of the session's slice cache, the session's view)."""
    original = frozen_slice_index.features
    root = tmp_path / "features"
    shutil.copytree(original.path, root / original.path.name)
    cache = FeatureCache(original.spec, root)
    assert cache.path == root / original.path.name
    return cache, original


def _overwrite_middle(path, size=4096, seed=0):
    total = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(total // 2)
        f.write(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())


def _truncate(path, fraction=0.5):
    os.truncate(path, int(path.stat().st_size * fraction))


def _encoded(said, what):
    """How many ``what`` the log says were encoded (0 if none)."""
    return sum(int(s.split()[0]) for s in said if s.split()[1:3] == [what, "encoded"])


def _same_features(view, original, build):
    rows = np.arange(build.num_items)
    for r in range(0, build.num_items, 7):
        np.testing.assert_allclose(np.asarray(view.title_tokens(r), np.float32),
                                   np.asarray(original.title_tokens(r), np.float32), atol=2e-2)
    np.testing.assert_allclose(view.image_grid(rows).astype(np.float32), original.image_grid(rows).astype(np.float32),
                               atol=5e-2)
    assert np.isfinite(view.title_vectors(rows)).all()


def test_random_bytes_in_the_title_table_are_named_dropped_and_computed_again(private_cache, slice_build):
    """Was: read silently, NaN vectors downstream (embed wrote 50 of 50 NaN vectors)."""
    cache, original = private_cache
    data = cache.path / "title" / "data.npy"
    _overwrite_middle(data)
    said: list[str] = []
    view = cache.for_build(slice_build, progress=False, log=said.append)
    named = [s for s in said if s.startswith(f"{data}: rows") and "fail their digest" in s]
    assert len(named) == 1, said
    assert 0 < _encoded(said, "titles") <= BLOCK_ROWS and _encoded(said, "images") == 0  # that block only
    _same_features(view, original, slice_build)
    said.clear()
    cache.for_build(slice_build, progress=False, log=said.append)
    assert said == []  # repaired for good


def test_damage_found_on_read_is_refused_in_one_line_and_repaired_by_the_next_run(private_cache, slice_build):
    """A table too large to check at open (verify="lazy") is checked block by block on first
    read: the damaged block is refused naming the file, and the next run drops and recomputes it."""
    from k3m.cli import exit_code_of

    cache, original = private_cache
    data = cache.path / "image" / "data.npy"
    _overwrite_middle(data)
    said: list[str] = []
    view = cache.for_build(slice_build, progress=False, log=said.append, verify="lazy")
    assert said == []  # nothing checked, nothing computed
    assert view.image_grid(np.array([0])).shape[0] == 1  # an intact block reads
    with pytest.raises(TableDamaged) as refused:
        view.image_grid(np.arange(slice_build.num_items))
    message = str(refused.value)
    assert message.startswith(f"{data}: rows") and "\n" not in message and "run the command again" in message
    assert exit_code_of(refused.value) == 2
    view = cache.for_build(slice_build, progress=False, log=said.append, verify="lazy")
    assert any(s.startswith(f"{data}: rows") and "dropped" in s for s in said), said
    assert 0 < _encoded(said, "images") <= BLOCK_ROWS
    _same_features(view, original, slice_build)


def test_a_truncated_image_table_is_cut_at_its_last_whole_block_and_the_rest_computed_again(private_cache, slice_build):
    """Was: `mmap length is greater than file size`, naming no file, on every rerun."""
    cache, original = private_cache
    data = cache.path / "image" / "data.npy"
    rows_before = Table(cache.path / "image").rows
    _truncate(data)
    said: list[str] = []
    view = cache.for_build(slice_build, progress=False, log=said.append)
    assert any(s.startswith(f"{data} holds") for s in said), said
    kept = Table(cache.path / "image").rows - _encoded(said, "images")
    assert kept % BLOCK_ROWS == 0 and 0 < kept < rows_before
    _same_features(view, original, slice_build)


def test_a_truncated_keys_file_is_cut_and_the_rest_computed_again(private_cache, slice_build):
    """Was: `Failed to read all data for array`."""
    cache, original = private_cache
    keys = cache.path / "title" / "keys.npy"
    _truncate(keys, 0.6)
    said: list[str] = []
    view = cache.for_build(slice_build, progress=False, log=said.append)
    assert any(s.startswith(f"{keys} holds") for s in said), said
    assert _encoded(said, "titles") > 0
    _same_features(view, original, slice_build)


@pytest.mark.parametrize("damage", ["junk", "missing"])
def test_a_table_without_a_readable_manifest_is_dropped_and_computed_again(private_cache, slice_build, damage):
    cache, original = private_cache
    manifest = cache.path / "pair" / MANIFEST
    if damage == "junk":
        manifest.write_text('{"rows": 3')
    else:
        manifest.unlink()
    said: list[str] = []
    view = cache.for_build(slice_build, progress=False, log=said.append)
    assert any(s.startswith(str(manifest)) and "dropped" in s for s in said), said
    assert _encoded(said, "pairs") == len(original.pair_codes)
    p, v = (np.asarray(slice_build.triples)[:50, 1:]).T
    np.testing.assert_allclose(view.pair_vectors(p, v).astype(np.float32), original.pair_vectors(p, v).astype(np.float32),
                               atol=2e-2)


def test_non_finite_rows_are_never_written_and_a_stored_one_is_refused_then_recomputed(private_cache, slice_build):
    cache, original = private_cache
    table = Table(cache.path / "pair")
    with pytest.raises(ValueError, match="non-finite"):
        table.append(np.full((1, 16), 9, np.uint8), np.full((1, original.text_dim), np.nan, np.float16))
    # a NaN row whose digest matches (written by an encoder gone wrong, before this check)
    committed = table.committed()
    row = 3
    grid = np.load(cache.path / "pair" / "data.npy", mmap_mode="r+")
    grid[row, 5] = np.nan
    grid.flush()
    del grid
    manifest = json.loads((cache.path / "pair" / MANIFEST).read_text())
    manifest["blocks"][0][1] = table._data_digest(committed.data, None, 0, min(BLOCK_ROWS, committed.rows))
    (cache.path / "pair" / MANIFEST).write_text(json.dumps(manifest))
    view = cache.for_build(slice_build, progress=False, log=lambda s: None, verify="lazy")
    code = int(np.flatnonzero(view.pair_rows == row)[0])
    p, v = view.pair_codes[code] // view.num_values, view.pair_codes[code] % view.num_values
    with pytest.raises(TableDamaged, match=f"row {row} holds NaN"):
        view.pair_vectors(np.array([p]), np.array([v]))
    said: list[str] = []
    view = cache.for_build(slice_build, progress=False, log=said.append, verify="lazy")
    assert _encoded(said, "pairs") > 0
    assert np.isfinite(view.pair_vectors(np.array([p]), np.array([v]))).all()
    np.testing.assert_allclose(view.pair_vectors(np.array([p]), np.array([v])).astype(np.float32),
                               original.pair_vectors(np.array([p]), np.array([v])).astype(np.float32), atol=2e-2)
