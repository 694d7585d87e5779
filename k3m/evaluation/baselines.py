"""Off-the-shelf representations: what a user already has instead of K3M, evaluated exactly
like K3M (same pools, same corruption plans, same probe heads).

=========================  =====================================================  ===========
name                       vector                                                 reads
=========================  =====================================================  ===========
most_frequent              none: each task's guess that reads no input            --
                           (most frequent class / value, every pair aligned)
tfidf_title                TF-IDF of the title, every word 1-2-gram seen in two   title
                           or more train titles (scikit-learn; character 1-2-grams
                           for titles written without spaces, e.g. Chinese)
minilm_title               all-MiniLM-L6-v2 over the title, mean-pooled           title
effnet_image               EfficientNet-Lite0 ImageNet features, pooled           image
minilm_effnet              minilm_title ‖ effnet_image                            title, image
minilm_knowledge           MiniLM over the knowledge text alone: what the pairs   knowledge
                           tell when the title and photo cannot be trusted
minilm_effnet_knowledge    minilm_effnet ‖ MiniLM over the knowledge text         all three
=========================  =====================================================  ===========

Each block is L2-normalised before the blocks are concatenated (what a user does before
putting MiniLM beside EfficientNet, whose raw vectors are 7x longer): cosine neighbours then
weigh the blocks alike; the probe standardises every dimension anyway.

Corruption reaches them as it reaches K3M: a missing title or image is an all-zero block
(nothing else to put there), a noisy one is the donor's vector. The knowledge text is the
item's train pairs (``p1 : v1 ; p2 : v2 ...``, most frequent properties first, up to
``knowledge_max_tokens``); held-out facts never reach it. The frozen encoders are the ones
K3M's feature cache uses (the same package weights), at ``image_size`` px for the image
(default: the resolution K3M's features were chosen at for this catalog, so both read the same
image features); features are computed for the evaluated items only, and cached.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional
import numpy as np
import torch

from encoders.cache import FeatureCache, FeatureSpec
from etl.errors import InvalidValue
from k3m.data import CatalogIndex, knowledge_text
from k3m.data.index import FEATURES_DIR_ENV


@dataclass
class BaselineConfig:
    """How the off-the-shelf representations are made."""

    text: str = "minilm"  # a local Hugging Face BERT directory; minilm = all-MiniLM-L6-v2
    image: str = "efficientnet-lite0"
    # EfficientNet's input side; 0 = what K3M reads on this catalog (encoders.resolution, the
    # choice recorded in the build): the baselines and K3M read the same image features
    image_size: int = 0
    max_title_tokens: int = 36
    knowledge_max_tokens: int = 128
    # TF-IDF as a user sets it up: every word 1-2-gram in at least tfidf_min_df train titles;
    # titles written without spaces between words (Chinese, Japanese) get character 1-2-grams,
    # as a user of such a catalog would set it (a "word" there is the whole title). auto picks
    # char when most of the train titles' letters are CJK; word | char force one.
    tfidf_analyzer: str = "auto"
    tfidf_min_df: int = 2
    tfidf_max_features: Optional[int] = None  # None: no cap


@dataclass(frozen=True)
class BaselineSpec:
    name: str
    label: str
    parts: tuple[str, ...]  # tfidf | title | image | knowledge, concatenated in this order
    uses: frozenset = field(default_factory=frozenset)  # modalities read: title, image, knowledge


BASELINES: dict[str, BaselineSpec] = {
    b.name: b
    for b in (
        BaselineSpec("most_frequent", "most frequent (no input)", ()),
        BaselineSpec("tfidf_title", "TF-IDF title", ("tfidf",), frozenset({"title"})),
        BaselineSpec("minilm_title", "MiniLM title", ("title",), frozenset({"title"})),
        BaselineSpec("effnet_image", "EfficientNet image", ("image",), frozenset({"image"})),
        BaselineSpec("minilm_effnet", "MiniLM title ‖ EfficientNet", ("title", "image"), frozenset({"title", "image"})),
        BaselineSpec("minilm_knowledge", "MiniLM knowledge", ("knowledge",), frozenset({"knowledge"})),
        BaselineSpec("minilm_effnet_knowledge", "MiniLM title ‖ EfficientNet ‖ MiniLM knowledge",
                     ("title", "image", "knowledge"), frozenset({"title", "image", "knowledge"})),
    )
}


def _cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF \
        or 0xF900 <= o <= 0xFAFF


def tfidf_analyzer(titles: list[str], asked: str = "auto") -> str:
    """``word`` or ``char``: ``auto`` is char when over half of the titles' letters are CJK."""
    if asked in ("word", "char"):
        return asked
    if asked != "auto":
        raise InvalidValue(f"baselines.tfidf_analyzer must be auto, word or char, got {asked!r}")
    letters = [ch for title in titles for ch in title if ch.isalpha()]
    return "char" if letters and sum(map(_cjk, letters)) > len(letters) / 2 else "word"


