"""Corruption plans reach the model through the data pipeline's hooks: a title-only model
shown another item's title encodes exactly as that item, a removed title leaves nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def rows(slice_build):
    return slice_build.item_indices("test")[:40]


@pytest.mark.parametrize("setting, switches", [
    ("TNR", {"use_image": False, "use_knowledge": False}),
    ("INR", {"use_title": False, "use_knowledge": False}),
])
def test_noise_shows_the_donor(make_encoder, make_plan, rows, setting, switches):
    enc = make_encoder(**switches)
    p = make_plan(setting, 1.0, rows)
    noisy = enc.encode(rows, p)
    donors = p.title_source if setting == "TNR" else p.image_source
    assert (donors != rows).all()
    torch.testing.assert_close(noisy, enc.encode(donors), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(noisy, enc.encode(rows), atol=1e-3)


def test_missing_title_reaches_the_model_and_ratio_zero_is_clean(make_encoder, make_plan, rows):
    enc = make_encoder()
    clean = enc.encode(rows)
    torch.testing.assert_close(enc.encode(rows, make_plan("TMR", 0.0, rows)), clean)
    p = make_plan("TMR", 0.5, rows)
    half = enc.encode(rows, p)
    hit = torch.from_numpy(p.affected)
    assert torch.allclose(half[~hit], clean[~hit], atol=1e-5)
    assert not torch.isclose(half[hit], clean[hit], atol=1e-4).all(1).any()


def test_pkg_text_keeps_the_knowledge_when_the_title_is_gone(make_encoder, make_plan, rows):
    switches = {"use_knowledge": False, "use_image": False}
    bare, pkg = make_encoder(**switches), make_encoder(True, **switches)
    p = make_plan("TMR", 1.0, rows)
    assert torch.allclose(bare.encode(rows, p)[0], bare.encode(rows, p)[1:])  # nothing left: one constant vector
    with_knowledge = pkg.encode(rows, p)
    assert not torch.allclose(with_knowledge[0], with_knowledge[1:])


def test_lpm_scorer_ranks_values_with_the_model(slice_build, slice_index, make_encoder, rows):
    enc = make_encoder()
    vectors = enc.encode(rows)
    score = enc.lpm_scorer(rows, vectors)
    items, props = rows[:3], np.array([0, 1, 2])
    out = score(items, props)
    assert out.shape == (3, len(slice_build.values))
    values = enc.string_vectors(slice_index.values)
    p = enc.string_vectors(slice_index.properties)[1]
    expected = -torch.linalg.vector_norm(vectors[1] + p - values, dim=-1)
    torch.testing.assert_close(out[1], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError):
        make_encoder(use_knowledge=False).lpm_scorer(rows, vectors)
