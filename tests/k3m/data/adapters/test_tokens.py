"""TokenAdapter (trainable encoders) through the collator on the real fashion600 slice: token
ids, pixels, MLM and MOM targets keyed by (seed, epoch, item), "+PKG as text"."""
import numpy as np
import torch

from k3m.data import Corruption, K3MCollator, K3MDataset
from k3m.data.adapters.tokens import resize_pixels
from k3m.data.masking import IGNORE
from k3m.model import MENTIONS, PixelImages, TokenInputs, TokenTargets


def make(index, tokenizer, config, rows, targets=True, **kwargs):
    dataset = K3MDataset(index, rows, max_pairs=config.text.max_pairs, seed=7, **kwargs)
    return dataset, K3MCollator(dataset, tokenizer, config, targets=targets)


def collate(dataset, collator, rows, epoch=0):
    return collator([dataset[(epoch, int(r))] for r in rows])


def test_inputs_and_targets(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("train")[:24]
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, pair_order="shuffle")
    b = collate(dataset, collator, rows)
    x, t, B = b.inputs, b.targets, 24
    assert isinstance(x, TokenInputs) and isinstance(t, TokenTargets) and isinstance(x.image, PixelImages)
    assert x.title.input_ids.shape[1] <= tiny_config.text.max_title_tokens
    assert x.knowledge.input_ids.shape[1] <= tiny_config.text.max_knowledge_tokens
    # the build stores 96 px (its photos' size); the patch encoder reads 64: resized here
    assert slice_build.images.shape[1] == 96
    assert x.image.pixels.dtype == torch.uint8 and x.image.pixels.shape == (B, 3, 64, 64)
    stored = torch.from_numpy(np.ascontiguousarray(slice_build.images[rows])).permute(0, 3, 1, 2)
    assert torch.equal(x.image.pixels, resize_pixels(stored, 64))
    assert (resize_pixels(stored, 64).float().mean((2, 3)) - stored.float().mean((2, 3))).abs().max() < 4  # the same photos
    assert t.visual_mask.shape == (B, tiny_config.num_visual_tokens)
    assert (t.visual_mask.sum(1) == round(0.15 * tiny_config.num_visual_tokens)).all()
    # spans inside the real tokens of the knowledge text
    for spans in (b.pair_property_span, b.pair_value_span):
        assert (spans[:, 0] < spans[:, 1]).all()
        assert x.knowledge.attention_mask[b.pair_item, spans[:, 1] - 1].all()
    # knowledge MLM targets lie inside value spans only; title targets never on specials
    in_value = torch.zeros_like(x.knowledge.attention_mask)
    for i, (a, z) in zip(b.pair_item, b.pair_value_span):
        in_value[i, a:z] = True
    targets = t.knowledge_labels != IGNORE
    assert targets.any(1).all() and not (targets & ~in_value).any()
    special = torch.isin(x.title.input_ids, torch.tensor(slice_tokenizer.all_special_ids))
    title_targets = t.title_labels != IGNORE
    assert title_targets.any(1).all() and not (title_targets & ~x.title.attention_mask).any()
    assert not (special & title_targets & (x.title.input_ids != slice_tokenizer.mask_token_id)).any()
    # the graph's spans hold the property's and the (unmasked) value's tokens
    original = torch.where(targets, t.knowledge_labels, x.knowledge.input_ids)

    def tokens(text):
        return slice_tokenizer(text, add_special_tokens=False)["input_ids"]

    for j in range(b.pair_item.numel()):
        (a, z), (c, d) = b.pair_property_span[j].tolist(), b.pair_value_span[j].tolist()
        assert original[b.pair_item[j], a:z].tolist() == tokens(slice_index.properties[int(b.pair_property[j])])
        assert original[b.pair_item[j], c:d].tolist() == tokens(slice_index.values[int(b.pair_value[j])])
    # LPM strings: a row per id of the LPM's tables, each string encoded on its own
    assert x.values.input_ids.shape[0] == b.lpm.value_ids.numel() and x.properties.input_ids.shape[0] == b.lpm.property_ids.numel()
    assert x.values.attention_mask[:, 0].all() and x.properties.attention_mask[:, 0].all()
    v = int(b.lpm.value_ids[3])
    assert x.values.input_ids[3][x.values.attention_mask[3]].tolist() == slice_tokenizer(slice_index.values[v])["input_ids"]


def test_masks_depend_on_item_and_epoch_not_on_batch(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("train")[:16]
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, pair_order="shuffle")
    a = collate(dataset, collator, rows)
    b = collate(dataset, collator, rows[::-1][:8])  # the last 8 rows, reversed, in another batch
    fields = {"title ids": lambda x: x.inputs.title.input_ids, "title labels": lambda x: x.targets.title_labels,
              "knowledge ids": lambda x: x.inputs.knowledge.input_ids, "knowledge labels": lambda x: x.targets.knowledge_labels}
    for pos_b, row in enumerate(rows[::-1][:8]):
        pos_a = int(np.flatnonzero(rows == row)[0])
        for name, get in fields.items():
            x, y = get(a)[pos_a], get(b)[pos_b]
            n = min(len(x), len(y))
            assert (x[:n] == y[:n]).all(), name
        assert (a.targets.visual_mask[pos_a] == b.targets.visual_mask[pos_b]).all()
        assert (a.pair_value[a.pair_item == pos_a] == b.pair_value[b.pair_item == pos_b]).all()
    c = collate(dataset, collator, rows, epoch=1)
    assert not torch.equal(a.targets.title_labels, c.targets.title_labels[:, : a.targets.title_labels.shape[1]])
    assert not torch.equal(a.targets.visual_mask, c.targets.visual_mask)


def test_without_targets_nothing_is_masked(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("test")[:8]
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, targets=False)
    b = collate(dataset, collator, rows)
    assert b.targets is None and b.lpm is None and b.inputs.values is None
    assert not (b.inputs.title.input_ids == slice_tokenizer.mask_token_id).any()
    # fixed pair order: the first pairs of the item, as the index orders them
    first = int(rows[0])
    assert (b.pair_value[b.pair_item == 0].numpy() == slice_index.pairs(first)[: tiny_config.text.max_pairs, 1][: int((b.pair_item == 0).sum())]).all()


def test_pkg_as_text_and_modality_switches(slice_build, slice_index, slice_tokenizer, tiny_config):
    rows = slice_build.item_indices("valid")[:4]
    pkg = Corruption(knowledge_as_title_text=True)
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, targets=False, use_knowledge=False, corruption=pkg)
    b = collate(dataset, collator, rows)
    title = b.inputs.title
    assert not b.knowledge_present.any() and b.pair_item.numel() == 0 and b.graph[MENTIONS].edge_index.shape == (2, 0)
    text = slice_tokenizer.decode(title.input_ids[0][title.attention_mask[0]], skip_special_tokens=True)
    decoded = lambda s: slice_tokenizer.decode(slice_tokenizer(s)["input_ids"], skip_special_tokens=True)  # noqa: E731
    first_value = slice_index.values[int(slice_index.pairs(int(rows[0]))[0, 1])]
    assert text.startswith(decoded(slice_index.titles[rows[0]]) + " ; ")
    assert decoded(first_value) in text and title.input_ids.shape[1] > tiny_config.text.max_title_tokens
    dataset, collator = make(slice_index, slice_tokenizer, tiny_config, rows, use_image=False, use_title=False)
    b = collate(dataset, collator, rows)
    assert not b.image_present.any() and not b.targets.visual_mask.any() and not b.title_present.any()
    assert b.knowledge_present.all() and (b.lpm.neg_value >= 0).all()
