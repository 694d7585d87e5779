from __future__ import annotations

import pytest
import torch

from k3m.model.nn.pooling import masked_mean, presence_mean

pytestmark = pytest.mark.usefixtures("single_thread")


def test_masked_mean_ignores_padding_and_empty_rows_are_zero():
    x = torch.arange(24.0).view(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_mean(x, mask)
    torch.testing.assert_close(out[0], x[0, :2].mean(0))
    assert torch.equal(out[1], torch.zeros(4))


def test_presence_mean_averages_only_present_modalities():
    a, b = torch.ones(2, 3), 3 * torch.ones(2, 3)
    out = presence_mean([a, b], [torch.tensor([True, False]), torch.tensor([True, True])])
    torch.testing.assert_close(out, torch.tensor([[2.0] * 3, [3.0] * 3]))
