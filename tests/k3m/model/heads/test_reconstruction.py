"""The reconstruction heads (frozen encoders): from c*, the item's own title and image
features, scored as 1 − cosine in the raw features' space or, with
``keep.reconstruct_in_block``, in the kept block's space (unit length, centred, projected):
what the item vector fills a missing or distrusted block with."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from k3m.data import K3MCollator, K3MDataset
from k3m.model import K3MModel
from k3m.training.kept_statistics import fit_kept_features

pytestmark = pytest.mark.usefixtures("single_thread")


def with_keep(config, **values):
    return dataclasses.replace(config, keep=dataclasses.replace(config.keep, **values))


def targets_batch(index, config, rows):
    dataset = K3MDataset(index, rows, max_pairs=config.text.max_pairs)
    return K3MCollator(dataset, None, config, targets=True)([dataset[(0, int(r))] for r in rows])


@pytest.mark.parametrize("in_block", [False, True])
def test_the_loss_is_one_minus_the_cosine_in_the_chosen_space(frozen_config, frozen_slice_index, slice_build, in_block):
    config = with_keep(frozen_config, reconstruct_in_block=in_block)
    torch.manual_seed(0)
    model = K3MModel(config)
    fit_kept_features(model, frozen_slice_index, slice_build.item_indices("train"), seed=0)
    model.eval()
    batch = targets_batch(frozen_slice_index, config, slice_build.item_indices("train")[:32])
    with torch.no_grad():
        out = model(batch)
    for modality, task in (("title", "mlm_title"), ("image", "mom")):
        guess = model.heads[task].net(out.item_repr)
        own, present = getattr(batch.targets, modality), getattr(batch.targets, f"{modality}_present")
        if in_block:
            guess, own = model.kept.block(modality, guess), model.kept.block(modality, own)
        expected = (1 - F.cosine_similarity(guess, own, dim=-1))[present].mean()
        torch.testing.assert_close(out.losses[task], expected, atol=1e-5, rtol=0)


def test_the_common_direction_scores_well_only_in_the_raw_space(frozen_config, frozen_slice_index, slice_build):
    """Why the block space: frozen features share a common direction, so guessing it for every
    item already scores well in the raw space, while in the block space, centred, it carries
    nothing of the item."""
    config = with_keep(frozen_config, reconstruct_in_block=True)
    model = K3MModel(config)
    fit_kept_features(model, frozen_slice_index, slice_build.item_indices("train"), seed=0)
    batch = targets_batch(frozen_slice_index, config, slice_build.item_indices("test")[:64])
    for modality in ("title", "image"):
        own = getattr(batch.targets, modality)[getattr(batch.targets, f"{modality}_present")]
        common = getattr(model.kept, f"{modality}_mean").expand_as(own)
        raw = (1 - F.cosine_similarity(common, own, dim=-1)).mean()
        block = (1 - F.cosine_similarity(model.kept.block(modality, common), model.kept.block(modality, own), dim=-1)).mean()
        assert raw < 0.5 and block > 0.95, (modality, float(raw), float(block))
