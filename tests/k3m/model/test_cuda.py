"""CUDA: bf16 autocast forward/backward, fused attention, and no host syncs in the model's
own code. Skipped without a GPU (CI has none); run on a GPU machine with `pytest -m gpu`."""
from __future__ import annotations

import pytest
import torch

from k3m.model import K3MModel

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_autocast_matches_fp32(tiny_model_config, slice_tokenizer, make_batch):
    batch = make_batch(tiny_model_config, slice_tokenizer, n=8, presence=[(True, True, True), (False, True, True), (True, False, False), (False, False, True)] * 2)
    model = K3MModel(tiny_model_config).cuda()
    batch = batch.to("cuda")
    reference = model.encode_items(batch)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast = model.encode_items(batch)
        out = model(batch)
    assert torch.isfinite(out.losses["loss"]) and fast.dtype in (torch.bfloat16, torch.float32)
    torch.testing.assert_close(fast.float(), reference, atol=0.1, rtol=0.05)
    out.losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_no_host_sync_outside_the_text_encoder(tiny_model_config, slice_tokenizer, make_batch):
    """Everything after the (transformers) BERT runs with CUDA sync debugging set to error."""
    batch = make_batch(tiny_model_config, slice_tokenizer, n=8).to("cuda")
    model = K3MModel(tiny_model_config).cuda()
    model(batch)  # warm-up (lazy initialisation may sync once)
    text_encoder = model.stem.text_encoder

    class Synced(torch.nn.Module):  # runs BERT with sync checks off, the rest with them on
        word_embeddings = text_encoder.word_embeddings

        def forward(self, *args, **kwargs):
            torch.cuda.set_sync_debug_mode(0)
            try:
                return text_encoder(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("error")

    model.stem.text_encoder = Synced()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = model(batch)
        out.losses["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
