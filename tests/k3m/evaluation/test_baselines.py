"""Off-the-shelf representations in `k3m evaluate` on the real fashion600 slice: the same
pools, corruption and probes as K3M; the guess without input; corruption reaching them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from k3m.cli import main

REPO = Path(__file__).resolve().parents[3]
BASELINES = ["most_frequent", "tfidf_title", "minilm_title", "effnet_image", "minilm_knowledge", "minilm_effnet_knowledge"]


@pytest.fixture(scope="module")
def cells(fashion_slice_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("baselines") / "grid"
    argv = ["evaluate", "--config", str(REPO / "configs" / "evaluate_test.yaml"), "--build", str(fashion_slice_build),
            "--out", str(out), "--set", f"models=[{', '.join(BASELINES)}]", "--set", "tasks=[classification, alignment, qa]",
            "--set", "settings=[TMR, TNR]", "--set", "baselines.image_size=64"]
    assert main(argv) == 0
    records = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert "MiniLM title ‖ EfficientNet ‖ MiniLM knowledge" in (out / "report.md").read_text()
    return {(r["task"], r["setting"], r["ratio"], r["model"]): r["metrics"] for r in records if r["kind"] == "cell"}


def test_every_baseline_has_every_cell(cells):
    conditions = [("clean", 0.0), ("TMR", 1.0), ("TNR", 1.0)]
    assert set(cells) == {(t, s, r, m) for t in ("classification", "alignment", "qa") for s, r in conditions for m in BASELINES}


def test_the_guess_without_input(cells, slice_build):
    from k3m.evaluation.pools import make_pools

    pools = make_pools(slice_build, 200, None, seed=0)  # as configs/evaluate_test.yaml
    category = slice_build.items["category_index"].to_numpy()
    train, test = category[pools.finetune], category[pools.test]
    majority = np.bincount(train[train >= 0]).argmax()
    assert cells[("classification", "clean", 0.0, "most_frequent")]["accuracy"] == pytest.approx(np.mean(test[test >= 0] == majority))
    assert cells[("alignment", "clean", 0.0, "most_frequent")]["recall"] == 1.0  # every pair aligned
    assert cells[("classification", "TMR", 1.0, "most_frequent")] == cells[("classification", "clean", 0.0, "most_frequent")]


def test_corruption_reaches_the_baselines(cells):
    acc = lambda s, r, m: cells[("classification", s, r, m)]["accuracy"]  # noqa: E731
    floor = acc("clean", 0.0, "most_frequent")
    for title_only in ("tfidf_title", "minilm_title"):
        assert acc("clean", 0.0, title_only) > floor + 0.2
        assert acc("TMR", 1.0, title_only) <= floor + 0.05  # no title left: nothing to read
        assert acc("TNR", 1.0, title_only) < acc("clean", 0.0, title_only) - 0.2
    assert acc("TMR", 1.0, "effnet_image") == acc("clean", 0.0, "effnet_image")  # reads no title
    # the pairs alone: no corruption reaches them, and they tell the category
    assert acc("TMR", 1.0, "minilm_knowledge") == acc("TNR", 1.0, "minilm_knowledge") == acc("clean", 0.0, "minilm_knowledge")
    assert acc("clean", 0.0, "minilm_knowledge") > floor + 0.2
    # the knowledge block keeps the concatenation up when the title is gone
    assert acc("TMR", 1.0, "minilm_effnet_knowledge") > acc("TMR", 1.0, "minilm_title") + 0.2


def test_blocks_are_unit_length_and_tfidf_keeps_every_ngram_seen_twice(slice_build, slice_index):
    from sklearn.feature_extraction.text import CountVectorizer

    from k3m.evaluation.baselines import BASELINES, BaselineConfig, BaselineEncoder
    from k3m.evaluation.pools import make_pools

    rows = make_pools(slice_build, 200, None, seed=0).test
    config = BaselineConfig(image_size=64)
    vectors = BaselineEncoder(BASELINES["minilm_effnet_knowledge"], slice_build, slice_index, rows, config).encode(rows).numpy()
    title, image, knowledge = vectors[:, :384], vectors[:, 384:384 + 1280], vectors[:, 384 + 1280:]
    for block, present in ((title, [t is not None for t in np.array(slice_index.titles, dtype=object)[rows]]),
                           (image, slice_index.has_image[rows]),
                           (knowledge, [len(slice_index.pairs(int(r))) > 0 for r in rows])):
        norms = np.linalg.norm(block, axis=1)
        assert np.allclose(norms[np.asarray(present)], 1.0, atol=1e-5)
        assert np.all(norms[~np.asarray(present)] == 0.0)  # an absent modality stays an all-zero block
    alone = BaselineEncoder(BASELINES["minilm_knowledge"], slice_build, slice_index, rows, config).encode(rows).numpy()
    assert np.array_equal(alone, knowledge)  # the concatenation's knowledge block, by itself
    tfidf = BaselineEncoder(BASELINES["tfidf_title"], slice_build, slice_index, rows, config)
    train = [t for t in slice_build.items["title"].to_numpy(dtype=object)[slice_build.item_indices("train")]
             if isinstance(t, str) and t.strip()]
    counts = CountVectorizer(ngram_range=(1, 2), min_df=2).fit(train)
    assert set(tfidf.tfidf.vocabulary_) == set(counts.vocabulary_)
    assert tfidf.tfidf_analyzer == "word"


def test_titles_without_spaces_get_character_ngrams(k3m_sample_build):
    """k3m-sample's Chinese titles have no spaces between words: word n-grams would make each
    title one token seen once, an empty vector; a user takes character n-grams there."""
    from etl.catalog_build import CatalogBuild
    from k3m.data import CatalogIndex
    from k3m.evaluation.baselines import BASELINES, BaselineConfig, BaselineEncoder, tfidf_analyzer

    build = CatalogBuild.open(k3m_sample_build)
    rows = build.item_indices("test")
    tfidf = BaselineEncoder(BASELINES["tfidf_title"], build, CatalogIndex.from_build(build), rows, BaselineConfig())
    assert tfidf.tfidf_analyzer == "char"
    vectors = tfidf.encode(rows).numpy()
    assert (np.linalg.norm(vectors, axis=1) > 0.99).mean() > 0.95
    assert tfidf_analyzer(["Slim fit denim jacket 牛仔"]) == "word"
    assert tfidf_analyzer(["牛仔 denim"], "word") == "word"
    with pytest.raises(ValueError, match="tfidf_analyzer"):
        tfidf_analyzer(["x"], "words")
