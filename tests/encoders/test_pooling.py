from __future__ import annotations

import torch

from encoders.pooling import masked_mean


def test_masked_mean_ignores_padding_and_empty_rows_are_zero():
    x = torch.arange(24.0).view(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_mean(x, mask)
    torch.testing.assert_close(out[0], x[0, :2].mean(0))
    assert torch.equal(out[1], torch.zeros(4))