class BaselineEncoder:
    """``encode(rows, plan) -> float [n, D]``, like :class:`k3m.embedding.ItemEncoder`."""

    def __init__(self, spec: BaselineSpec, build, index: CatalogIndex, rows: np.ndarray, config: BaselineConfig):
        self.spec, self.build, self.index, self.config = spec, build, index, config
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        self.titles = build.items["title"].to_numpy(dtype=object)
        cache = FeatureCache(FeatureSpec(text=config.text, image=config.image, image_size=config.image_size,
                                         max_title_tokens=config.max_title_tokens), os.environ.get(FEATURES_DIR_ENV))
        self.features = cache.for_build(build, rows=self.rows, progress=False) if {"title", "image"} & set(spec.parts) else None
        if "knowledge" in spec.parts:
            texts = [knowledge_text(index.pair_strings(index.pairs(int(r))))[0] for r in self.rows]
            vectors = cache.pooled_texts(texts, config.knowledge_max_tokens, progress=False)
            has = np.array([len(index.pairs(int(r))) > 0 for r in self.rows])
            self.knowledge = dict(zip(self.rows.tolist(), vectors * has[:, None]))
        if "tfidf" in spec.parts:
            from sklearn.feature_extraction.text import TfidfVectorizer

            train = [t for t in self.titles[build.item_indices("train")] if isinstance(t, str) and t.strip()]
            self.tfidf_analyzer = tfidf_analyzer(train, config.tfidf_analyzer)
            self.tfidf = TfidfVectorizer(analyzer=self.tfidf_analyzer, ngram_range=(1, 2), sublinear_tf=True,
                                         min_df=config.tfidf_min_df, max_features=config.tfidf_max_features).fit(train)

    def encode(self, rows: np.ndarray, plan=None) -> torch.Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        title_rows, image_rows = rows, rows
        if plan is not None:
            where = {int(r): i for i, r in enumerate(plan.items)}
            title_rows = np.array([plan.title_source[where[int(r)]] if int(r) in where else r for r in rows], dtype=np.int64)
            image_rows = np.array([plan.image_source[where[int(r)]] if int(r) in where else r for r in rows], dtype=np.int64)
        blocks = []
        for part in self.spec.parts:
            if part == "tfidf":
                texts = [self.titles[r] if r >= 0 and isinstance(self.titles[r], str) else "" for r in title_rows]
                blocks.append(self.tfidf.transform(texts).toarray().astype(np.float32))
            elif part == "title":
                blocks.append(self.features.title_vectors(title_rows))
            elif part == "image":
                blocks.append(self.features.image_grid(image_rows).astype(np.float32).mean(1))
            elif part == "knowledge":
                blocks.append(np.stack([self.knowledge[int(r)] for r in rows]))
        if not blocks:
            return torch.zeros(len(rows), 1)
        return torch.from_numpy(np.concatenate([unit_rows(b) for b in blocks], axis=1))


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm (an all-zero row, an absent modality, stays zero)."""
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return (block / np.where(norms > 0, norms, 1.0)).astype(np.float32)
