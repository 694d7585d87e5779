"""IIFM: mean / soft / hard fusion of initial and interacted features."""
from __future__ import annotations

import pytest
import torch

from k3m.model.nn.iifm import IIFM

pytestmark = pytest.mark.usefixtures("single_thread")


def candidates(seed=0, shape=(2, 5, 8), n=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


def test_mean_and_single_candidate():
    x = candidates()
    torch.testing.assert_close(IIFM(8, 3, "mean")(x), (x[0] + x[1] + x[2]) / 3)
    only = IIFM(8, 1, "hard")
    assert only(x[:1]) is x[0] and len(list(only.parameters())) == 0
    with pytest.raises(ValueError, match="3 candidates"):
        IIFM(8, 3, "soft")(x[:2])


def test_soft_gates_are_sigmoids_of_the_concatenation():
    torch.manual_seed(0)
    fusion = IIFM(8, 3, "soft")
    x = candidates()
    stacked = torch.stack(x, -2)
    gates = torch.sigmoid(fusion.gate(stacked.flatten(-2))).view_as(stacked)
    torch.testing.assert_close(fusion(x), fusion.proj((stacked * gates).flatten(-2)))


def test_hard_is_deterministic_at_eval_and_one_hot_with_straight_through_gradient_in_training():
    torch.manual_seed(0)
    fusion = IIFM(8, 3, "hard", tau=1.0)
    x = [t.requires_grad_(True) for t in candidates()]
    stacked = torch.stack(x, -2)
    fusion.eval()
    chosen = fusion.gate(stacked.flatten(-2)).view_as(stacked).argmax(-2)  # per token and channel
    expected = fusion.proj((stacked * torch.nn.functional.one_hot(chosen, 3).movedim(-1, -2)).flatten(-2))
    torch.testing.assert_close(fusion(x), expected)
    assert torch.equal(fusion(x), fusion(x))  # no Gumbel noise at eval
    fusion.train()
    outs = [fusion(x) for _ in range(3)]
    assert not torch.equal(outs[0], outs[1])  # Gumbel noise in training
    outs[0].sum().backward()
    assert fusion.gate.weight.grad.abs().sum() > 0  # straight-through: the gates learn
