"""K3MModel on real fashion44k batches: shapes and masks for every combination of missing
modalities (batch size 1 included), items without triples, gradients, switches, API."""
from __future__ import annotations

import pytest
import torch

from k3m.model import MENTIONED_BY, MENTIONS, K3MConfig, K3MModel, RegionImages

pytestmark = pytest.mark.usefixtures("single_thread")

# title, image, knowledge present: every combination, all-missing included
PRESENCE = [(t, i, k) for t in (True, False) for i in (True, False) for k in (True, False)]
TASKS = {"mlm_title", "mlm_knowledge", "mom", "lpm", "loss"}


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def test_every_presence_combination_in_one_batch(tiny_model_config, slice_tokenizer, make_batch):
    batch = make_batch(tiny_model_config, slice_tokenizer, n=len(PRESENCE), presence=PRESENCE)
    t, i, k = (torch.tensor(col) for col in zip(*PRESENCE))
    # the pipeline's side of the contract: absent = all-False masks, no pairs, no MOM targets
    assert torch.equal(batch.title_present, t) and not batch.inputs.title.attention_mask[~t].any()
    assert torch.equal(batch.image_present, i) and not batch.targets.visual_mask[~i].any()
    assert torch.equal(batch.knowledge_present, k) and not batch.inputs.knowledge.attention_mask[~k].any()
    assert set(batch.pair_item.tolist()) == set(torch.nonzero(k).flatten().tolist())

    model = K3MModel(tiny_model_config)
    out = model(batch)
    B, H = len(PRESENCE), tiny_model_config.hidden_size
    assert out.item_center.shape == out.item_repr.shape == (B, H)
    assert finite(out.item_center) and finite(out.item_repr)
    assert set(out.losses) == TASKS and all(finite(v) for v in out.losses.values())
    for name, flags in (("title", t), ("image", i), ("knowledge", k)):
        assert torch.equal(out.present[name], flags)
        assert out.pooled[name].shape == (B, H)
        assert torch.all(out.pooled[name][~flags] == 0)  # absent: masked out, not data
    # c is the mean over the modalities the item has
    expected = sum(out.pooled[n] * out.present[n][:, None] for n in out.pooled) / (t.int() + i.int() + k.int()).clamp_min(1)[:, None]
    torch.testing.assert_close(out.item_center, expected)
    # items without triples keep c* = c exactly; the others moved
    assert torch.equal(out.item_repr[~k], out.item_center[~k])
    assert (out.item_repr[k] - out.item_center[k]).abs().amax(-1).min() > 0
    assert torch.all(out.item_center[~(t | i | k)] == 0)  # nothing known about the item
    out.losses["loss"].backward()
    assert all(finite(p.grad) for p in model.parameters() if p.grad is not None)
    # attention of structure aggregation: a distribution over each item's pairs, per head
    sums = torch.zeros(B, out.pair_attention.shape[1]).index_add_(0, batch.pair_item, out.pair_attention.detach())
    torch.testing.assert_close(sums[k], torch.ones_like(sums[k]))


def test_structure_aggregation_reads_the_batch_graph(tiny_model_config, slice_tokenizer, make_batch):
    """The GAT consumes batch.graph: an item whose edges are taken out of the graph keeps
    c* = c, and no other item moves (its knowledge text, and so c, is unchanged)."""
    model = K3MModel(tiny_model_config).eval()
    batch = make_batch(tiny_model_config, slice_tokenizer, n=6, targets=False)
    with torch.no_grad():
        full = model(batch, compute_losses=False)
        keep = batch.graph[MENTIONS].edge_index[0] != 2
        assert (~keep).any()
        for edge_type in (MENTIONS, MENTIONED_BY):
            batch.graph[edge_type].edge_index = batch.graph[edge_type].edge_index[:, keep]
            batch.graph[edge_type].edge_attr = batch.graph[edge_type].edge_attr[keep]
        batch.graph[MENTIONS].property_span = batch.graph[MENTIONS].property_span[keep]
        cut = model(batch, compute_losses=False)
    assert torch.equal(cut.item_center, full.item_center)
    assert torch.equal(cut.item_repr[2], cut.item_center[2]) and not torch.equal(full.item_repr[2], full.item_center[2])
    others = [0, 1, 3, 4, 5]
    torch.testing.assert_close(cut.item_repr[others], full.item_repr[others])


