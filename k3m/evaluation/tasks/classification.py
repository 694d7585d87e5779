"""Item classification: predict the item's category (the build's ``category_index``).

A linear softmax head over c*. Items without a category are left out; test items whose
category never occurs among the fine-tuning items stay in the test set (they count as
errors: a category the head cannot know is a real failure, not something to hide).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from k3m.evaluation.metrics import accuracy, macro_f1
from k3m.evaluation.tasks.base import Examples, HeadTask, Pools


class ClassificationTask(HeadTask):
    name = "classification"
    title = "Item classification"
    metrics = ("accuracy", "macro_f1")

    def prepare(self, build, pools: Pools, seed: int) -> None:
        category = build.items["category_index"].to_numpy(dtype=np.int64)
        self.num_classes = len(build.categories)

        def examples(rows):
            rows = rows[category[rows] >= 0]
            return Examples(rows[:, None], category[rows])

        self.train, self.test = examples(pools.finetune), examples(pools.test)

    def make_head(self, hidden: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(1), nn.Linear(hidden, self.num_classes))

    has_linear_form = True

    def linear_features(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors[:, 0]

    def logits_from_decision(self, decision: np.ndarray, classes: np.ndarray) -> torch.Tensor:
        """Logits over every class; a class the fine-tuning examples lack is never predicted."""
        decision = np.asarray(decision, dtype=np.float64)
        if decision.ndim == 1:  # two classes seen: scikit-learn's one column is the second's
            decision = np.stack([np.zeros_like(decision), decision], axis=1)
        logits = np.full((len(decision), self.num_classes), -np.inf)
        logits[:, np.asarray(classes, dtype=np.int64)] = decision
        return torch.from_numpy(logits)

    def majority_baseline(self) -> dict[str, float]:
        logits = torch.zeros(len(self.test), self.num_classes)
        logits[:, int(np.bincount(self.train.target, minlength=self.num_classes).argmax())] = 1.0
        return self.measure(logits, self.test)

    def measure(self, logits: torch.Tensor, examples: Examples) -> dict[str, float]:
        pred = logits.argmax(1).cpu().numpy()
        return {"accuracy": accuracy(examples.target, pred), "macro_f1": macro_f1(examples.target, pred)}
