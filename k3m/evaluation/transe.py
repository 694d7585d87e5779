"""External link-prediction anchor: PyKEEN's TransE on the build's train triple split.

Entities are items (ids ``0..N-1``) and values (ids ``N..N+V-1``), relations are the
properties, so TransE sees exactly the facts K3M may use as input. It is trained with
PyKEEN's sLCWA loop (margin ranking loss, uniformly corrupted heads and tails) and then
scored for *tail = value* prediction only; ranking and filtering are ours
(:mod:`k3m.evaluation.ranking`), shared with K3M, so both models answer the same queries
against the same candidates (every value) under the same filter.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from etl.catalog_build import TRIPLE_TRAIN


@dataclass
class TransEConfig:
    embedding_dim: int = 64
    scoring_fct_norm: int = 1
    num_epochs: int = 10
    batch_size: int = 16384
    learning_rate: float = 0.01
    num_negs_per_pos: int = 4
    seed: int = 0


@dataclass
class TransEAnchor:
    model: object  # pykeen.models.TransE
    num_items: int
    num_values: int
    train_seconds: float
    losses: list[float]

    @torch.no_grad()
    def score_values(self, items: np.ndarray, props: np.ndarray, chunk: int = 256) -> torch.Tensor:
        """float [Q, V]: PyKEEN scores (higher = more plausible) of every value as the tail."""
        hr = torch.from_numpy(np.stack([np.asarray(items), np.asarray(props)], axis=1).astype(np.int64))
        # only value entities as tails: TransE broadcasts [Q, tails, dim], all entities would not fit
        tails = torch.arange(self.num_items, self.num_items + self.num_values)
        return torch.cat([self.model.score_t(hr[i : i + chunk], tails=tails) for i in range(0, len(hr), chunk)])


def mapped_triples(triples: np.ndarray, num_items: int) -> torch.Tensor:
    """(item, property, value) rows as PyKEEN (head, relation, tail) entity ids."""
    t = torch.as_tensor(np.asarray(triples, dtype=np.int64))
    return torch.stack([t[:, 0], t[:, 1], t[:, 2] + num_items], dim=1)


def train_transe(build, config: TransEConfig = TransEConfig()) -> TransEAnchor:
    from pykeen.models import TransE
    from pykeen.training import SLCWATrainingLoop
    from pykeen.triples import CoreTriplesFactory

    num_items, num_values = build.num_items, len(build.values)
    train = np.asarray(build.triples)[np.asarray(build.triple_split) == TRIPLE_TRAIN]
    factory = CoreTriplesFactory.create(
        mapped_triples(train, num_items),
        num_entities=num_items + num_values,
        num_relations=len(build.properties),
    )
    torch.manual_seed(config.seed)
    model = TransE(
        triples_factory=factory,
        embedding_dim=config.embedding_dim,
        scoring_fct_norm=config.scoring_fct_norm,
        random_seed=config.seed,
    )
    loop = SLCWATrainingLoop(
        model=model,
        triples_factory=factory,
        optimizer="Adam",
        optimizer_kwargs={"lr": config.learning_rate},
        negative_sampler="basic",
        negative_sampler_kwargs={"num_negs_per_pos": config.num_negs_per_pos},
    )
    start = time.perf_counter()
    losses = loop.train(
        triples_factory=factory,
        num_epochs=config.num_epochs,
        batch_size=config.batch_size,
        use_tqdm=False,
        pin_memory=False,
    )
    model.eval()
    return TransEAnchor(model, num_items, num_values, time.perf_counter() - start, list(losses or []))
