"""Similar items: are an item's nearest neighbours by cosine of its vector of its category?

What users run most (``k3m query similar``), scored without any training: for every test
item with a category, its ``k`` nearest items by cosine similarity among all pool items
(fine-tuning and test pools, the same corruption condition), leaving out the item itself
and every listing of the same product (same group or identical title, which would make the
task a duplicate finder). ``category_share@10`` is the share of those neighbours that have
the item's category, averaged over the test items. ``random_pair_cosine`` is the mean
cosine of random pairs of pool items: how much of the [-1, 1] range the vectors use (a
space where everything sits at 0.8 ranks by noise).

The vectors are taken as each representation gives them: K3M's item vector as ``k3m
embed`` stores it, the off-the-shelf concatenations with each block L2-normalised (what a
user would do before concatenating MiniLM with EfficientNet, whose raw vectors are 7x
longer).
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from k3m.evaluation.corruption import product_keys
from k3m.evaluation.tasks.base import Pools, Task

RANDOM_PAIRS = 20000


class NeighbourTask(Task):
    name = "neighbours"
    title = "Similar items (top-10 neighbours)"
    metrics = ("category_share@10", "random_pair_cosine")
    note = ("Share of an item's 10 nearest items (cosine, other products only) that have its category; "
            "random_pair_cosine is the mean cosine of random item pairs (lower leaves more of the range to rank by).")
    scores_vectors = True
    k = 10

    def prepare(self, build, pools: Pools, seed: int) -> None:
        category = build.items["category_index"].to_numpy(dtype=np.int64)
        self.queries = pools.test[category[pools.test] >= 0]
        self.database = np.union1d(pools.finetune, pools.test)
        self.category = category
        self.product = product_keys(build, np.arange(build.num_items))
        self.seed = seed

    @property
    def rows(self) -> np.ndarray:
        return self.database

    def sizes(self) -> dict[str, int]:
        return {"n_test": int(len(self.queries)), "n_database": int(len(self.database))}

    @torch.no_grad()
    def measure_vectors(self, rows: np.ndarray, vectors: torch.Tensor, chunk: int = 1024) -> dict[str, float]:
        """Metrics of ``vectors`` [len(rows), H] of the sorted build ``rows`` (covering the database)."""
        where = np.searchsorted(rows, self.database)
        if not np.array_equal(rows[np.clip(where, 0, len(rows) - 1)], self.database):
            raise KeyError("the neighbour database holds an item that was not encoded")
        x = vectors[torch.from_numpy(where)].double()
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)  # an all-zero vector has cosine 0 with all
        position = np.searchsorted(self.database, self.queries)
        db_product = torch.from_numpy(self.product[self.database])
        db_category = torch.from_numpy(self.category[self.database])
        shares = []
        for lo in range(0, len(position), chunk):
            q = torch.from_numpy(position[lo:lo + chunk])
            scores = x[q] @ x.T
            same = db_product.unsqueeze(0) == db_product[q].unsqueeze(1)  # itself and its other listings
            scores[same] = -np.inf
            # ties broken by the lower row: a stable sort on -score
            top = torch.sort(-scores, dim=1, stable=True).indices[:, : self.k]
            hits = (db_category[top] == db_category[q].unsqueeze(1)) & torch.isfinite(scores.gather(1, top))
            shares.append(hits.double().sum(1) / self.k)
        rng = np.random.default_rng([int(self.seed), zlib.crc32(b"random-pairs")])
        a, b = rng.integers(len(self.database), size=(2, RANDOM_PAIRS))
        keep = a != b
        cosine = (x[torch.from_numpy(a[keep])] * x[torch.from_numpy(b[keep])]).sum(1)
        return {"category_share@10": float(torch.cat(shares).mean()) if shares else float("nan"),
                "random_pair_cosine": float(cosine.mean())}
