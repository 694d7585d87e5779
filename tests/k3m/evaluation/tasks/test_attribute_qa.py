"""Attribute QA on the real fashion600 slice: the asked facts are held out of every input
and never trained on, and the head's pair logits are ranked exactly like the shared
filtered ranking over the property's values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from etl.catalog_build import TRIPLE_TEST, TRIPLE_TRAIN
from k3m.data import CatalogIndex
from k3m.evaluation.pools import make_pools
from k3m.evaluation.ranking import KnownFacts, property_candidates, rank_queries
from k3m.evaluation.tasks.attribute_qa import AttributeQATask


@pytest.fixture(scope="module")
def task(slice_build):
    t = AttributeQATask()
    t.prepare(slice_build, make_pools(slice_build, None, None, seed=0), seed=0)
    return t


def test_asked_facts_are_held_out_and_never_trained_on(slice_build, task):
    triples = np.asarray(slice_build.triples, dtype=np.int64)
    split = np.asarray(slice_build.triple_split)
    code = {tuple(t): s for t, s in zip(triples.tolist(), split.tolist())}
    items = slice_build.items["split"].to_numpy()
    test = np.column_stack([task.test.rows[:, 0], task.test.extra["property"], task.test.target])
    train = np.column_stack([task.train.rows[:, 0], task.train.extra["property"], task.train.target])
    assert {code[tuple(f)] for f in test.tolist()} == {TRIPLE_TEST}
    assert TRIPLE_TRAIN not in {code[tuple(f)] for f in train.tolist()}
    assert set(items[test[:, 0]]) == {"test"} and set(items[train[:, 0]]) == {"train"}
    index = CatalogIndex.from_build(slice_build)  # what the models read as knowledge
    for i, p, v in test.tolist():
        assert [p, v] not in index.pairs(i).tolist()


def test_head_is_a_softmax_per_property_ranked_like_the_shared_ranking(slice_build, task):
    head = task.make_head(16)
    vectors = torch.randn(len(task.test), 1, 16, generator=torch.Generator().manual_seed(0))
    props = task.test.extra["property"]
    # the same head written densely, one query at a time
    dense = torch.full((len(task.test), task.num_values), float("-inf"))
    for q, p in enumerate(props.tolist()):
        s, e = int(task.pair_offsets[p]), int(task.pair_offsets[p + 1])
        dense[q, task.pair_value[s:e]] = (vectors[q, 0] @ head.weight[s:e].T + head.bias[s:e]).detach()
    triples = np.asarray(slice_build.triples, dtype=np.int64)
    candidates = property_candidates(triples, len(slice_build.properties), task.num_values)
    assert torch.equal(torch.isfinite(dense), candidates[torch.from_numpy(props)])

    out = task.logits(head, vectors, task.test)
    loss = task.loss(out, task.test)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(dense, torch.from_numpy(task.test.target)))
    loss.backward()
    assert head.weight.grad.abs().sum() > 0

    ours = task.measure(out, task.test)
    ranks = rank_queries(lambda sl: dense[sl], task.test.rows[:, 0], props, task.test.target,
                         KnownFacts(triples, len(slice_build.properties)), task.num_values, candidates=candidates)
    assert ours["mrr"] == pytest.approx(float(np.mean(1 / ranks)))
    assert ours["rank@10"] == pytest.approx(float(np.mean(ranks <= 10)))
