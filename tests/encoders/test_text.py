"""Tokenizers (trained WordPiece, MiniLM's) and strict loading of BERT checkpoints."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from encoders.text import TextEncoder, load_pretrained_bert, load_tokenizer, minilm_dir
from encoders.weights import CheckpointMismatchError
from k3m.model import K3MConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def test_trained_wordpiece_round_trips_and_gives_offsets(slice_tokenizer, slice_index, tmp_path):
    title = next(t for t in slice_index.titles if t)
    enc = slice_tokenizer(title, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    assert ids[0] == slice_tokenizer.cls_token_id and ids[-1] == slice_tokenizer.sep_token_id
    assert slice_tokenizer.unk_token_id not in ids  # trained on these titles
    words = [title[a:b].lower() for a, b in offsets[1:-1]]
    assert "".join(words) == title.lower().replace(" ", "")
    slice_tokenizer.save_pretrained(str(tmp_path))
    again = load_tokenizer(tmp_path)
    assert again(title)["input_ids"] == ids and len(again) == len(slice_tokenizer) <= 2000
    assert again.mask_token == "[MASK]" and again.pad_token_id == 0


def test_minilm_dir_and_tokenizer():
    path = minilm_dir()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    tok = load_tokenizer(path)
    enc = tok("Turtle Check Men Navy Blue Shirt", return_offsets_mapping=True)
    assert len(tok) == 30522 and enc["offset_mapping"][1] == (0, 6)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_tokenizer(path / "1_Pooling")


def minilm_encoder() -> TextEncoder:
    return TextEncoder(K3MConfig.from_preset("tiny").with_pretrained_text(minilm_dir()).text)


def test_strict_loading_accepts_a_bert_prefix_and_reports_ignored_heads(tmp_path):
    state = load_file(str(minilm_dir() / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in state.items()} | {"cls.predictions.bias": torch.zeros(30522)}, str(tmp_path / "model.safetensors"))
    encoder = minilm_encoder()
    report = load_pretrained_bert(encoder, tmp_path)
    assert "cls.predictions.bias" in report.ignored and "pooler.dense.weight" in report.ignored
    assert torch.equal(encoder.word_embeddings.weight, state["embeddings.word_embeddings.weight"])


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path):
    state = load_file(str(minilm_dir() / "model.safetensors"))
    state.pop("encoder.layer.5.output.dense.weight")
    state["encoder.layer.9.output.dense.weight"] = torch.zeros(1)
    state["embeddings.position_embeddings.weight"] = state["embeddings.position_embeddings.weight"][:128]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained_bert(minilm_encoder(), tmp_path)
    e = err.value
    assert e.missing == ["encoder.layer.5.output.dense.weight"]
    assert e.unexpected == ["encoder.layer.9.output.dense.weight"]
    assert e.mismatched == ["embeddings.position_embeddings.weight: checkpoint (128, 384) vs model (512, 384)"]
    assert "missing keys: encoder.layer.5.output.dense.weight" in str(e)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_pretrained_bert(minilm_encoder(), tmp_path / "nowhere")
