"""Fine-tune mode: train the task head and the whole pretrained model end to end.

Each cell starts from a fresh copy of the pretrained weights; the fine-tuning examples are
drawn from the *corrupted* fine-tuning pool (the paper corrupts fine-tuning and test data
alike). AdamW with a smaller learning rate for the pretrained body than for the new head,
a fixed number of steps, the same for every model; then the test pool is encoded in eval
mode and scored.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from k3m.embedding.encoder import ItemEncoder
from k3m.evaluation.corruption import CorruptionPlan
from k3m.evaluation.probe import gather
from k3m.evaluation.tasks.base import HeadTask


@dataclass
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 32  # examples per step (a pair example brings two items)
    learning_rate: float = 1e-4  # pretrained body
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01


def finetune_and_measure(
    task: HeadTask,
    encoder: ItemEncoder,
    train_plan: CorruptionPlan | None,
    test_plan: CorruptionPlan | None,
    config: FinetuneConfig,
    seed: int,
) -> dict[str, float]:
    torch.manual_seed(seed)
    encoder = copy.copy(encoder)
    encoder.model = copy.deepcopy(encoder.model)
    model = encoder.model
    head = task.make_head(model.config.embedding_size).to(next(model.parameters()).device)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.parameters(), "lr": config.learning_rate},
            {"params": head.parameters(), "lr": config.head_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    rng = np.random.default_rng(seed)
    model.train()
    head.train()
    for _ in range(config.steps):
        pick = rng.choice(len(task.train), size=min(config.batch_size, len(task.train)), replace=False)
        examples = task.train.subset(pick)
        rows = np.unique(examples.rows)
        vectors = gather(encoder.encode_train(rows, train_plan), rows, examples)
        loss = task.loss(task.logits(head, vectors, examples), examples)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    head.eval()
    rows = np.unique(task.test.rows)
    with torch.no_grad():
        vectors = gather(encoder.encode(rows, test_plan), rows, task.test)
        logits = task.logits(head.cpu(), vectors, task.test)
    return task.measure(logits, task.test)
