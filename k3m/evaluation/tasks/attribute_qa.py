"""Attribute QA: for a held-out fact ⟨item, property, ?⟩, rank every value of the property.

Which facts: the *test* facts (triple split 2) of the test-pool items are asked; the head
learns from the held-out facts (triple splits 1 and 2) of the fine-tuning-pool items, which
are other items (train split), so no asked fact is ever trained on. Held-out facts are never
part of any model's input (the knowledge text and "+PKG" text are built from train triples
only), so an answer can only come from the item's title, image and other facts.

Candidates: every value that occurs with the property anywhere in the build (its value
vocabulary). Ranking is filtered (other true values of the same item and property, in any
split, do not compete) with realistic ties; metrics Rank@1, Rank@10 (the paper's) and MRR.

Head (``qa``): per property a multinomial logistic regression on c* over the property's
values (:class:`PropertySoftmaxHead`). ``qa_lpm`` instead scores with the pretrained LPM, ‖c* + p − v‖, untrained here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from etl.catalog_build import TRIPLE_TEST, TRIPLE_VALID
from etl.errors import InvalidValue
from k3m.evaluation.metrics import ranking_metrics
from k3m.evaluation.ranking import KnownFacts, property_candidates, realistic_ranks
from k3m.evaluation.tasks.base import Examples, HeadTask, Pools, ScoringTask

QA_METRICS = ("rank@1", "rank@10", "mrr")


def held_out_facts(build, rows: np.ndarray, triple_splits: tuple[int, ...]) -> np.ndarray:
    """int64 [Q, 3] facts of ``rows`` in the given triple splits."""
    triples = np.asarray(build.triples, dtype=np.int64)
    keep = np.isin(np.asarray(build.triple_split), triple_splits) & np.isin(triples[:, 0], rows)
    return triples[keep]


def qa_metrics(ranks: np.ndarray) -> dict[str, float]:
    out = ranking_metrics(ranks, ks=(1, 10), prefix="rank")
    return {k: out[k] for k in QA_METRICS} | {"mean_rank": out["mean_rank"]}


class _QAFacts:
    """Shared by both QA tasks: the facts asked, the candidates, the filter."""

    def _prepare_facts(self, build) -> None:
        triples = np.asarray(build.triples, dtype=np.int64)
        self.num_values = len(build.values)
        self.num_properties = len(build.properties)
        self.known = KnownFacts(triples, self.num_properties)
        self.candidates = property_candidates(triples, self.num_properties, self.num_values)

    def _examples(self, facts: np.ndarray) -> Examples:
        return Examples(facts[:, :1], facts[:, 2], {"property": facts[:, 1]})

    def _test_sizes(self) -> dict[str, int]:
        """Test queries, and how many ask a property with <= 10 values (Rank@10 is then 1 by
        construction: worth knowing when reading Rank@10)."""
        per_property = self.candidates.sum(1)[torch.from_numpy(self.test.extra["property"])]
        return {"n_test": len(self.test), "n_test_at_most_10_candidates": int((per_property <= 10).sum())}

    def _ranks(self, value_scores: torch.Tensor, examples: Examples) -> np.ndarray:
        props = examples.extra["property"]
        exclude = self.known.filter_mask(examples.rows[:, 0], props, examples.target, self.num_values)
        exclude |= ~self.candidates[torch.from_numpy(props)]
        return realistic_ranks(value_scores, torch.from_numpy(examples.target), exclude).numpy()


@dataclass
class PropertyLogits:
    """Sparse head output: one logit per (example, candidate pair) entry, entries grouped
    by example in order."""

    example: torch.Tensor  # long [E]
    pair: torch.Tensor  # long [E]
    logit: torch.Tensor  # float [E]
    num_examples: int


class PropertySoftmaxHead(nn.Module):
    """One linear softmax per property over its values, sharing one parameter table.

    Only the candidate pairs of the properties a batch asks are scored: one dense matmul
    of the batch against those pairs' rows (BLAS, and a dense gradient), from which each
    example's own entries are picked. Gathering a weight row per (example, candidate) entry
    instead moved ``E x hidden`` floats each way and was ~5x slower for 2048-wide vectors.
    """

    def __init__(self, hidden: int, pair_offsets: torch.Tensor):
        super().__init__()
        num_pairs = int(pair_offsets[-1])
        bound = hidden ** -0.5  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(num_pairs, hidden).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_pairs).uniform_(-bound, bound))
        self.register_buffer("pair_offsets", pair_offsets)

    def forward(self, vectors: torch.Tensor, props: torch.Tensor) -> PropertyLogits:
        x = vectors[:, 0]
        start = self.pair_offsets[props]
        count = self.pair_offsets[props + 1] - start
        example = torch.repeat_interleave(torch.arange(len(x), device=x.device), count)
        first = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        pair = torch.repeat_interleave(start, count) + torch.arange(len(example), device=x.device) - first
        used, column = torch.unique(pair, return_inverse=True)
        scores = x @ self.weight[used].T  # [B, pairs the batch asks about]
        logit = scores[example, column] + self.bias[pair]
        return PropertyLogits(example, pair, logit, len(x))


class AttributeQATask(HeadTask, _QAFacts):
    name = "qa"
    title = "Attribute QA (trained head)"
    metrics = QA_METRICS
    note = ("Many properties have at most 10 values, where Rank@10 is 1 for any model; Rank@1 and MRR separate "
            "the models more sharply.")

    def prepare(self, build, pools: Pools, seed: int) -> None:
        self._prepare_facts(build)
        pairs = np.argwhere(self.candidates.numpy())  # [num_pairs, 2] (property, value), by property
        counts = np.bincount(pairs[:, 0], minlength=self.num_properties)
        self.pair_offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
        self.pair_value = torch.from_numpy(pairs[:, 1])
        self.pair_id = torch.full((self.num_properties, self.num_values), -1, dtype=torch.long)
        self.pair_id[torch.from_numpy(pairs[:, 0]), self.pair_value] = torch.arange(len(pairs))
        self.train = self._examples(held_out_facts(build, pools.finetune, (TRIPLE_VALID, TRIPLE_TEST)))
        self.test = self._examples(held_out_facts(build, pools.test, (TRIPLE_TEST,)))
        if len(self.train) == 0 or len(self.test) == 0:
            raise InvalidValue("attribute QA found no held-out facts for the pools")

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train)} | self._test_sizes()

    def make_head(self, hidden: int) -> nn.Module:
        return PropertySoftmaxHead(hidden, self.pair_offsets)

    def logits(self, head: nn.Module, vectors: torch.Tensor, examples: Examples) -> PropertyLogits:
        return head(vectors, torch.from_numpy(examples.extra["property"]).to(vectors.device))

    def loss(self, out: PropertyLogits, examples: Examples) -> torch.Tensor:
        """Softmax cross-entropy over each example's candidates, on the sparse entries."""
        device = out.logit.device
        target = self.pair_id.to(device)[torch.from_numpy(examples.extra["property"]), torch.from_numpy(examples.target)]
        peak = torch.full((out.num_examples,), float("-inf"), device=device)
        peak = peak.scatter_reduce(0, out.example, out.logit.detach(), reduce="amax")
        total = torch.zeros(out.num_examples, device=device).index_add(0, out.example, (out.logit - peak[out.example]).exp())
        log_normaliser = peak + total.log()
        true_logit = out.logit[out.pair == target[out.example]]  # one entry per example, in order
        return (log_normaliser - true_logit).mean()

    def majority_baseline(self) -> dict[str, float]:
        """Each asked property's values ranked by how often they answer it among the
        fine-tuning examples (ties broken realistically)."""
        counts = torch.zeros(self.num_properties, self.num_values)
        counts.index_put_((torch.from_numpy(self.train.extra["property"]), torch.from_numpy(self.train.target)),
                          torch.ones(len(self.train)), accumulate=True)
        return qa_metrics(self._ranks(counts[torch.from_numpy(self.test.extra["property"])], self.test))

    def measure(self, out: PropertyLogits, examples: Examples) -> dict[str, float]:
        scores = torch.full((out.num_examples, self.num_values), float("-inf"))
        scores[out.example.cpu(), self.pair_value[out.pair.cpu()]] = out.logit.float().cpu()
        return qa_metrics(self._ranks(scores, examples))


class LPMAttributeQATask(ScoringTask, _QAFacts):
    """Zero-shot QA with the model's LPM scorer (only models pretrained with knowledge)."""

    name = "qa_lpm"
    title = "Attribute QA (zero-shot LPM scorer)"
    metrics = QA_METRICS

    def prepare(self, build, pools: Pools, seed: int) -> None:
        self._prepare_facts(build)
        self.test = self._examples(held_out_facts(build, pools.test, (TRIPLE_TEST,)))

    @property
    def rows(self) -> np.ndarray:
        return np.unique(self.test.rows)

    def score(self, lpm_values) -> dict[str, float]:
        """``lpm_values(rows, props) -> float [Q, V]``, higher = better (negated distance)."""
        ex = self.test
        ranks = [
            self._ranks(lpm_values(ex.rows[i : i + 1024, 0], ex.extra["property"][i : i + 1024]), ex.subset(slice(i, i + 1024)))
            for i in range(0, len(ex), 1024)
        ]
        return qa_metrics(np.concatenate(ranks))

    def sizes(self) -> dict[str, int]:
        return self._test_sizes()
