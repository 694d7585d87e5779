"""Corruption plans on the real fashion600 slice: exact ratios, determinism, nesting, and
noise donors that are real other products with the swapped modality present."""
from __future__ import annotations

import numpy as np
import pytest

from etl.catalog_build import CatalogBuild
from k3m.data import CatalogIndex
from k3m.evaluation.corruption import MISSING, SETTINGS, affected_count, plan_corruption, product_keys

RATIOS = (0.0, 0.2, 0.5, 0.8, 1.0)


@pytest.fixture(scope="module")
def items(slice_build):
    index = CatalogIndex.from_build(slice_build)
    rows = slice_build.item_indices("train")
    return {
        "rows": rows,
        "title_present": np.array([index.titles[r] is not None for r in rows]),
        "image_present": index.has_image[rows],
        "product_key": product_keys(slice_build, rows),
    }


def plan(items, setting, ratio, seed=0, tag="test"):
    return plan_corruption(setting, ratio, items["rows"], seed=seed, split_tag=tag, title_present=items["title_present"],
                           image_present=items["image_present"], product_key=items["product_key"])


def test_affected_count_rounds_half_up():
    assert [affected_count(r, 450) for r in RATIOS] == [0, 90, 225, 360, 450]
    assert affected_count(0.5, 83) == 42  # 41.5 rounds up, not to even
    with pytest.raises(ValueError):
        affected_count(1.2, 10)


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("ratio", RATIOS)
def test_exact_ratio_and_the_right_modalities(items, setting, ratio):
    spec = SETTINGS[setting]
    p = plan(items, setting, ratio)
    n = len(items["rows"])
    k = affected_count(ratio, n)
    assert p.affected.sum() == k
    t, i = p.title_changed, p.image_changed
    if spec.target == "title":
        assert t.sum() == k and i.sum() == 0
    elif spec.target == "image":
        assert i.sum() == k and t.sum() == 0
    elif spec.target == "both":
        assert np.array_equal(t, i) and t.sum() == k
    else:  # mixed: one modality per affected item, ceil(k/2) titles
        assert not (t & i).any() and t.sum() == (k + 1) // 2 and i.sum() == k // 2
    changed_sources = np.concatenate([p.title_source[t], p.image_source[i]])
    if spec.kind == "missing":
        assert (changed_sources == MISSING).all()
    else:
        assert (changed_sources >= 0).all()


@pytest.mark.parametrize("setting", ["TNR", "INR", "TINR", "MNR"])
def test_noise_donors_are_other_products_with_the_modality(items, setting):
    p = plan(items, setting, 1.0)
    position = {r: j for j, r in enumerate(items["rows"])}
    for source, changed, present in (
        (p.title_source, p.title_changed, items["title_present"]),
        (p.image_source, p.image_changed, items["image_present"]),
    ):
        for j in np.flatnonzero(changed):
            donor = position[source[j]]  # donors come from the same pool
            assert donor != j
            assert present[donor]
            assert items["product_key"][donor] != items["product_key"][j]


def test_tinr_swaps_title_and_image_from_one_donor(items):
    p = plan(items, "TINR", 0.5)
    assert np.array_equal(p.title_source[p.affected], p.image_source[p.affected])


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_deterministic_seeded_and_nested(items, setting):
    a, b = plan(items, setting, 0.5), plan(items, setting, 0.5)
    assert np.array_equal(a.title_source, b.title_source) and np.array_equal(a.image_source, b.image_source)
    other_seed = plan(items, setting, 0.5, seed=1)
    assert not np.array_equal(a.affected, other_seed.affected)
    other_split = plan(items, setting, 0.5, tag="finetune")
    assert not np.array_equal(a.affected, other_split.affected)
    # the 20% plan is a sub-plan of the 50% plan: same items, same sources
    small = plan(items, setting, 0.2)
    assert not (small.affected & ~a.affected).any()
    hit = small.affected
    assert np.array_equal(small.title_source[hit], a.title_source[hit])
    assert np.array_equal(small.image_source[hit], a.image_source[hit])


def test_unknown_setting_is_refused(items):
    with pytest.raises(ValueError, match="unknown setting"):
        plan(items, "XNR", 0.5)


@pytest.fixture(scope="module")
def text_only_items(k3m_sample_build):
    """k3m-sample: real items none of which has a readable photo."""
    build = CatalogBuild.open(k3m_sample_build)
    index = CatalogIndex.from_build(build)
    rows = build.item_indices("train")
    assert not index.has_image[rows].any()
    return {"rows": rows, "title_present": np.array([index.titles[r] is not None for r in rows]),
            "image_present": index.has_image[rows], "product_key": product_keys(build, rows)}


@pytest.mark.parametrize("setting", ["TNR", "TINR"])
def test_title_noise_on_a_catalog_without_photos(text_only_items, setting):
    p = plan(text_only_items, setting, 1.0)
    assert p.title_changed.all()
    if setting == "TNR":
        assert not p.image_changed.any()
    position = {r: j for j, r in enumerate(text_only_items["rows"])}
    keys = text_only_items["product_key"]
    assert all(keys[position[s]] != keys[j] for j, s in enumerate(p.title_source))


def test_image_noise_without_photos_is_a_clear_error(text_only_items):
    with pytest.raises(ValueError, match="no donor item has the modality"):
        plan(text_only_items, "INR", 0.5)
