"""FeatureAdapter (frozen encoders) through the collator on the real fashion600 slice: cached
features in, masking at the level of whole modalities and whole pairs, every draw keyed by
(seed, epoch, item)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from k3m.data import Corruption, K3MCollator, K3MDataset
from k3m.model import MENTIONS, VALUE_MENTION, FeatureInputs, FeatureTargets


def make(index, config, rows, targets=True, epoch=0, **kwargs):
    dataset = K3MDataset(index, rows, max_pairs=config.text.max_pairs, seed=3, pair_order="shuffle", **kwargs)
    return K3MCollator(dataset, None, config, targets=targets)([dataset[(epoch, int(r))] for r in rows]), dataset


def test_batch_contract(frozen_slice_index, frozen_config, slice_build):
    f = frozen_slice_index.features
    rows = slice_build.item_indices("train")[:24]
    b, dataset = make(frozen_slice_index, frozen_config, rows)
    assert isinstance(b.inputs, FeatureInputs) and isinstance(b.targets, FeatureTargets)
    assert b.inputs.title.shape[:2] == b.inputs.title_mask.shape and b.inputs.title.shape[2] == 384
    assert b.inputs.image.shape == (24, frozen_config.num_visual_tokens, 1280)
    # each item's pairs are split into kept (stream + graph) and masked (targets), nothing else
    g, kept = b.graph, {}
    for i, p, v in zip(b.pair_item.tolist(), b.pair_property.tolist(), b.pair_value.tolist()):
        kept.setdefault(i, []).append((p, v))
    masked = {}
    for i, p, v in zip(b.targets.masked.item.tolist(), b.targets.masked.property.tolist(), b.targets.masked.value.tolist()):
        masked.setdefault(i, []).append((p, v))
    for i, row in enumerate(rows):
        pairs = sorted(map(tuple, dataset[(0, int(row))].pairs.tolist()))
        assert sorted(kept.get(i, []) + masked.get(i, [])) == pairs
        assert not set(kept.get(i, [])) & set(masked.get(i, []))
        if len(pairs) >= 2:
            assert masked.get(i)  # at least one masked pair
    # the stream holds the kept pairs' vectors, one token each, at the value nodes' spans
    spans = g[VALUE_MENTION].span
    assert torch.equal(spans[:, 1] - spans[:, 0], torch.ones(len(spans), dtype=torch.long))
    vectors = f.pair_vectors(b.pair_property.numpy(), b.pair_value.numpy())
    np.testing.assert_allclose(b.inputs.knowledge[g[VALUE_MENTION].item, spans[:, 0]].numpy(), vectors.astype(np.float32))
    assert b.inputs.knowledge_mask.sum() == len(spans)
    # property vectors for every edge and masked pair; LPM positives = kept then masked
    assert torch.isin(torch.cat([g[MENTIONS].edge_attr, b.targets.masked.property]), b.inputs.property_ids).all()
    np.testing.assert_array_equal(b.inputs.property_features.numpy(), f.property_vectors[b.inputs.property_ids.numpy()])
    assert torch.equal(b.inputs.property_ids, b.lpm.property_ids)
    positives = b.lpm.positives
    assert len(positives) == len(b.pair_item) + len(b.targets.masked) == b.lpm.neg_value.shape[0]
    assert torch.equal(positives.property[len(b.pair_item):], b.targets.masked.property)
    assert b.lpm.neg_value.shape[1] == frozen_config.lpm.num_negatives + frozen_config.lpm.random_negatives
    np.testing.assert_array_equal(b.inputs.value_features.numpy(), f.value_vectors[b.lpm.value_ids.numpy()])
    # targets: the own title's mean token and the own image's mean cell
    np.testing.assert_allclose(b.targets.title.numpy(), f.title_vectors(rows))
    np.testing.assert_allclose(b.targets.image.numpy(), f.image_grid(rows).astype(np.float32).mean(1), rtol=1e-6)


def test_hidden_or_swapped_modalities_keep_their_own_targets(frozen_slice_index, frozen_config, slice_build):
    f = frozen_slice_index.features
    rows = slice_build.item_indices("train")[:16]
    hide = replace(frozen_config, masking=replace(frozen_config.masking, title_hide_prob=1.0, image_hide_prob=1.0, title_swap_prob=0.0, image_swap_prob=0.0, joint_swap_prob=0.0))
    b, _ = make(frozen_slice_index, hide, rows)
    assert not b.title_present.any() and not b.image_present.any()
    assert b.targets.title_present.all() and b.targets.image_present.all()
    swap = replace(frozen_config, masking=replace(frozen_config.masking, title_hide_prob=0.0, image_hide_prob=0.0, title_swap_prob=1.0, image_swap_prob=1.0, joint_swap_prob=0.0))
    b, _ = make(frozen_slice_index, swap, rows)
    assert b.title_present.all() and b.image_present.all()
    own = torch.from_numpy(f.title_vectors(rows))
    shown = (b.inputs.title * b.inputs.title_mask[..., None]).sum(1) / b.inputs.title_mask.sum(1, keepdim=True)
    assert not torch.allclose(shown, own, atol=1e-3)  # another item's title ...
    torch.testing.assert_close(b.targets.title, own)  # ... the own one to reconstruct
    # a joint swap shows one other item's title and image together (a listing with another product's page)
    joint = replace(frozen_config, masking=replace(frozen_config.masking, joint_swap_prob=1.0))
    b, _ = make(frozen_slice_index, joint, rows)
    shown = (b.inputs.title * b.inputs.title_mask[..., None]).sum(1) / b.inputs.title_mask.sum(1, keepdim=True)
    grids = {int(r): torch.from_numpy(f.image_grid(np.array([r])).astype(np.float32)[0]) for r in slice_build.item_indices("train")}
    titles = {int(r): torch.from_numpy(f.title_vectors(np.array([r]))[0]) for r in slice_build.item_indices("train")}
    for n in range(len(rows)):
        donor = [r for r, g in grids.items() if torch.equal(g, b.inputs.image[n])]
        assert donor and donor[0] != rows[n]
        assert torch.allclose(shown[n], titles[donor[0]], atol=1e-3)
    clean, _ = make(frozen_slice_index, frozen_config, rows, targets=False)
    assert clean.targets is None and clean.lpm is None and clean.inputs.value_features is None
    shown = (clean.inputs.title * clean.inputs.title_mask[..., None]).sum(1) / clean.inputs.title_mask.sum(1, keepdim=True)
    torch.testing.assert_close(shown, own, atol=1e-3, rtol=1e-3)


def test_draws_depend_on_item_and_epoch_not_on_the_batch(frozen_slice_index, frozen_config, slice_build):
    rows = slice_build.item_indices("train")[:16]
    a, _ = make(frozen_slice_index, frozen_config, rows)
    b, _ = make(frozen_slice_index, frozen_config, rows[::-1][:8])  # the last 8, reversed, in another batch

    def masked_of(batch, batch_rows):
        out = {}
        for i, p, v in zip(batch.targets.masked.item.tolist(), batch.targets.masked.property.tolist(), batch.targets.masked.value.tolist()):
            out.setdefault(int(batch_rows[i]), set()).add((p, v))
        return out

    ma, mb = masked_of(a, rows), masked_of(b, rows[::-1][:8])
    assert all(ma.get(r) == mb.get(r) for r in rows[8:])
    assert torch.equal(a.title_present[8:].flip(0), b.title_present)
    c, _ = make(frozen_slice_index, frozen_config, rows, epoch=1)
    assert masked_of(c, rows) != ma  # another epoch, other masks


def test_pkg_as_text_puts_the_pairs_in_the_title_stream(frozen_slice_index, frozen_config, slice_build):
    f = frozen_slice_index.features
    rows = slice_build.item_indices("train")[:8]
    config = replace(frozen_config, use_knowledge=False)
    plain, _ = make(frozen_slice_index, config, rows, targets=False)
    pkg, dataset = make(frozen_slice_index, config, rows, targets=False, use_knowledge=False,
                        corruption=Corruption(knowledge_as_title_text=True))
    record = dataset[(0, int(rows[0]))]
    n_title, n_pairs = int(plain.inputs.title_mask[0].sum()), len(record.title_pairs)
    assert n_pairs > 0 and int(pkg.inputs.title_mask[0].sum()) == n_title + n_pairs
    np.testing.assert_allclose(pkg.inputs.title[0, n_title:n_title + n_pairs].numpy(),
                               f.pair_vectors(record.title_pairs[:, 0], record.title_pairs[:, 1]).astype(np.float32))
    assert pkg.inputs.knowledge_mask.sum() == 0 and pkg.pair_item.numel() == 0
