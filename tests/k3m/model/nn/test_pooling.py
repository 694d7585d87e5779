from __future__ import annotations

import pytest
import torch

from k3m.model.nn.pooling import presence_mean

pytestmark = pytest.mark.usefixtures("single_thread")


def test_presence_mean_averages_only_present_modalities():
    a, b = torch.ones(2, 3), 3 * torch.ones(2, 3)
    out = presence_mean([a, b], [torch.tensor([True, False]), torch.tensor([True, True])])
    torch.testing.assert_close(out, torch.tensor([[2.0] * 3, [3.0] * 3]))
