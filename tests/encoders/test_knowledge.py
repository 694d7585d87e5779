"""Property/value vectors are masked means over the exact token spans of the knowledge text."""
from __future__ import annotations

import pytest
import torch

from encoders.knowledge import encode_strings, span_mean
from encoders.text import TextEncoder
from k3m.model import K3MConfig
from k3m.data.knowledge import backend, encode_knowledge

pytestmark = pytest.mark.usefixtures("single_thread")


def test_span_means_over_real_knowledge_text(slice_tokenizer, slice_index, slice_build):
    rows = slice_build.item_indices("train")[:3]
    pairs = [slice_index.pair_strings(slice_index.pairs(int(r))) for r in rows]
    encs = encode_knowledge(backend(slice_tokenizer), pairs, 48)  # the data pipeline's spans
    L = max(len(e.input_ids) for e in encs)
    ids = torch.zeros(3, L, dtype=torch.long)
    for b, e in enumerate(encs):
        ids[b, : len(e.input_ids)] = torch.tensor(e.input_ids)
    pair_item = torch.cat([torch.full((e.num_pairs,), b) for b, e in enumerate(encs)])
    value_span = torch.cat([torch.from_numpy(e.value_spans) for e in encs])
    # the spans cover exactly the value's tokens
    j = 4
    start, end = value_span[j].tolist()
    item = int(pair_item[j])
    value = pairs[item][j - int((pair_item < item).sum())][1]
    assert slice_tokenizer.decode(ids[item, start:end]).replace(" ", "") == value.lower().replace(" ", "")

    hidden = torch.randn(3, L, 16)
    out = span_mean(hidden, pair_item, value_span)
    expected = torch.stack([hidden[i, a:z].mean(0) for i, (a, z) in zip(pair_item.tolist(), value_span.tolist())])
    torch.testing.assert_close(out, expected)


def test_encode_strings_no_strings_and_padding(slice_tokenizer):
    torch.manual_seed(0)
    encoder = TextEncoder(K3MConfig.from_preset("tiny").with_tokenizer(slice_tokenizer).text).eval()
    assert encode_strings(encoder, torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 5, dtype=torch.bool)).shape == (0, 128)
    enc = slice_tokenizer(["Navy Blue", "Cotton"], padding=True, return_tensors="pt")
    with torch.no_grad():
        both = encode_strings(encoder, enc["input_ids"], enc["attention_mask"].bool())
        alone = encode_strings(encoder, enc["input_ids"][1:, :3], enc["attention_mask"][1:, :3].bool())
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=1e-4)
