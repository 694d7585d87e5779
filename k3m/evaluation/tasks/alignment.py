"""Product alignment: are two listings the same product? (binary, on item pairs)

Pairs come from :mod:`k3m.evaluation.pairs` (ground-truth groups, hard same-category
negatives) inside each pool. The head sees the symmetric pair features
``[|a - b|, a ⊙ b]`` of the two c* vectors and outputs one logit; a pair is predicted
aligned at logit > 0. Precision, recall and F1 are of the "same product" class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from etl.errors import InvalidValue
from k3m.evaluation.metrics import binary_prf
from k3m.evaluation.pairs import make_pairs
from k3m.evaluation.tasks.base import Examples, HeadTask, Pools


class PairHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(2 * hidden, 1)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        a, b = vectors[:, 0], vectors[:, 1]
        return self.linear(torch.cat([(a - b).abs(), a * b], dim=1)).squeeze(1)


@dataclass
class AlignmentTask(HeadTask):
    max_positives_per_group: int = 3
    hard_negatives: int = 1
    random_negatives: int = 1

    name = "alignment"
    title = "Product alignment"
    metrics = ("f1", "precision", "recall")
    note = ("Ground-truth groups come from the mapping's group column or, where a catalog has none "
            "(fashion44k), from identical normalised titles: then a clean title decides alignment by "
            "construction, and the task says something only under title corruption.")

    @classmethod
    def from_config(cls, config) -> "AlignmentTask":
        a = config.alignment
        return cls(a.max_positives_per_group, a.hard_negatives, a.random_negatives)

    def prepare(self, build, pools: Pools, seed: int) -> None:
        def examples(rows):
            pairs = make_pairs(
                build,
                rows,
                seed=seed,
                max_positives_per_group=self.max_positives_per_group,
                hard_negatives=self.hard_negatives,
                random_negatives=self.random_negatives,
            )
            return Examples(np.stack([pairs.left, pairs.right], 1), pairs.label.astype(np.int64), {"hard": pairs.hard})

        self.train, self.test = examples(pools.finetune), examples(pools.test)
        if not self.train.target.any() or not self.test.target.any():
            raise InvalidValue("alignment needs items sharing a group in both pools (no positive pairs)")

    def make_head(self, hidden: int) -> nn.Module:
        return PairHead(hidden)

    def loss(self, logits: torch.Tensor, examples: Examples) -> torch.Tensor:
        target = torch.from_numpy(examples.target).float().to(logits.device)
        # positives are a minority (1 : hard + random): weight them up to balance the loss
        pos_weight = (1 - target).sum().clamp(min=1) / target.sum().clamp(min=1)
        return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)

    has_linear_form = True
    class_weight = "balanced"  # positives are a minority, as the head's pos_weight says

    def linear_features(self, vectors: torch.Tensor) -> torch.Tensor:
        a, b = vectors[:, 0], vectors[:, 1]
        return torch.cat([(a - b).abs(), a * b], dim=1)  # the head's symmetric pair features

    def logits_from_decision(self, decision: np.ndarray, classes: np.ndarray) -> torch.Tensor:
        decision = torch.from_numpy(np.asarray(decision, dtype=np.float64))
        return decision if int(classes[-1]) == 1 else -decision

    def majority_baseline(self) -> dict[str, float]:
        return self.measure(torch.ones(len(self.test)), self.test)  # every pair aligned

    def measure(self, logits: torch.Tensor, examples: Examples) -> dict[str, float]:
        return binary_prf(examples.target, logits.cpu().numpy() > 0)
