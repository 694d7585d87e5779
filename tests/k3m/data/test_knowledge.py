import numpy as np
import pytest

from k3m.data import encode_knowledge, knowledge_text
from k3m.data.knowledge import backend


def standalone(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_knowledge_text_character_spans():
    text, spans = knowledge_text([("brandName", "Palm Tree"), ("Body or Garment Size", "To-Fit Denotes Body Measurements in")])
    assert text == "brandName : Palm Tree ; Body or Garment Size : To-Fit Denotes Body Measurements in"
    assert [text[a:b] for a, b, _, _ in spans] == ["brandName", "Body or Garment Size"]
    assert [text[c:d] for _, _, c, d in spans] == ["Palm Tree", "To-Fit Denotes Body Measurements in"]


@pytest.mark.parametrize("tok", ["slice_tokenizer", "minilm_tokenizer"])
def test_spans_are_the_property_and_value_tokens(tok, request, slice_build, slice_index):
    tokenizer = request.getfixturevalue(tok)
    rows = slice_build.item_indices("train")[:64]
    pairs = [slice_index.pair_strings(slice_index.pairs(int(r))[:10]) for r in rows]
    checked = 0
    for strings, enc in zip(pairs, encode_knowledge(backend(tokenizer), pairs, max_tokens=512)):
        assert enc.num_pairs == len(strings)  # nothing cut at 512 tokens
        for (prop, value), (pa, pb), (va, vb) in zip(strings, enc.property_spans, enc.value_spans):
            assert enc.input_ids[pa:pb] == standalone(tokenizer, prop)
            assert enc.input_ids[va:vb] == standalone(tokenizer, value)
            checked += 1
    assert checked > 300


def test_token_cap_keeps_whole_pairs_only(slice_tokenizer, slice_build, slice_index):
    rows = slice_build.item_indices("train")[:64]
    pairs = [slice_index.pair_strings(slice_index.pairs(int(r))) for r in rows]
    full = encode_knowledge(backend(slice_tokenizer), pairs, max_tokens=1024)
    capped = encode_knowledge(backend(slice_tokenizer), pairs, max_tokens=24)
    cut = 0
    for strings, f, c in zip(pairs, full, capped):
        assert 1 <= len(c.input_ids) <= 24
        assert c.input_ids[-1] == slice_tokenizer.sep_token_id
        assert 0 < c.num_pairs <= f.num_pairs
        # the kept pairs are a prefix, encoded exactly as in the uncut text
        assert c.input_ids[:-1] == f.input_ids[: int(f.value_spans[c.num_pairs - 1, 1])]
        for (_, value), (va, vb) in zip(strings, c.value_spans):
            assert c.input_ids[va:vb] == standalone(slice_tokenizer, value)
        # and the next pair would not have fitted
        if c.num_pairs < f.num_pairs:
            cut += 1
            assert f.value_spans[c.num_pairs, 1] + 1 > 24
    assert cut > 30


def test_no_pairs_no_knowledge(slice_tokenizer):
    (enc,) = encode_knowledge(backend(slice_tokenizer), [[]], max_tokens=48)
    assert enc.input_ids == [] and enc.num_pairs == 0 and enc.value_spans.shape == (0, 2)