@pytest.mark.parametrize("presence", PRESENCE, ids=lambda p: "".join("TIK"[j] if on else "-" for j, on in enumerate(p)))
def test_batch_of_one_matches_its_row_in_a_bigger_batch(presence, tiny_model_config, slice_tokenizer, make_batch, slice_build):
    """Batch size 1 works for every presence pattern, and an item's c* does not depend on
    the batch it sits in (padding, other items) — i.e. the masks are right."""
    rows = slice_build.item_indices("train")[:3]
    model = K3MModel(tiny_model_config)
    single = make_batch(tiny_model_config, slice_tokenizer, rows=rows[:1], presence=[presence])
    out = model(single)  # training mode, with losses
    assert out.item_repr.shape == (1, tiny_model_config.hidden_size)
    assert all(finite(v) for v in out.losses.values())
    if "loss" in out.losses:
        out.losses["loss"].backward()
    trio = make_batch(tiny_model_config, slice_tokenizer, rows=rows, presence=[presence, (True,) * 3, (True,) * 3], targets=False)
    torch.testing.assert_close(model.encode_items(make_batch(tiny_model_config, slice_tokenizer, rows=rows[:1], presence=[presence], targets=False)), model.encode_items(trio)[:1], atol=2e-5, rtol=1e-4)


def test_absent_inputs_do_not_leak(tiny_model_config, slice_tokenizer, make_batch):
    """What sits in the tensors of an absent modality (here: another image's pixels, a
    title's token ids) has no effect on the item."""
    presence = [(False, False, True), (True, True, True)]
    batch = make_batch(tiny_model_config, slice_tokenizer, n=2, presence=presence, targets=False)
    model = K3MModel(tiny_model_config)
    before = model.encode_items(batch)
    batch.inputs.image.pixels[0] = batch.inputs.image.pixels[1]
    batch.inputs.title.input_ids[0] = batch.inputs.title.input_ids[1]
    torch.testing.assert_close(model.encode_items(batch), before)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"fusion": {"iifm": "soft"}, "image": {"kind": "cnn"}},
        {"fusion": {"iifm": "mean"}, "loss": {"adaptive": True}},
    ],
    ids=["hard-patch", "soft-cnn", "mean-adaptive"],
)
def test_every_parameter_receives_a_gradient(overrides, slice_tokenizer, make_batch):
    torch.manual_seed(0)
    config = K3MConfig.from_preset("tiny", **overrides).with_tokenizer(slice_tokenizer)
    batch = make_batch(config, slice_tokenizer, n=3)
    model = K3MModel(config)
    model(batch).losses["loss"].backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert silent == []


def test_no_targets_at_all_gives_zero_losses_not_nan(tiny_model_config, slice_tokenizer, make_batch):
    batch = make_batch(tiny_model_config, slice_tokenizer, n=3)
    batch.targets.title_labels.fill_(-100)
    batch.targets.knowledge_labels.fill_(-100)
    batch.targets.visual_mask.fill_(False)
    batch.lpm.neg_value.fill_(-1)
    batch.lpm.neg_item.fill_(-1)
    model = K3MModel(tiny_model_config)
    out = model(batch)
    for task in ("mlm_title", "mlm_knowledge", "mom", "lpm"):
        assert out.losses[task].item() == 0.0
    out.losses["loss"].backward()
    assert all(finite(p.grad) for p in model.parameters() if p.grad is not None)


def test_losses_only_for_targets_in_the_batch(tiny_model_config, slice_tokenizer, make_batch):
    model = K3MModel(tiny_model_config)
    batch = make_batch(tiny_model_config, slice_tokenizer, n=2)
    assert model(batch, compute_losses=False).losses == {}
    batch.lpm = None  # no LPM targets: no LPM loss (not a zero pretending to be one)
    assert set(model(batch).losses) == TASKS - {"lpm"}
    # a batch made without targets has no losses at all
    assert model(make_batch(tiny_model_config, slice_tokenizer, n=2, targets=False)).losses == {}


def test_encode_items_is_deterministic_and_keeps_the_mode(tiny_model_config, slice_tokenizer, make_batch):
    batch = make_batch(tiny_model_config, slice_tokenizer, n=4, targets=False)
    model = K3MModel(tiny_model_config).train()
    first = model.encode_items(batch)
    assert model.training and not first.requires_grad
    assert torch.equal(first, model.encode_items(batch))
    assert not torch.equal(model(batch).item_repr, first)  # training: dropout and Gumbel noise


@pytest.mark.parametrize(
    "overrides, tasks",
    [
        ({"use_knowledge": False}, {"mlm_title", "mom", "loss"}),
        ({"structure_aggregation": False}, TASKS),
        ({"use_image": False}, TASKS - {"mom"}),
        ({"use_title": False}, TASKS - {"mlm_title"}),
        ({"co_attention": {"title_image": False, "knowledge_image": False, "title_knowledge": False}}, TASKS),
        ({"co_attention": {"title_knowledge": False, "knowledge_image_layers": 2}}, TASKS),
    ],
    ids=["no-knowledge", "no-structure", "no-image", "no-title", "no-co-attention", "two-pairs"],
)
def test_switches(overrides, tasks, slice_tokenizer, make_batch):
    config = K3MConfig.from_preset("tiny", **overrides).with_tokenizer(slice_tokenizer)
    batch = make_batch(config, slice_tokenizer, n=3)
    model = K3MModel(config)
    out = model(batch)
    assert set(out.losses) == tasks and finite(out.losses["loss"])
    if not (config.use_knowledge and config.structure_aggregation):
        assert model.core.structure is None and torch.equal(out.item_repr, out.item_center)
    assert set(model.core.co_attention) == {
        name for name in ("title_image", "knowledge_image", "title_knowledge") if all(
            getattr(config, f"use_{m}") for m in name.split("_")) and getattr(config.co_attention, name)
    }


