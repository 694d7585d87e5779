"""The item vector (frozen encoders with a kept path): c*, then the kept title, image and
knowledge blocks, each unit length; an absent title or image filled from c*; the matching
task; and the item vector of a model without a kept path (every checkpoint made before it)
is c* itself. Without ``keep.distrust``: what it adds is tested in heads/test_consistency.py."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from k3m.data import Corruption, K3MCollator, K3MDataset
from k3m.model import K3MModel
from k3m.training.kept_statistics import fit_kept_features

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def kept_config(frozen_config):
    """The cpu preset's kept path, a shown title or image taken as it is."""
    return dataclasses.replace(frozen_config, keep=dataclasses.replace(frozen_config.keep, distrust=False),
                               loss=dataclasses.replace(frozen_config.loss, consistency=0.0))


@pytest.fixture(scope="module")
def model(kept_config, frozen_slice_index, slice_build):
    torch.manual_seed(0)
    m = K3MModel(kept_config)
    fit_kept_features(m, frozen_slice_index, slice_build.item_indices("train"), seed=0)
    return m.eval()


def batch_of(index, config, rows, targets=False, **corruption):
    c = Corruption.for_items(index.num_items, rows, **corruption) if corruption else None
    dataset = K3MDataset(index, rows, max_pairs=config.text.max_pairs, corruption=c)
    return K3MCollator(dataset, None, config, targets=targets)([dataset[int(r)] for r in rows])


def blocks_of(config, vector):
    widths = [config.hidden_size] + [w for w in config.kept_dims.values() if w]
    return torch.split(vector, widths, dim=-1)


def test_layout_and_unit_blocks(model, kept_config, frozen_slice_index, slice_build):
    rows = slice_build.item_indices("test")[:8]
    out = model.encode(batch_of(frozen_slice_index, kept_config, rows))
    assert out.item_vector.shape == (8, kept_config.embedding_size)
    c_star, title, image, knowledge = blocks_of(kept_config, out.item_vector)
    torch.testing.assert_close(c_star, torch.nn.functional.normalize(out.item_repr, dim=-1))
    for block in (title, image, knowledge):
        torch.testing.assert_close(block.norm(dim=-1), torch.ones(8), atol=1e-5, rtol=0)
    # the kept image block is the fitted map of the item's own pooled grid, nothing learned
    grid = torch.from_numpy(frozen_slice_index.features.image_grid(rows).astype(np.float32).mean(1))
    torch.testing.assert_close(image, torch.nn.functional.normalize(model.kept.block("image", grid), dim=-1), atol=1e-5, rtol=0)


def test_an_absent_title_is_filled_from_c_star(model, kept_config, frozen_slice_index, slice_build):
    rows = slice_build.item_indices("test")[:6]
    missing = np.where(np.arange(6) % 2 == 0, -1, rows)
    out = model.encode(batch_of(frozen_slice_index, kept_config, rows, title_source=missing))
    _, title, _, _ = blocks_of(kept_config, out.item_vector)
    predicted = model.heads["mlm_title"].net(out.item_repr)
    expected = torch.nn.functional.normalize(model.kept.block("title", predicted), dim=-1)
    torch.testing.assert_close(title[::2], expected[::2], atol=1e-5, rtol=0)
    assert (title[::2].norm(dim=-1) > 0.99).all()  # filled, not zero
    without = dataclasses.replace(kept_config, keep=dataclasses.replace(kept_config.keep, impute=False))
    plain = K3MModel(without)
    plain.load_state_dict(model.state_dict())
    _, title, _, _ = blocks_of(without, plain.eval().encode(batch_of(frozen_slice_index, without, rows, title_source=missing)).item_vector)
    assert not title[::2].any()


def test_matching_loss_ranks_the_items_own_features(model, kept_config, frozen_slice_index, slice_build):
    rows = slice_build.item_indices("train")[:16]
    model.train()
    losses = model(batch_of(frozen_slice_index, kept_config, rows, targets=True)).losses
    model.eval()
    assert "matching" in losses and torch.isfinite(losses["matching"])
    assert losses["matching"].item() == pytest.approx(np.log(16), rel=0.5)  # untrained: near chance


def test_without_a_kept_path_the_item_vector_is_c_star(kept_config, frozen_slice_index, slice_build):
    config = dataclasses.replace(kept_config, keep=dataclasses.replace(kept_config.keep, title=0, image=0, knowledge=0),
                                 loss=dataclasses.replace(kept_config.loss, matching=0.0))
    assert config.embedding_size == config.hidden_size
    m = K3MModel(config).eval()
    assert m.kept is None and "matching" not in m.heads
    out = m.encode(batch_of(frozen_slice_index, config, slice_build.item_indices("test")[:4]))
    assert out.item_vector is out.item_repr


def test_matching_needs_the_kept_path(kept_config):
    from k3m.config import ConfigError

    with pytest.raises(ConfigError, match="loss.matching"):
        dataclasses.replace(kept_config, keep=dataclasses.replace(kept_config.keep, title=0, image=0, knowledge=0)).validate()
