"""The kept path fitted on the real fashion600 slice's frozen features: the statistics are
those of the unit-length pooled features, the map is PCA's (centred, top components), and
a block keeps what a probe needs of its features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from k3m.model import K3MModel
from k3m.training.kept_statistics import fit_kept_features, pooled_frozen_features

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def fitted(frozen_config, frozen_slice_index, slice_build):
    # one thread, as the tests (module fixtures run before the function's single_thread): the
    # slice's knowledge covariance is rank-deficient, and LAPACK at another thread count picks
    # other eigenvectors for its repeated zero eigenvalue
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = K3MModel(frozen_config)
        assert fit_kept_features(model, frozen_slice_index, slice_build.item_indices("train"), seed=0)
    finally:
        torch.set_num_threads(before)
    return model


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("name", ["title", "image", "knowledge"])
def test_the_map_is_pca_of_the_unit_features(fitted, frozen_slice_index, slice_build, name):
    rows = slice_build.item_indices("train")
    x, present = pooled_frozen_features(frozen_slice_index, rows, name)
    x = unit(x[present].astype(np.float64))
    mean = x.mean(0)
    kept = fitted.kept
    np.testing.assert_allclose(getattr(kept, f"{name}_mean").numpy(), mean, atol=1e-6)
    components = getattr(kept, f"{name}_components").numpy().astype(np.float64)
    k = kept.dims[name]
    assert components.shape == (k, x.shape[1])
    np.testing.assert_allclose(components @ components.T, np.eye(k), atol=1e-4)  # orthonormal
    # the variance the components keep is the top-k eigenvalues' sum: nothing keeps more
    centred = x - mean
    captured = np.square(centred @ components.T).sum() / len(x)
    eigen = np.sort(np.linalg.eigvalsh(np.cov(centred.T, bias=True)))[::-1]
    assert captured == pytest.approx(eigen[:k].sum(), rel=1e-4)


def test_a_block_is_the_projection_and_absent_rows_stay_zero(fitted, frozen_slice_index, slice_build):
    rows = slice_build.item_indices("test")[:8]
    x, present = pooled_frozen_features(frozen_slice_index, rows, "image")
    x[1] = 0.0
    block = fitted.kept.block("image", torch.from_numpy(x)).numpy()
    expected = (unit(x.astype(np.float64)) - fitted.kept.image_mean.numpy()) @ fitted.kept.image_components.numpy().T
    np.testing.assert_allclose(block[present & (np.arange(8) != 1)], expected[present & (np.arange(8) != 1)], atol=1e-4)
    assert not block[1].any()


def test_a_fitted_map_is_not_refitted_and_a_resumed_run_keeps_it(fitted, frozen_slice_index, slice_build, tmp_path):
    before = fitted.kept.title_components.clone()
    assert not fit_kept_features(fitted, frozen_slice_index, slice_build.item_indices("valid"), seed=1)
    torch.testing.assert_close(fitted.kept.title_components, before)
    fitted.save_pretrained(tmp_path)
    loaded = K3MModel.from_pretrained(tmp_path)
    assert bool(loaded.kept.fitted)
    torch.testing.assert_close(loaded.kept.title_components, before)


def test_same_data_same_map(frozen_config, frozen_slice_index, slice_build, fitted):
    """A refit of the same data maps the items the same way (components of the covariance's
    null space, where no item has any variance, are arbitrary and carry nothing)."""
    # both fits here, at one thread count: near-equal eigenvalues' vectors may rotate with the
    # LAPACK threads (DDP ranks fit at the same count)
    first, again = K3MModel(frozen_config), K3MModel(frozen_config)
    for model in (first, again):
        fit_kept_features(model, frozen_slice_index, slice_build.item_indices("train"), seed=0)
    for name in ("title", "image", "knowledge"):
        x, present = pooled_frozen_features(frozen_slice_index, slice_build.item_indices("test"), name)
        x = torch.from_numpy(x[present])
        torch.testing.assert_close(again.kept.block(name, x), first.kept.block(name, x), atol=1e-4, rtol=1e-3)