def test_encode_strings_and_lpm_score_broadcast(tiny_model_config, slice_tokenizer, make_batch):
    batch = make_batch(tiny_model_config, slice_tokenizer, n=4)
    model = K3MModel(tiny_model_config).eval()
    with torch.no_grad():
        items = model.encode_items(batch)  # [B, H]
        values = model.encode_strings(batch.inputs.values.input_ids, batch.inputs.values.attention_mask)  # [U, H]
        props = model.encode_strings(batch.inputs.properties.input_ids, batch.inputs.properties.attention_mask)
    U, H = values.shape
    assert H == tiny_model_config.hidden_size and U == batch.lpm.value_ids.numel()
    # one item, one property, every candidate value at once
    scores = model.lpm_score(items[:, None], props[:1][None], values[None])
    assert scores.shape == (4, U)
    torch.testing.assert_close(scores[2, 5], torch.linalg.vector_norm(items[2] + props[0] - values[5]))
    # a value string padded further gives the same vector (mean over real tokens only)
    padded = torch.nn.functional.pad(batch.inputs.values.input_ids, (0, 7), value=slice_tokenizer.pad_token_id)
    mask = torch.nn.functional.pad(batch.inputs.values.attention_mask, (0, 7), value=False)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_strings(padded, mask), values, atol=1e-5, rtol=1e-4)


def test_lpm_loss_learns_on_real_triples(tiny_model_config, slice_tokenizer, make_batch):
    """A few steps on LPM alone lower the margin loss on the same real batch (the loss is
    wired to c*, property and value vectors, not a constant)."""
    config = K3MConfig.from_dict({**tiny_model_config.to_dict(), "loss": {"mlm_title": 0, "mlm_knowledge": 0, "mom": 0, "lpm": 1}})
    batch = make_batch(config, slice_tokenizer, n=4)
    model = K3MModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = model(batch).losses["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(model(batch).losses) == {"lpm", "loss"}
    assert losses[-1] < 0.7 * losses[0], losses


def test_knowledge_needs_knowledge_fields(tiny_model_config, slice_tokenizer, make_batch):
    batch = make_batch(tiny_model_config, slice_tokenizer, n=2)
    batch.inputs.knowledge = None
    with pytest.raises(ValueError, match="use_knowledge"):
        K3MModel(tiny_model_config)(batch)


def test_region_features_in_the_original_layout(slice_tokenizer, make_batch):
    """image.kind='region': 36 x 2048 features, 5-d locations, 1601-class distributions.
    No detector output exists offline, so the region tensors are drawn at random (the
    rest of the batch is real); absent images have an all-False region mask."""
    config = K3MConfig.from_preset("tiny", image={"kind": "region"}).with_tokenizer(slice_tokenizer)
    patch_config = K3MConfig.from_preset("tiny").with_tokenizer(slice_tokenizer)
    batch = make_batch(patch_config, slice_tokenizer, n=3, presence=[(True, True, True), (True, False, True), (True, True, False)])
    g = torch.Generator().manual_seed(0)
    B, R = 3, config.image.num_regions
    mask = (torch.arange(R) < torch.tensor([[30], [0], [36]])) & batch.image_present[:, None]
    batch.inputs.image = RegionImages(torch.rand(B, R, 2048, generator=g), torch.rand(B, R, 5, generator=g),
                                      torch.softmax(torch.randn(B, R, 1601, generator=g), -1), mask)
    batch.targets.visual_mask = (torch.rand(B, R, generator=g) < 0.15) & mask
    model = K3MModel(config)
    out = model(batch)
    assert set(out.losses) == TASKS and finite(out.losses["mom"]) and out.losses["mom"] > 0
    assert torch.equal(out.present["image"], torch.tensor([True, False, True]))
    out.losses["loss"].backward()
    assert model.heads["mom"].net[-1].weight.grad.shape == (1601, config.image.hidden_size)


def test_bf16_autocast_on_cpu(tiny_model_config, slice_tokenizer, make_batch):
    """The same autocast path CUDA uses (bf16 matmuls, float32 losses), on the CPU."""
    batch = make_batch(tiny_model_config, slice_tokenizer, n=4, presence=[(True, True, True), (False, True, True), (True, False, False), (True, True, True)])
    model = K3MModel(tiny_model_config)
    reference = model.encode_items(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model.encode_items(batch)
        out = model(batch)
    assert all(v.dtype == torch.float32 and finite(v) for v in out.losses.values())
    torch.testing.assert_close(fast.float(), reference, atol=0.1, rtol=0.05)
    out.losses["loss"].backward()
    assert all(finite(p.grad) for p in model.parameters() if p.grad is not None)
