import numpy as np
import torch

from k3m.model import K3MBatch
from k3m.data import Corruption, EpochBatchSampler, K3MCollator, K3MDataset, make_loader
from k3m.data.masking import IGNORE
from kg.hetero import HAS, REV_HAS


def make(index, tokenizer, config, rows, targets=True, **kwargs):
    dataset = K3MDataset(index, rows, max_pairs=config.text.max_pairs, seed=7, **kwargs)
    return dataset, K3MCollator(dataset, tokenizer, config, targets=targets)


def collate(dataset, collator, rows, epoch=0):
    return collator([dataset[(epoch, int(r))] for r in rows])


def test_batch_contract(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("train")[:24]
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, pair_order="shuffle")
    b = collate(dataset, collator, rows)
    B, P, K = 24, b.pair_item.numel(), tiny_config.lpm.num_negatives
    assert isinstance(b, K3MBatch) and b.batch_size == B and (b.item_index.numpy() == rows).all()
    assert b.title_present.all() and b.knowledge_present.all() and b.image_present.all()
    assert b.title_input_ids.shape[1] <= tiny_config.text.max_title_tokens
    assert b.knowledge_input_ids.shape[1] <= tiny_config.text.max_knowledge_tokens
    assert b.image_pixels.dtype == torch.uint8 and b.image_pixels.shape == (B, 3, 64, 64)
    assert (b.image_pixels.permute(0, 2, 3, 1).numpy() == slice_build.images[rows]).all()
    assert b.image_token_mask.shape == (B, tiny_config.num_visual_tokens)
    assert (b.image_token_mask.sum(1) == round(0.15 * tiny_config.num_visual_tokens)).all()
    assert (b.category.numpy() == slice_build.items["category_index"].to_numpy()[rows]).all()

    # pairs: at most max_pairs per item, true train triples, spans inside the real tokens
    counts = torch.bincount(b.pair_item, minlength=B)
    assert 0 < counts.min() and counts.max() <= tiny_config.text.max_pairs
    codes = set(map(tuple, slice_build.train_triples().tolist()))
    assert all((int(rows[i]), int(p), int(v)) in codes for i, p, v in zip(b.pair_item, b.pair_property, b.pair_value))
    for spans in (b.pair_property_span, b.pair_value_span):
        assert (spans[:, 0] < spans[:, 1]).all()
        assert b.knowledge_attention_mask[b.pair_item, spans[:, 1] - 1].all()
    # knowledge MLM targets lie inside value spans only; title targets never on specials
    in_value = torch.zeros_like(b.knowledge_attention_mask)
    for i, (a, z) in zip(b.pair_item, b.pair_value_span):
        in_value[i, a:z] = True
    targets = b.knowledge_mlm_labels != IGNORE
    assert targets.any(1).all() and not (targets & ~in_value).any()
    special = torch.isin(b.title_input_ids, torch.tensor(slice_tokenizer.all_special_ids))
    title_targets = b.title_mlm_labels != IGNORE
    assert title_targets.any(1).all() and not (title_targets & ~b.title_attention_mask).any()
    assert not (special & title_targets & (b.title_input_ids != slice_tokenizer.mask_token_id)).any()

    # graph: the one place the pairs live; edge j is pair j, one value node (mention) per pair,
    # and its spans hold the property's and the (unmasked) value's tokens
    g = b.graph
    assert g["item"].num_nodes == B and (g["item"].item_index == b.item_index).all()
    src, dst = g[HAS].edge_index
    assert g["value"].num_nodes == P and torch.equal(dst, torch.arange(P))
    assert torch.equal(g[REV_HAS].edge_index, g[HAS].edge_index.flip(0)) and torch.equal(g[REV_HAS].edge_attr, g[HAS].edge_attr)
    original = torch.where(b.knowledge_mlm_labels != IGNORE, b.knowledge_mlm_labels, b.knowledge_input_ids)

    def tokens(text):
        return slice_tokenizer(text, add_special_tokens=False)["input_ids"]

    for j in range(P):
        (a, z), (c, d) = g[HAS].property_span[j].tolist(), g["value"].span[j].tolist()
        assert original[src[j], a:z].tolist() == tokens(slice_index.properties[int(g[HAS].edge_attr[j])])
        assert original[src[j], c:d].tolist() == tokens(slice_index.values[int(g["value"].value_id[j])])

    # LPM: K negatives per pair, string tables cover every id
    assert b.lpm_neg_value.shape == b.lpm_neg_item.shape == (P, K)
    assert torch.isin(torch.cat([b.pair_value, b.lpm_neg_value.flatten()]), b.lpm_value_ids).all()
    assert torch.isin(b.pair_property, b.lpm_property_ids).all()
    assert b.lpm_value_input_ids.shape[0] == b.lpm_value_ids.numel()
    assert b.lpm_value_attention_mask[:, 0].all() and b.lpm_property_attention_mask[:, 0].all()
    v = int(b.lpm_value_ids[3])
    row = b.lpm_value_input_ids[3][b.lpm_value_attention_mask[3]].tolist()
    assert row == slice_tokenizer(slice_index.values[v])["input_ids"]


