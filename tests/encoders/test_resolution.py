"""The feature resolution chosen for a catalog and a machine (``image.image_size: 0``), on the
real fashion600 slice: measured, within the budget, recorded in the build and reused; and
the grid of a large resolution pooled to the cached 3 x 3."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encoders.frozen import FrozenImage
from encoders.resolution import CHOICE_FILE, choose_resolution, resolution_for_build
from etl.catalog_build import CatalogBuild

pytestmark = pytest.mark.usefixtures("single_thread")


def test_a_gpu_takes_224_and_a_cpu_what_fits_the_budget(slice_build):
    assert choose_resolution(slice_build, 15.0, device="cuda").size == 224
    roomy = choose_resolution(slice_build, 1e6)
    assert roomy.size == 224 and 224 in roomy.rates and "within" in roomy.reason
    tight = choose_resolution(slice_build, 1e-6)
    assert tight.size == 96 and "over the" in tight.reason
    assert set(tight.rates) == {224, 192, 160, 128, 96}
    assert tight.rates[96] > tight.rates[224]  # the cost grows with the side


def test_the_choice_is_recorded_in_the_build_and_reused(slice_view, capsys):
    build = CatalogBuild.open(slice_view("resolution"))
    first = resolution_for_build(build, 1e6)
    saved = json.loads((build.path / CHOICE_FILE).read_text())
    assert saved["image_size"] == first.size == 224 and saved["key"]["images"] == int(build.has_image.sum())
    again = resolution_for_build(build, 1e6)
    assert again.size == first.size and "chosen before" in again.reason
    assert resolution_for_build(build, 1e-6).size == 96  # another budget: chosen again


def test_a_larger_map_is_pooled_to_the_cached_grid(slice_build):
    images = np.asarray(slice_build.images[:4])
    pooled = FrozenImage("lite0", 224, cells=3).grid(images)
    full = FrozenImage("lite0", 224, cells=7).grid(images)
    assert pooled.shape == (4, 9, 1280) and full.shape == (4, 49, 1280)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(full.astype(np.float32)).transpose(1, 2).reshape(4, 1280, 7, 7), 3)
    np.testing.assert_allclose(pooled.astype(np.float32), expected.flatten(2).transpose(1, 2).numpy(), atol=2e-2, rtol=1e-2)
    small = FrozenImage("lite0", 96).grid(images)  # 3 x 3 already: nothing pooled
    assert small.shape == (4, 9, 1280)


def test_pretraining_resolves_the_config_once(slice_view, frozen_config):
    import dataclasses

    from k3m.data.index import feature_spec
    from k3m.training.prepare import resolve_feature_resolution

    build = CatalogBuild.open(slice_view("resolve"))
    auto = dataclasses.replace(frozen_config, image=dataclasses.replace(frozen_config.image, image_size=0,
                                                                          feature_budget_minutes=1e6))
    with pytest.raises(ValueError, match="never resolved"):
        feature_spec(auto)
    resolved = resolve_feature_resolution(auto, build)
    assert resolved.image.image_size == 224 and resolved.num_visual_tokens == 9
    assert feature_spec(resolved).image_size == 224
    assert resolve_feature_resolution(frozen_config, build) is frozen_config  # a given size stays
