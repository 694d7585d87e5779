"""Link prediction: value prediction ⟨item, property, ?⟩ on the held-out test triple split.

The standard KG protocol: every test fact (of any item: the setting is transductive, as
for TransE) is a query, every value of the vocabulary a candidate, ranking filtered
against all known facts (train, valid, test), realistic ranks under ties; filtered MRR
and Hits@1/3/10. Only the tail (value) side is asked — predicting the item from
(property, value) is not what a catalog needs — and items are never candidates.

K3M scores with its LPM, ``-‖c* + p − v‖`` on clean inputs; PyKEEN's TransE trained on the
same train triples (:mod:`k3m.evaluation.transe`) answers the same queries.

Beside the standard metrics, the same scores are also ranked *type-constrained*
(``typed_*``; Krompaß et al. 2015): only values seen with the asked property anywhere in
the build compete. The paper's LPM negatives corrupt the value within the property, which
trains for this view only; the gap between the two views shows how much of a model's loss
is values of other properties ranked high (K3M's LPM also draws ``lpm.random_negatives``
of any property for the standard view: docs/model.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.catalog_build import TRIPLE_TEST
from etl.errors import InvalidValue
from k3m.evaluation.metrics import ranking_metrics
from k3m.evaluation.ranking import KnownFacts, property_candidates, rank_queries_under
from k3m.evaluation.tasks.base import Pools, ScoringTask


@dataclass
class LinkPredictionTask(ScoringTask):
    max_queries: int | None = None  # a seeded sample of the test facts; None = all

    name = "link_prediction"
    title = "Link prediction (clean inputs)"
    clean_only = True
    kg_anchor = True
    timing_parts = ("encode_lp", "transe")
    metrics = ("mrr", "hits@1", "hits@3", "hits@10", "typed_mrr", "typed_hits@1", "typed_hits@3", "typed_hits@10")

    @classmethod
    def from_config(cls, config) -> "LinkPredictionTask":
        return cls(config.link_prediction.max_queries)

    def prepare(self, build, pools: Pools, seed: int) -> None:
        triples = np.asarray(build.triples, dtype=np.int64)
        facts = triples[np.asarray(build.triple_split) == TRIPLE_TEST]
        if self.max_queries is not None and len(facts) > self.max_queries:
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
            facts = facts[np.sort(rng.permutation(len(facts))[: self.max_queries])]
        if len(facts) == 0:
            raise InvalidValue("link prediction: the build has no test triples")
        self.facts = facts
        self.num_values = len(build.values)
        self.known = KnownFacts(triples, len(build.properties))
        self.candidates = property_candidates(triples, len(build.properties), self.num_values)

    @property
    def rows(self) -> np.ndarray:
        """The items whose vectors the queries need."""
        return np.unique(self.facts[:, 0])

    def score(self, value_scores) -> dict[str, float]:
        """``value_scores(items, props) -> float [Q, V]``, higher = more plausible."""
        items, props, answers = self.facts[:, 0], self.facts[:, 1], self.facts[:, 2]
        every, typed = rank_queries_under(
            lambda sl: value_scores(items[sl], props[sl]), items, props, answers, self.known, self.num_values,
            [None, self.candidates],
        )
        metrics = ranking_metrics(every, ks=(1, 3, 10))
        metrics.update({f"typed_{k}": v for k, v in ranking_metrics(typed, ks=(1, 3, 10)).items()})
        return metrics

    def sizes(self) -> dict[str, int]:
        return {"n_queries": len(self.facts), "n_items": len(self.rows)}
