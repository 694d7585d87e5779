"""A 2-D projection of item embeddings, coloured by category, as a PNG.

    from k3m.embedding.projection import embedding_projection
    embedding_projection(store.matrix, build.items["category"], "runs/demo/embeddings.png")

PCA by default (exact, seconds for 44k items); ``method="tsne"`` runs t-SNE on a random
subsample (t-SNE is quadratic-ish: 5k points take about a minute on 2 cores). The most
frequent ``top_categories`` get their own colour and legend entry; the rest are drawn grey
underneath as "other". Rows are L2-normalised first, so the picture shows the cosine
geometry the similarity search uses.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METHODS = ("pca", "tsne")


@dataclass(frozen=True)
class ProjectionSettings:
    method: str = "pca"  # pca | tsne
    max_points: int = 20000  # subsample beyond this (tsne: min(this, 5000))
    top_categories: int = 12  # coloured categories; the others are grey
    seed: int = 0
    title: str | None = None
    point_size: float = 4.0
    dpi: int = 130


def embedding_projection(embeddings, labels, out_png: str | Path, settings: ProjectionSettings = ProjectionSettings()) -> dict:
    """Project ``embeddings`` [N, H] to 2-D, colour by ``labels`` (None = unlabelled), save
    ``out_png``. Returns a summary: points drawn, method, coloured categories, and the
    share of variance the two PCA axes explain (PCA only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if settings.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {settings.method!r}")
    x = np.asarray(embeddings, dtype=np.float32)
    labels = np.array(["(none)" if l is None or (isinstance(l, float) and np.isnan(l)) else str(l) for l in labels], dtype=object)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"need embeddings [N, H] and N labels, got {x.shape} and {len(labels)}")
    if len(x) < 3:
        raise ValueError("need at least 3 items to project")
    rng = np.random.default_rng(settings.seed)
    limit = settings.max_points if settings.method == "pca" else min(settings.max_points, 5000)
    keep = np.sort(rng.choice(len(x), limit, replace=False)) if len(x) > limit else np.arange(len(x))
    x, labels = x[keep], labels[keep]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

    explained = None
    if settings.method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=settings.seed)
        xy = pca.fit_transform(x)
        explained = float(pca.explained_variance_ratio_.sum())
    else:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        reduced = PCA(n_components=min(50, x.shape[1], len(x)), random_state=settings.seed).fit_transform(x)
        xy = TSNE(n_components=2, init="pca", random_state=settings.seed, perplexity=min(30.0, (len(x) - 1) / 3)).fit_transform(reduced)

    top = [c for c, _ in Counter(labels.tolist()).most_common(settings.top_categories)]
    fig, ax = plt.subplots(figsize=(9, 7))
    other = ~np.isin(labels, top)
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=settings.point_size, c="#c8c8c8", linewidths=0,
                   label=f"other ({int(other.sum())})")
    tab20 = plt.get_cmap("tab20")  # dark shades of the 10 hues first, then their light pairs
    palette = [tab20(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
    for n, category in enumerate(top):
        mask = labels == category
        ax.scatter(xy[mask, 0], xy[mask, 1], s=settings.point_size, color=palette[n % len(palette)], linewidths=0,
                   label=f"{category} ({int(mask.sum())})")
    what = "PCA" + (f", {100 * explained:.0f}% of variance" if explained is not None else "") if settings.method == "pca" else "t-SNE"
    ax.set_title(settings.title or f"Item embeddings ({len(x)} items, {what})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=3, frameon=False)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=settings.dpi)
    plt.close(fig)
    return {"path": str(out_png), "points": int(len(x)), "method": settings.method, "categories": top,
            "explained_variance": explained}
