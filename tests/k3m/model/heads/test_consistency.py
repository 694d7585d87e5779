"""The consistency head (frozen encoders): pretraining batches say which shown titles and
images are the item's own; the head learns to tell them from another item's on real features;
with ``keep.distrust`` the item vector fills a kept block from c* as far as the head judges
the shown modality another item's."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from k3m.config import ConfigError
from k3m.data import Corruption, K3MCollator, K3MDataset
from k3m.model import K3MModel
from k3m.model.stems import FeatureStem
from k3m.training.kept_statistics import fit_kept_features

pytestmark = pytest.mark.usefixtures("single_thread")


def with_(config, **sections):
    return dataclasses.replace(config, **{name: dataclasses.replace(getattr(config, name), **values)
                                          for name, values in sections.items()})


@pytest.fixture(scope="module")
def distrust_config(frozen_config):
    return with_(frozen_config, loss={"consistency": 1.0}, keep={"distrust": True})


def collate(index, config, rows, targets=False, epoch=0, **corruption):
    c = Corruption.for_items(index.num_items, rows, **corruption) if corruption else None
    dataset = K3MDataset(index, rows, max_pairs=config.text.max_pairs, corruption=c)
    return K3MCollator(dataset, None, config, targets=targets)([dataset[(epoch, int(r))] for r in rows])


def test_pretraining_batches_say_which_title_and_image_are_the_items_own(frozen_config, frozen_slice_index, slice_build):
    rows = slice_build.item_indices("train")[:64]
    hidden = with_(frozen_config, masking={"title_hide_prob": 1.0, "title_swap_prob": 0.0, "image_hide_prob": 0.0,
                                           "image_swap_prob": 0.0, "joint_swap_prob": 0.0})
    targets = collate(frozen_slice_index, hidden, rows, targets=True).targets
    assert not targets.title_own.any()
    assert torch.equal(targets.image_own, targets.image_present)  # every image shown as it is
    swapped = with_(frozen_config, masking={"title_hide_prob": 0.0, "title_swap_prob": 0.0, "image_hide_prob": 0.0,
                                            "image_swap_prob": 0.0, "joint_swap_prob": 1.0})
    batch = collate(frozen_slice_index, swapped, rows, targets=True)
    both = batch.targets.title_present & batch.targets.image_present
    assert both.sum() > 32
    assert not batch.targets.title_own[both].any() and not batch.targets.image_own[both].any()
    # the flag follows what was shown: a title shown as its own has the item's own features
    mixed = collate(frozen_slice_index, frozen_config, rows, targets=True)
    own, shown = mixed.targets.title_own, mixed.title_present
    assert own.any() and (~own & shown).any()
    shown_title = FeatureStem.pooled_features(mixed)["title"][0]
    same = torch.nn.functional.cosine_similarity(shown_title, mixed.targets.title, dim=-1) > 0.9999
    assert torch.equal(same[own], torch.ones(int(own.sum()), dtype=torch.bool))


def test_the_head_learns_to_tell_another_items_title_and_image(distrust_config, frozen_slice_index, slice_build):
    torch.manual_seed(0)
    model = K3MModel(distrust_config)
    rows = slice_build.item_indices("train")[:256]
    fit_kept_features(model, frozen_slice_index, rows, seed=0)
    head = model.heads["consistency"]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(20):
        for part in np.array_split(rows, 8):
            batch = collate(frozen_slice_index, distrust_config, part, targets=True, epoch=epoch)
            loss = model(batch).losses["consistency"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    # items it has not seen, shown with another item's title and image or their own
    test = slice_build.item_indices("test")[:40]
    donors = np.roll(test, 7)
    model.eval()
    with torch.no_grad():
        clean = collate(frozen_slice_index, distrust_config, test)
        noisy = collate(frozen_slice_index, distrust_config, test, title_source=donors, image_source=donors)
        own = {}
        for name, b in (("clean", clean), ("noisy", noisy)):
            out = model.encode(b)
            own[name] = head.own_probability(FeatureStem.pooled_features(b), out.item_repr)
    for modality in ("title", "image"):
        present = clean.title_present if modality == "title" else clean.image_present
        present = present & (noisy.title_present if modality == "title" else noisy.image_present)
        right = own["clean"][modality][present] > own["noisy"][modality][present]
        # ranks its own above another item's: the title at once (its MiniLM cosine with the
        # pairs), the photo from what it learned of 256 items (chance: 0.5)
        assert right.float().mean() > {"title": 0.85, "image": 0.6}[modality], modality


def test_distrust_fills_a_block_from_c_star_as_far_as_the_shown_modality_is_judged_wrong(
        distrust_config, frozen_slice_index, slice_build):
    torch.manual_seed(0)
    model = K3MModel(distrust_config)
    fit_kept_features(model, frozen_slice_index, slice_build.item_indices("train"), seed=0)
    model.eval()
    rows = slice_build.item_indices("test")[:8]
    batch = collate(frozen_slice_index, distrust_config, rows)
    last = model.heads["consistency"].classifier[-1]

    def title_block(bias):
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(bias)
        out = model.encode(batch)
        return out, out.item_vector[:, distrust_config.hidden_size:distrust_config.hidden_size + distrust_config.kept_dims["title"]]

    out, trusted = title_block(50.0)  # judged its own: the shown title's kept block
    shown = FeatureStem.pooled_features(batch)["title"][0]
    expected = torch.nn.functional.normalize(model.kept.block("title", shown), dim=-1)
    torch.testing.assert_close(trusted, expected, atol=1e-5, rtol=0)
    out, distrusted = title_block(-50.0)  # judged another item's: filled from c*, as if absent
    guess = model.heads["mlm_title"].net(out.item_repr)
    expected = torch.nn.functional.normalize(model.kept.block("title", guess), dim=-1)
    torch.testing.assert_close(distrusted, expected, atol=1e-5, rtol=0)


def test_distrust_needs_the_consistency_head(frozen_config):
    with pytest.raises(ConfigError, match="keep.distrust"):
        with_(frozen_config, keep={"distrust": True}, loss={"consistency": 0.0}).validate()
