"""Pretraining losses: LPM margin loss, MLM/MOM means over real targets, task weighting."""
from __future__ import annotations

import pytest
import torch

from k3m.model import LPMTargets, Pairs
from k3m.model.configuration import LossConfig
from k3m.model.heads.lpm import lpm_distance, lpm_margin_loss, rows_of
from k3m.model.heads.mlm import MLMHead
from k3m.model.heads.mom import MOMHead
from k3m.model.heads.task_weighting import TaskWeighting

pytestmark = pytest.mark.usefixtures("single_thread")


def test_lpm_margin_loss_is_the_papers_formula():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3, 4, generator=g)  # c*
    props, values = torch.randn(2, 4, generator=g), torch.randn(5, 4, generator=g)
    lpm = LPMTargets(
        # item, property, value; global ids, the tables' order differs from sorted order
        positives=Pairs(torch.tensor([0, 0, 2]), torch.tensor([70, 30, 70]), torch.tensor([11, 12, 10])),
        neg_value=torch.tensor([[13, 14], [14, -1], [11, 13]]),
        neg_item=torch.tensor([[1, -1], [2, 1], [-1, -1]]),
        value_ids=torch.tensor([12, 10, 11, 14, 13]),
        property_ids=torch.tensor([70, 30]),
    )
    gamma = 0.5
    loss = lpm_margin_loss(c, props, values, lpm, gamma)
    P, V = {70: 0, 30: 1}, {12: 0, 10: 1, 11: 2, 14: 3, 13: 4}
    terms = []
    for j in range(3):
        q = lpm.positives
        i, p, v = int(q.item[j]), props[P[int(q.property[j])]], values[V[int(q.value[j])]]
        pos = torch.linalg.vector_norm(c[i] + p - v)
        terms += [torch.relu(gamma + pos - torch.linalg.vector_norm(c[i] + p - values[V[int(n)]])) for n in lpm.neg_value[j] if n >= 0]
        terms += [torch.relu(gamma + pos - torch.linalg.vector_norm(c[int(n)] + p - v)) for n in lpm.neg_item[j] if n >= 0]
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    assert torch.equal(rows_of(torch.tensor([13, 10, 12]), lpm.value_ids), torch.tensor([4, 1, 0]))


def test_lpm_distance_broadcasts_and_l1():
    items, prop, vals = torch.randn(2, 1, 8), torch.randn(2, 1, 8), torch.randn(1, 6, 8)
    d = lpm_distance(items, prop, vals)
    assert d.shape == (2, 6)
    torch.testing.assert_close(lpm_distance(items, prop, vals, norm=1)[1, 3], (items[1, 0] + prop[1, 0] - vals[0, 3]).abs().sum())


def test_mlm_loss_over_masked_positions_only_and_zero_without_any():
    torch.manual_seed(0)
    head, emb = MLMHead(8, 11), torch.randn(11, 8)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    labels = torch.full((2, 5), -100)
    labels[0, 1], labels[1, 4] = 3, 7
    logits = head(hidden, emb)
    expected = torch.nn.functional.cross_entropy(torch.stack([logits[0, 1], logits[1, 4]]), torch.tensor([3, 7]))
    torch.testing.assert_close(head.loss(hidden, labels, emb), expected)
    none = head.loss(hidden, torch.full((2, 5), -100), emb)
    assert none.item() == 0.0
    none.backward()
    assert torch.isfinite(hidden.grad).all()


def test_mom_regression_and_kl():
    torch.manual_seed(0)
    tokens, mask = torch.randn(2, 4, 8), torch.tensor([[True, False, False, True], [False] * 4])
    reg = MOMHead(8, 6, "regression")
    target = torch.randn(2, 4, 6)
    pred = reg.net(tokens)
    torch.testing.assert_close(reg.loss(tokens, target, mask), (pred - target).pow(2).mean(-1)[mask].mean())
    kl = MOMHead(8, 5, "distribution")
    probs = torch.softmax(torch.randn(2, 4, 5), -1)
    expected = torch.nn.functional.kl_div(torch.log_softmax(kl.net(tokens), -1)[mask], probs[mask], reduction="batchmean")
    torch.testing.assert_close(kl.loss(tokens, probs, mask), expected)
    assert kl.loss(tokens, probs, torch.zeros_like(mask)).item() == 0.0  # nothing masked: 0, not 0/0


def test_task_weighting_fixed_and_adaptive():
    losses = {"mlm_title": torch.tensor(2.0), "lpm": torch.tensor(4.0)}
    fixed = TaskWeighting(LossConfig(mlm_title=1.0, lpm=0.5))
    assert fixed(losses).item() == 4.0 and list(fixed.parameters()) == []
    adaptive = TaskWeighting(LossConfig(adaptive=True))
    with torch.no_grad():
        adaptive.log_vars["lpm"].fill_(1.0)
    torch.testing.assert_close(adaptive(losses), torch.tensor(2.0 + 4.0 * torch.exp(torch.tensor(-1.0)).item() + 1.0))