def test_masks_depend_on_item_and_epoch_not_on_batch(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("train")[:16]
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, pair_order="shuffle")
    a = collate(dataset, collator, rows)
    b = collate(dataset, collator, rows[::-1][:8])  # the last 8 rows, reversed, in another batch
    for pos_b, row in enumerate(rows[::-1][:8]):
        pos_a = int(np.flatnonzero(rows == row)[0])
        for field in ("title_input_ids", "title_mlm_labels", "knowledge_input_ids", "knowledge_mlm_labels"):
            x, y = getattr(a, field)[pos_a], getattr(b, field)[pos_b]
            n = min(len(x), len(y))
            assert (x[:n] == y[:n]).all(), field
        assert (a.image_token_mask[pos_a] == b.image_token_mask[pos_b]).all()
        assert (a.pair_value[a.pair_item == pos_a] == b.pair_value[b.pair_item == pos_b]).all()
    c = collate(dataset, collator, rows, epoch=1)
    assert not torch.equal(a.title_mlm_labels, c.title_mlm_labels[:, : a.title_mlm_labels.shape[1]])
    assert not torch.equal(a.image_token_mask, c.image_token_mask)


def test_without_targets_nothing_is_masked(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("test")[:8]
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, targets=False)
    b = collate(dataset, collator, rows)
    assert (b.title_mlm_labels == IGNORE).all() and (b.knowledge_mlm_labels == IGNORE).all()
    assert not b.image_token_mask.any() and b.lpm_neg_value is None
    assert not (b.title_input_ids == slice_tokenizer.mask_token_id).any()
    # build pair order: the first pairs of the item, as stored
    first = int(rows[0])
    assert (b.pair_value[b.pair_item == 0].numpy() == slice_index.pairs(first)[: tiny_config.text.max_pairs, 1][: int((b.pair_item == 0).sum())]).all()


def test_corruption_hooks(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("valid")[:6]
    clean_set, clean = make(slice_index, slice_tokenizer, tiny_config, rows, targets=False)
    ref = collate(clean_set, clean, rows)
    donors = rows[::-1]
    corruption = Corruption.for_items(
        slice_build.num_items, rows,
        title_source=[donors[0], -1, rows[2], donors[3], -1, rows[5]],
        image_source=[-1, donors[1], rows[2], -1, donors[4], rows[5]],
        knowledge_present=[True, True, False, True, True, False],
    )
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, targets=False, corruption=corruption)
    b = collate(dataset, collator, rows)
    assert b.title_present.tolist() == [True, False, True, True, False, True]
    assert not b.title_attention_mask[1].any() and not b.title_attention_mask[4].any()
    n = int(ref.title_attention_mask[5].sum())
    assert torch.equal(b.title_input_ids[0][: n], ref.title_input_ids[5][: n])  # donors[0] == rows[5]
    assert b.image_present.tolist() == [False, True, True, False, True, True]
    assert torch.equal(b.image_pixels[1], ref.image_pixels[4]) and not b.image_pixels[0].any()
    assert b.knowledge_present.tolist() == [True, True, False, True, True, False]
    assert not b.knowledge_attention_mask[2].any() and not (b.pair_item == 2).any()
    assert b.category.tolist() == ref.category.tolist()  # labels stay the item's own


def test_pkg_as_text_and_modality_switches(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("valid")[:4]
    pkg = Corruption(knowledge_as_title_text=True)
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, targets=False, use_knowledge=False, corruption=pkg)
    b = collate(dataset, collator, rows)
    assert not b.knowledge_present.any() and b.pair_item.numel() == 0 and b.graph[HAS].edge_index.shape == (2, 0)
    text = slice_tokenizer.decode(b.title_input_ids[0][b.title_attention_mask[0]], skip_special_tokens=True)
    decoded = lambda s: slice_tokenizer.decode(slice_tokenizer(s)["input_ids"], skip_special_tokens=True)  # noqa: E731
    first_value = slice_index.values[int(slice_index.pairs(int(rows[0]))[0, 1])]
    assert text.startswith(decoded(slice_index.titles[rows[0]]) + " ; ")
    assert decoded(first_value) in text and b.title_input_ids.shape[1] > tiny_config.text.max_title_tokens
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, use_image=False, use_title=False)
    b = collate(dataset, collator, rows)
    assert not b.image_present.any() and not b.image_token_mask.any() and not b.title_present.any()
    assert b.knowledge_present.all() and (b.lpm_neg_value >= 0).all()


def test_image_missing_catalog(k3m_sample_build, slice_tokenizer, tiny_config):
    """k3m-sample: every image is missing (remote URLs only) — a real modality-missing case."""
    from etl.catalog_build import CatalogBuild
    from k3m.data import CatalogIndex

    build = CatalogBuild.open(k3m_sample_build)
    index = CatalogIndex.from_build(build)
    rows = build.item_indices("train")[:16]
    dataset, collator = make(index, slice_tokenizer, tiny_config, rows)
    b = collate(dataset, collator, rows)
    assert not b.image_present.any() and not b.image_token_mask.any() and not b.image_pixels.any()
    assert b.knowledge_present.all() and b.title_present.all()
    assert b.lpm_neg_value.shape[0] == b.pair_item.numel() > 16


def test_loader_batches_do_not_depend_on_workers(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("train")[:96]
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, pair_order="shuffle")
    batches = {}
    for n in (0, 2):
        sampler = EpochBatchSampler(dataset, 16, seed=3)
        sampler.set_epoch(1, start_batch=2)
        batches[n] = list(make_loader(dataset, collator, sampler, num_workers=n))
    assert len(batches[0]) == 4
    for a, b in zip(batches[0], batches[2]):
        for field in ("item_index", "title_input_ids", "title_mlm_labels", "knowledge_mlm_labels", "image_token_mask",
                      "pair_value", "lpm_neg_value", "lpm_neg_item"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
