"""The 2-D projection PNG: real embeddings of the fashion slice, coloured by category."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from etl.catalog_build import CatalogBuild
from k3m.embedding.projection import ProjectionSettings, embedding_projection


@pytest.fixture(scope="module")
def fashion_text_features(fashion_slice_build):
    """Real item features: TF-IDF of the titles (not model output; the plot does not care)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    items = CatalogBuild.open(fashion_slice_build).items
    x = TfidfVectorizer(min_df=2).fit_transform(items["title"].fillna("")).toarray().astype(np.float32)
    return x, items["category"].tolist()


def test_pca_png_with_legend(fashion_text_features, tmp_path):
    x, labels = fashion_text_features
    out = embedding_projection(x, labels, tmp_path / "p" / "pca.png", ProjectionSettings(top_categories=5))
    assert out["points"] == 600 and out["categories"][0] == "Tshirts" and len(out["categories"]) == 5
    assert 0 < out["explained_variance"] < 1
    with Image.open(out["path"]) as png:
        assert png.format == "PNG" and png.size[0] > 800
        colours = {c for _, c in png.convert("RGB").getcolors(1 << 20)}
    assert len(colours) > 20  # points in several colours, not a blank canvas


def test_tsne_subsample_and_missing_labels(fashion_text_features, tmp_path):
    x, labels = fashion_text_features
    labels = [None if n % 7 == 0 else l for n, l in enumerate(labels)]
    out = embedding_projection(x, labels, tmp_path / "t.png", ProjectionSettings(method="tsne", max_points=150))
    assert out["points"] == 150 and out["explained_variance"] is None and (tmp_path / "t.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="method"):
        embedding_projection(x, labels, tmp_path / "x.png", ProjectionSettings(method="umap"))
    with pytest.raises(ValueError, match="N labels"):
        embedding_projection(x, labels[:-1], tmp_path / "x.png")
