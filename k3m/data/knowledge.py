"""Knowledge text: an item's (property, value) pairs written as ``p1 : v1 ; p2 : v2 ; ...``.

Token spans of each property and value come from the tokenizer's offset mapping (character
spans of the text → token spans), so no separator token ids are assumed. The text is capped
at ``max_pairs`` pairs and ``max_tokens`` tokens (special tokens included); a pair whose
value would be cut by the token cap is dropped entirely, together with the pairs after it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAIR_SEP = " ; "
KV_SEP = " : "


@dataclass
class KnowledgeEncoding:
    input_ids: list[int]  # with the tokenizer's special tokens; empty when no pair is kept
    num_pairs: int  # pairs kept (a prefix of the pairs given)
    property_spans: np.ndarray  # int64 [num_pairs, 2] token [start, end)
    value_spans: np.ndarray  # int64 [num_pairs, 2]


def knowledge_text(pairs: list[tuple[str, str]]) -> tuple[str, np.ndarray]:
    """The text and the character spans ``[p_start, p_end, v_start, v_end]`` of each pair."""
    parts, spans, pos = [], [], 0
    for j, (prop, value) in enumerate(pairs):
        if j:
            parts.append(PAIR_SEP)
            pos += len(PAIR_SEP)
        p0 = pos
        pos += len(prop)
        v0 = pos + len(KV_SEP)
        pos = v0 + len(value)
        parts += [prop, KV_SEP, value]
        spans.append((p0, p0 + len(prop), v0, pos))
    return "".join(parts), np.asarray(spans, dtype=np.int64).reshape(-1, 4)


def _token_spans(offsets, special: np.ndarray, char_spans: np.ndarray) -> np.ndarray:
    """Token ``[start, end)`` of each character span ``[a, b)``: the non-special tokens lying
    inside it. Returns int64 [n, 2]."""
    real = np.flatnonzero(~special)
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[real]
    start = np.searchsorted(off[:, 0], char_spans[:, 0], side="left")
    end = np.searchsorted(off[:, 1], char_spans[:, 1], side="right")
    if np.any(end <= start):
        raise ValueError("a property or value string produced no tokens")
    return np.stack([real[start], real[end - 1] + 1], axis=1)


def backend(tokenizer, max_length: int | None = None):
    """A private copy of a fast tokenizer's Rust backend without padding, truncating at
    ``max_length`` tokens (special tokens included; None = never). Encoding through it skips
    transformers' per-call conversions and never changes the shared tokenizer's state."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    tok.no_padding()
    if max_length is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_length)
    return tok


def encode_knowledge(tokenizer, pair_strings: list[list[tuple[str, str]]], max_tokens: int) -> list[KnowledgeEncoding]:
    """Tokenize each item's knowledge text, keeping the longest prefix of pairs that fits.
    ``tokenizer``: a ``tokenizers.Tokenizer`` without truncation (see :func:`backend`)."""
    out: list[KnowledgeEncoding | None] = [None] * len(pair_strings)
    todo = [i for i, pairs in enumerate(pair_strings) if pairs]
    for i in set(range(len(pair_strings))) - set(todo):
        out[i] = KnowledgeEncoding([], 0, np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64))
    keep = {i: len(pair_strings[i]) for i in todo}
    while todo:
        texts = [knowledge_text(pair_strings[i][: keep[i]]) for i in todo]
        encodings = tokenizer.encode_batch([t for t, _ in texts])
        again = []
        for enc, i, (_, char_spans) in zip(encodings, todo, texts):
            ids, special = enc.ids, np.asarray(enc.special_tokens_mask, dtype=bool)
            spans = _token_spans(enc.offsets, special, char_spans.reshape(-1, 2)).reshape(-1, 4)
            if len(ids) <= max_tokens:
                out[i] = KnowledgeEncoding(ids, keep[i], spans[:, :2], spans[:, 2:])
                continue
            # trailing special tokens (e.g. [SEP]) must still fit after the last kept value
            tail = len(ids) - 1 - int(np.flatnonzero(~special)[-1])
            fits = int(np.sum(spans[:, 3] + tail <= max_tokens))
            keep[i] = min(fits, keep[i] - 1)
            if keep[i] == 0:
                out[i] = KnowledgeEncoding([], 0, np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64))
            else:
                again.append(i)
        todo = again
    return out  # type: ignore[return-value]
