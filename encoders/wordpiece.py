"""A deterministic WordPiece trainer.

``tokenizers``' WordPieceTrainer numbers continuation symbols (``##x``) in hash-map order,
which differs between processes, and breaks ties between equally frequent merges by those
numbers: two trainings on the same texts give different vocabularies, so two pretraining
runs with the same seed would differ. This trainer learns the same kind of vocabulary (BPE
merges over BERT-normalised words, continuations prefixed ``##``) with ties broken by the
symbols' strings, and returns a BERT-layout fast tokenizer (BERT normaliser and pre-tokenizer, [CLS]/[SEP]
template, SPECIAL_TOKENS). Called through
``encoders.text.train_wordpiece_tokenizer``.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

PREFIX = "##"
SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


def _merge_symbol(a: str, b: str) -> str:
    return a + b[len(PREFIX) :]


def learn_vocab(word_counts: Counter, vocab_size: int, specials: list[str], min_frequency: int = 2) -> list[str]:
    """Specials, the sorted alphabet, then merged symbols in merge order (most frequent
    adjacent pair first; ties by the pair's strings)."""
    words = [[w[0]] + [PREFIX + c for c in w[1:]] for w in sorted(word_counts)]
    counts = [word_counts[w] for w in sorted(word_counts)]
    vocab = list(specials) + sorted({s for w in words for s in w} - set(specials))
    known = set(vocab)
    pair_count: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_count[pair] += counts[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pair_count.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:
            continue  # stale entry
        if -neg < min_frequency:
            break
        new = _merge_symbol(*pair)
        if new not in known:
            vocab.append(new)
            known.add(new)
        changed: Counter = Counter()
        for i in sorted(where.pop(pair)):
            w, out, j = words[i], [], 0
            while j < len(w):
                if j + 1 < len(w) and (w[j], w[j + 1]) == pair:
                    out.append(new)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            for old in zip(w, w[1:]):
                changed[old] -= counts[i]
            for fresh in zip(out, out[1:]):
                changed[fresh] += counts[i]
                where[fresh].add(i)
            words[i] = out
        for p, delta in sorted(changed.items()):
            if delta:
                pair_count[p] += delta
                if pair_count[p] > 0:
                    heapq.heappush(heap, (-pair_count[p], p))
        pair_count.pop(pair, None)
    return vocab


def train_wordpiece(texts: Iterable[str], vocab_size: int, out_dir: str | Path, lowercase: bool = True, min_frequency: int = 2):
    """Train on ``texts``, save to ``out_dir`` (HF format) and return the fast tokenizer."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    word_counts: Counter = Counter()
    for text in texts:
        if text:
            word_counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    specials = list(SPECIAL_TOKENS.values())
    vocab = learn_vocab(word_counts, vocab_size, specials, min_frequency)
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece(prefix=PREFIX)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return fast
