"""The Ray engine (Ray Data map_batches over an actor pool of encoders) writes the rows the
single-process engine writes, into the same tables. A local Ray of 2 actors, real items."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from encoders.cache import FeatureCache

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_ray_engine_gives_the_rows_of_the_local_engine(frozen_slice_index, slice_build, tmp_path):
    local = frozen_slice_index.features  # the single-process engine's rows (the session cache)
    cache = FeatureCache(local.spec, tmp_path / "ray")
    rows = np.arange(0, slice_build.num_items, 2)  # 300 real items
    said: list[str] = []
    view = cache.for_build(slice_build, rows=rows, progress=False, log=said.append, engine="ray", workers=2)
    assert [s.split()[1] for s in said if " encoded in " in s] == ["titles", "pairs", "strings", "images"]
    assert all("(ray: 2 CPU actors, " in s for s in said if " encoded in " in s)
    assert (view.title_rows[1::2] == -1).all() and (view.image_rows[1::2] == -1).all()
    for r in rows[::5]:
        np.testing.assert_allclose(np.asarray(view.title_tokens(r), np.float32),
                                   np.asarray(local.title_tokens(r), np.float32), atol=1e-2)
    np.testing.assert_allclose(view.title_vectors(rows), local.title_vectors(rows), atol=5e-3)
    np.testing.assert_allclose(view.image_grid(rows).astype(np.float32), local.image_grid(rows).astype(np.float32),
                               atol=5e-2)
    p, v = np.asarray(slice_build.triples)[:, 1:].T
    np.testing.assert_allclose(view.pair_vectors(p, v).astype(np.float32), local.pair_vectors(p, v).astype(np.float32),
                               atol=1e-2)
    np.testing.assert_allclose(view.property_vectors, local.property_vectors, atol=1e-2)
    np.testing.assert_allclose(view.value_vectors, local.value_vectors, atol=1e-2)
    # the same table format: the local engine finds nothing to add, and the tables check out
    said.clear()
    cache.for_build(slice_build, rows=rows, progress=False, log=said.append, verify="full")
    assert said == []


def test_ray_is_imported_only_when_asked_for():
    code = ("import sys, encoders.cache, encoders.feature_job, k3m.training.cli\n"
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
