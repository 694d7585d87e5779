"""The shared collation (K3MCollator) on the real fashion600 slice: the batch star graph, LPM
targets, labels, the corruption hooks, loader determinism; the same contract in both
encoder modes."""
import dataclasses

import numpy as np
import pytest
import torch

from k3m.model import MENTIONED_BY, MENTIONS, VALUE_MENTION, FeatureInputs, K3MBatch, TokenInputs
from k3m.data import ADAPTERS, Corruption, EpochBatchSampler, FeatureAdapter, K3MCollator, K3MDataset, TokenAdapter, make_loader


def make(index, tokenizer, config, rows, targets=True, **kwargs):
    dataset = K3MDataset(index, rows, max_pairs=config.text.max_pairs, seed=7, **kwargs)
    return dataset, K3MCollator(dataset, tokenizer, config, targets=targets)


def collate(dataset, collator, rows, epoch=0):
    return collator([dataset[(epoch, int(r))] for r in rows])


def tensors(value, prefix=""):
    """Every tensor of a batch by its dotted name (the graph by its pairs)."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from tensors(getattr(value, f.name), f"{prefix}{f.name}.")
    if isinstance(value, K3MBatch):
        yield "pair_value", value.pair_value


@pytest.fixture(params=["trainable", "frozen"])
def mode(request, slice_index, slice_tokenizer, tiny_config, frozen_slice_index, frozen_config):
    """(index, tokenizer, config) of each encoder mode."""
    if request.param == "trainable":
        return slice_index, slice_tokenizer, tiny_config
    return frozen_slice_index, None, frozen_config


def test_the_adapter_follows_the_encoder_mode(mode, slice_build):
    index, tokenizer, config = mode
    rows = slice_build.item_indices("train")[:4]
    dataset, collator = make(index, tokenizer, config, rows)
    assert type(collator.adapter) is ADAPTERS[config.encoders]
    assert isinstance(collator.adapter, FeatureAdapter if config.frozen else TokenAdapter)
    assert isinstance(collate(dataset, collator, rows).inputs, FeatureInputs if config.frozen else TokenInputs)


def test_batch_contract(mode, slice_build):
    index, tokenizer, config = mode
    rows = slice_build.item_indices("train")[:24]
    dataset, collator = make(index, tokenizer, config, rows, pair_order="shuffle")
    b = collate(dataset, collator, rows)
    B, P = 24, b.pair_item.numel()
    assert isinstance(b, K3MBatch) and b.batch_size == B and (b.item_index.numpy() == rows).all()
    assert (b.category.numpy() == slice_build.items["category_index"].to_numpy()[rows]).all()
    if not config.frozen:  # (frozen encoders' pretraining hides and masks whole modalities and pairs)
        assert b.title_present.all() and b.knowledge_present.all() and b.image_present.all()

    # pairs: at most max_pairs per item, true train triples; an item has knowledge iff it has pairs
    counts = torch.bincount(b.pair_item, minlength=B)
    assert counts.max() <= config.text.max_pairs and torch.equal(counts > 0, b.knowledge_present)
    codes = set(map(tuple, slice_build.train_triples().tolist()))
    assert all((int(rows[i]), int(p), int(v)) in codes for i, p, v in zip(b.pair_item, b.pair_property, b.pair_value))

    # graph: the one place the pairs live; edge j is pair j, one value-mention node per pair
    g = b.graph
    assert set(g.node_types) == {"item", VALUE_MENTION} and set(g.edge_types) == {MENTIONS, MENTIONED_BY}
    assert g["item"].num_nodes == B and (g["item"].item_index == b.item_index).all()
    src, dst = g[MENTIONS].edge_index
    assert g[VALUE_MENTION].num_nodes == P and torch.equal(dst, torch.arange(P)) and torch.equal(src, g[VALUE_MENTION].item)
    assert torch.equal(g[MENTIONED_BY].edge_index, g[MENTIONS].edge_index.flip(0))
    assert torch.equal(g[MENTIONED_BY].edge_attr, g[MENTIONS].edge_attr)

    # LPM: positives = the graph's pairs, then the masked ones; K (+ R) negatives each; the
    # tables cover every id
    lpm, K = b.lpm, config.lpm.num_negatives
    masked = b.targets.masked if config.frozen else None
    Q = P + (len(masked) if masked is not None else 0)
    assert lpm.neg_value.shape == (Q, K + config.lpm.random_negatives) and lpm.neg_item.shape == (Q, K)
    assert torch.equal(lpm.positives.item[:P], b.pair_item) and torch.equal(lpm.positives.value[:P], b.pair_value)
    assert torch.isin(torch.cat([lpm.positives.value, lpm.neg_value[lpm.neg_value >= 0]]), lpm.value_ids).all()
    assert torch.equal(lpm.property_ids, torch.unique(lpm.positives.property))
    # negatives are false triples of the item (value corruption) or of another item (item corruption)
    item_rows = rows[lpm.positives.item.numpy()]
    for k in range(K):
        assert not any((int(r), int(p), int(v)) in codes for r, p, v in zip(item_rows, lpm.positives.property, lpm.neg_value[:, k]))
        other = lpm.neg_item[:, k]
        ok = other >= 0
        assert (other[ok] != lpm.positives.item[ok]).all()
        assert not any((int(rows[o]), int(p), int(v)) in codes
                       for o, p, v in zip(other[ok], lpm.positives.property[ok], lpm.positives.value[ok]))


def test_corruption_hooks(mode, slice_build):
    index, tokenizer, config = mode
    rows = slice_build.item_indices("valid")[:6]
    clean_set, clean = make(index, tokenizer, config, rows, targets=False)
    ref = collate(clean_set, clean, rows)
    donors = rows[::-1]
    corruption = Corruption.for_items(
        slice_build.num_items, rows,
        title_source=[donors[0], -1, rows[2], donors[3], -1, rows[5]],
        image_source=[-1, donors[1], rows[2], -1, donors[4], rows[5]],
        knowledge_present=[True, True, False, True, True, False],
    )
    dataset, collator = make(index, tokenizer, config, rows, targets=False, corruption=corruption)
    b = collate(dataset, collator, rows)
    assert b.title_present.tolist() == [True, False, True, True, False, True]
    assert b.image_present.tolist() == [False, True, True, False, True, True]
    assert b.knowledge_present.tolist() == [True, True, False, True, True, False]
    assert not (b.pair_item == 2).any() and not (b.pair_item == 5).any()
    assert b.category.tolist() == ref.category.tolist()  # labels stay the item's own
    if config.frozen:
        title, title_mask, ref_title = b.inputs.title, b.inputs.title_mask, ref.inputs.title
        image, ref_image, knowledge_mask = b.inputs.image, ref.inputs.image, b.inputs.knowledge_mask
    else:
        title, title_mask, ref_title = b.inputs.title.input_ids, b.inputs.title.attention_mask, ref.inputs.title.input_ids
        image, ref_image, knowledge_mask = b.inputs.image.pixels, ref.inputs.image.pixels, b.inputs.knowledge.attention_mask
    assert not title_mask[1].any() and not title_mask[4].any()
    n = int(title_mask[0].sum())
    assert torch.equal(title[0][:n], ref_title[5][:n])  # donors[0] == rows[5]
    assert torch.equal(image[1], ref_image[4])  # donors[1] == rows[4]
    assert not knowledge_mask[2].any()


def test_image_missing_catalog(k3m_sample_build, slice_tokenizer, tiny_config):
    """k3m-sample: every image is missing (remote URLs only) — a real modality-missing case."""
    from etl.catalog_build import CatalogBuild
    from k3m.data import CatalogIndex

    build = CatalogBuild.open(k3m_sample_build)
    index = CatalogIndex.from_build(build)
    rows = build.item_indices("train")[:16]
    dataset, collator = make(index, slice_tokenizer, tiny_config, rows)
    b = collate(dataset, collator, rows)
    assert not b.image_present.any() and not b.targets.visual_mask.any() and not b.inputs.image.pixels.any()
    assert b.knowledge_present.all() and b.title_present.all()
    assert b.lpm.neg_value.shape[0] == b.pair_item.numel() > 16


def test_loader_batches_do_not_depend_on_workers(mode, slice_build):
    index, tokenizer, config = mode
    rows = slice_build.item_indices("train")[:96]
    dataset, collator = make(index, tokenizer, config, rows, pair_order="shuffle")
    batches = {}
    for n in (0, 2):
        sampler = EpochBatchSampler(dataset, 16, seed=3)
        sampler.set_epoch(1, start_batch=2)
        batches[n] = list(make_loader(dataset, collator, sampler, num_workers=n))
    assert len(batches[0]) == 4
    for a, b in zip(batches[0], batches[2]):
        named_a, named_b = dict(tensors(a)), dict(tensors(b))
        assert set(named_a) == set(named_b) and len(named_a) > 10
        for name, x in named_a.items():
            assert torch.equal(x, named_b[name]), name


def test_to_moves_every_tensor(mode, slice_build):
    index, tokenizer, config = mode
    rows = slice_build.item_indices("train")[:4]
    dataset, collator = make(index, tokenizer, config, rows)
    b = collate(dataset, collator, rows)
    moved = b.to(torch.device("cpu"))
    assert type(moved.inputs) is type(b.inputs) and type(moved.targets) is type(b.targets)
    assert [name for name, _ in tensors(moved)] == [name for name, _ in tensors(b)]
    assert np.array_equal(moved.graph[MENTIONS].edge_index.numpy(), b.graph[MENTIONS].edge_index.numpy())
