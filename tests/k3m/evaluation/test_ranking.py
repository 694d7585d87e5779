"""Filtered ranking equals a brute-force computation on small real graphs (fashion600, and
k3m-sample whose properties repeat within an item, so filtering really removes answers),
and equals PyKEEN's own filtered evaluator on the same TransE scores."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

from etl.catalog_build import TRIPLE_TEST, TRIPLE_TRAIN, TRIPLE_VALID
from k3m.evaluation.ranking import KnownFacts, property_candidates, rank_queries


def as_graph(build):
    triples = np.asarray(build.triples, dtype=np.int64)
    split = np.asarray(build.triple_split)
    return triples, split, len(build.properties), len(build.values)


@pytest.fixture(scope="module")
def graph(slice_build):
    return as_graph(slice_build)


@pytest.fixture(scope="module", params=["fashion600", "k3m-sample"])
def any_graph(request, slice_build, k3m_sample_build):
    from etl.catalog_build import CatalogBuild

    return request.param, as_graph(slice_build if request.param == "fashion600" else CatalogBuild.open(k3m_sample_build))


def brute_force_ranks(scores, queries, triples, candidates_of=None):
    """The textbook definition, one query at a time in plain Python."""
    truth = defaultdict(set)
    for i, p, v in triples.tolist():
        truth[(i, p)].add(v)
    ranks = []
    for q, (i, p, v) in enumerate(queries.tolist()):
        s = scores[q].tolist()
        pool = range(len(s)) if candidates_of is None else candidates_of[p]
        competitors = [c for c in pool if c != v and c not in truth[(i, p)]]
        better = sum(s[c] > s[v] for c in competitors)
        tied = sum(s[c] == s[v] for c in competitors)
        ranks.append(1 + better + tied / 2)
    return np.array(ranks)


@pytest.mark.parametrize("per_property", [False, True], ids=["all-values", "property-candidates"])
def test_filtered_ranks_equal_brute_force(any_graph, per_property):
    name, (triples, split, num_props, num_values) = any_graph
    queries = triples[split == TRIPLE_TEST]
    # coarse random scores: many ties, so the tie rule is exercised too
    scores = torch.from_numpy(np.random.default_rng(0).integers(0, 20, size=(len(queries), num_values)).astype(np.float32))
    candidates = property_candidates(triples, num_props, num_values) if per_property else None
    ours = rank_queries(
        lambda sl: scores[sl], queries[:, 0], queries[:, 1], queries[:, 2], KnownFacts(triples, num_props), num_values,
        candidates=candidates, chunk=64,
    )
    candidates_of = None
    if per_property:
        candidates_of = defaultdict(set)
        for _, p, v in triples.tolist():
            candidates_of[p].add(v)
    expected = brute_force_ranks(scores.numpy(), queries, triples, candidates_of)
    np.testing.assert_allclose(ours, expected)
    unfiltered = rank_queries(lambda sl: scores[sl], queries[:, 0], queries[:, 1], queries[:, 2],
                              KnownFacts(queries[:0], num_props), num_values, candidates=candidates)
    assert (unfiltered >= ours).all()
    if name == "k3m-sample":  # repeated properties: filtering removes other true answers
        assert (unfiltered > ours).any()


def test_known_facts_filter_mask(any_graph):
    _, (triples, split, num_props, num_values) = any_graph
    known = KnownFacts(triples, num_props)
    queries = triples[split == TRIPLE_TEST][:50]
    mask = known.filter_mask(queries[:, 0], queries[:, 1], queries[:, 2], num_values)
    for q, (i, p, v) in enumerate(queries.tolist()):
        others = {int(x) for x in triples[(triples[:, 0] == i) & (triples[:, 1] == p), 2]} - {v}
        assert set(np.flatnonzero(mask[q].numpy()).tolist()) == others


def test_same_ranks_as_pykeen_filtered_evaluator(slice_build, graph):
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import TransE
    from pykeen.triples import CoreTriplesFactory

    from k3m.evaluation.tasks.link_prediction import LinkPredictionTask
    from k3m.evaluation.transe import TransEAnchor, mapped_triples

    triples, split, num_props, num_values = graph
    n = slice_build.num_items
    factory = CoreTriplesFactory.create(mapped_triples(triples[split == TRIPLE_TRAIN], n), num_entities=n + num_values,
                                        num_relations=num_props)
    model = TransE(triples_factory=factory, embedding_dim=16, random_seed=0).eval()  # untrained: scores are what they are
    task = LinkPredictionTask(max_queries=None)
    task.prepare(slice_build, None, seed=0)
    ours = task.score(TransEAnchor(model, n, num_values, 0.0, []).score_values)
    theirs = RankBasedEvaluator(filtered=True).evaluate(
        model, mapped_triples(triples[split == TRIPLE_TEST], n), batch_size=256, use_tqdm=False, targets=("tail",),
        additional_filter_triples=[mapped_triples(triples[split == s], n) for s in (TRIPLE_TRAIN, TRIPLE_VALID)],
        restrict_entities_to=torch.arange(n, n + num_values), do_time_consuming_checks=False,
    )
    assert ours["mrr"] == pytest.approx(theirs.get_metric("tail.realistic.inverse_harmonic_mean_rank"), rel=1e-5)
    assert ours["hits@10"] == pytest.approx(theirs.get_metric("tail.realistic.hits_at_10"))
    assert ours["mean_rank"] == pytest.approx(theirs.get_metric("tail.realistic.arithmetic_mean_rank"), rel=1e-5)


@pytest.mark.parametrize("source", ["fashion600", "k3m-sample"])
def test_link_prediction_ranks_both_views_like_brute_force(source, slice_build, k3m_sample_build):
    """The link-prediction task scores each query once and ranks it twice: against every
    value (the standard protocol) and type-constrained (the asked property's values only)."""
    from etl.catalog_build import CatalogBuild
    from k3m.evaluation.metrics import ranking_metrics
    from k3m.evaluation.tasks.link_prediction import LinkPredictionTask

    build = slice_build if source == "fashion600" else CatalogBuild.open(k3m_sample_build)
    triples, split, num_props, num_values = as_graph(build)
    task = LinkPredictionTask(max_queries=150)
    task.prepare(build, None, seed=0)
    assert len(task.facts) == min(150, int((split == TRIPLE_TEST).sum()))
    g = torch.Generator().manual_seed(0)
    item_scores = torch.randn(build.num_items, num_values, generator=g).round(decimals=1)  # with ties
    prop_scores = torch.randn(num_props, num_values, generator=g).round(decimals=1)
    metrics = task.score(lambda items, props: item_scores[torch.from_numpy(items)] + prop_scores[torch.from_numpy(props)])

    scores = item_scores[torch.from_numpy(task.facts[:, 0])] + prop_scores[torch.from_numpy(task.facts[:, 1])]
    values_of = defaultdict(set)
    for _, p, v in triples.tolist():
        values_of[p].add(v)
    every = brute_force_ranks(scores, task.facts, triples)
    typed = brute_force_ranks(scores, task.facts, triples, candidates_of={p: sorted(s) for p, s in values_of.items()})
    expected = ranking_metrics(every, ks=(1, 3, 10))
    expected.update({f"typed_{k}": v for k, v in ranking_metrics(typed, ks=(1, 3, 10)).items()})
    assert metrics == pytest.approx(expected)
    assert metrics["typed_mrr"] > metrics["mrr"] and (typed <= every).all()
