"""Fine-tune mode on the real fashion600 slice: the model and head train end to end on
corrupted fine-tuning items, and the pretrained weights handed in stay untouched."""
from __future__ import annotations

import numpy as np
import torch

from k3m.evaluation.finetune import FinetuneConfig, finetune_and_measure
from k3m.evaluation.pools import make_pools
from k3m.evaluation.tasks import AlignmentTask, ClassificationTask


def test_finetune_trains_a_copy_and_scores_the_test_pool(slice_build, make_encoder, make_plan, monkeypatch):
    enc = make_encoder()
    before = {k: v.clone() for k, v in enc.model.state_dict().items()}
    pools = make_pools(slice_build, max_finetune=120, max_test=None, seed=0)
    task = ClassificationTask()
    task.prepare(slice_build, pools, seed=0)
    train_plan = make_plan("TMR", 0.5, np.unique(task.train.rows))
    test_plan = make_plan("TMR", 0.5, np.unique(task.test.rows))

    losses = []
    original = task.loss
    monkeypatch.setattr(task, "loss", lambda logits, ex: losses.append(original(logits, ex)) or losses[-1])
    metrics = finetune_and_measure(task, enc, train_plan, test_plan, FinetuneConfig(steps=12, batch_size=16), seed=0)
    assert set(metrics) == {"accuracy", "macro_f1"} and 0 <= metrics["accuracy"] <= 1
    assert len(losses) == 12 and all(torch.isfinite(l) for l in losses)
    assert np.mean([l.item() for l in losses[-4:]]) < np.mean([l.item() for l in losses[:4]])  # it learns
    after = enc.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the pretrained model is not modified


def test_finetune_pairs(slice_build, make_encoder):
    enc = make_encoder()
    task = AlignmentTask()
    task.prepare(slice_build, make_pools(slice_build, None, None, seed=0), seed=0)
    metrics = finetune_and_measure(task, enc, None, None, FinetuneConfig(steps=3, batch_size=8), seed=0)
    assert set(metrics) == {"f1", "precision", "recall"}
