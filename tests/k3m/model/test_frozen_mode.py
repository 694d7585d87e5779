"""K3M with frozen encoders (encoders: frozen): the model holds no backbone, reads the feature
cache's outputs, and trains co-attention, IIFM, the GAT and the heads on real batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from k3m.data import Corruption, K3MCollator, K3MDataset
from k3m.model import K3MModel
from k3m.model.stems import FeatureStem

pytestmark = pytest.mark.usefixtures("single_thread")
PRESENCE = [(t, i, k) for t in (True, False) for i in (True, False) for k in (True, False)]
TASKS = {"mlm_title", "mlm_knowledge", "mom", "lpm", "matching", "consistency", "loss"}


def batch_of(index, config, rows, presence=None, targets=True):
    corruption = None
    if presence is not None:
        t, i, k = (np.array(col, dtype=bool) for col in zip(*presence))
        corruption = Corruption.for_items(index.num_items, rows, title_source=np.where(t, rows, -1),
                                          image_source=np.where(i, rows, -1), knowledge_present=k)
    dataset = K3MDataset(index, rows, max_pairs=config.text.max_pairs, corruption=corruption)
    return K3MCollator(dataset, None, config, targets=targets)([dataset[int(r)] for r in rows])


def test_every_presence_combination(frozen_slice_index, frozen_config, slice_build):
    rows = slice_build.item_indices("train")[: len(PRESENCE)]
    torch.manual_seed(0)
    model = K3MModel(frozen_config)
    assert isinstance(model.stem, FeatureStem) and not any("backbone" in n or "bert" in n for n, _ in model.named_parameters())
    batch = batch_of(frozen_slice_index, frozen_config, rows, PRESENCE)
    out = model(batch)
    assert set(out.losses) == TASKS and all(torch.isfinite(v) for v in out.losses.values())
    t, i, k = (torch.tensor(col) for col in zip(*PRESENCE))
    for name, flags in (("title", t), ("knowledge", k)):
        assert torch.equal(out.present[name], flags & out.present[name])  # never present when removed
    assert not out.present["image"][~i].any()
    no_pairs = batch.inputs.knowledge_mask.sum(1) == 0
    assert torch.equal(out.item_repr[no_pairs], out.item_center[no_pairs])  # no triples: c* = c
    out.losses["loss"].backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    for part in ("stem.title_in", "stem.knowledge_in", "stem.property_in", "stem.value_in", "stem.image_encoder",
                 "core.co_attention", "core.fusion", "core.structure", "heads.mlm_title", "heads.mom", "heads.mlm_knowledge",
                 "heads.matching"):
        assert any(n.startswith(part) for n in grads), part


def test_round_trip_and_eval_encoding(frozen_slice_index, frozen_config, slice_build, tmp_path):
    rows = slice_build.item_indices("test")[:8]
    model = K3MModel(frozen_config)
    batch = batch_of(frozen_slice_index, frozen_config, rows, targets=False)
    before = model.encode_items(batch)
    model.save_pretrained(tmp_path)
    again = K3MModel.from_pretrained(tmp_path)
    assert again.config == model.config
    torch.testing.assert_close(again.encode_items(batch), before)
    torch.testing.assert_close(model.encode_items(batch), before)  # eval mode: no Gumbel noise, no dropout
