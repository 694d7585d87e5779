"""Figures in the style of the paper's: a metric against the missing/noise ratio, one line
per model, one panel per setting; the paper's published values (Taobao data) as hollow
stars in the matching model's colour, for context only.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from k3m.evaluation.models import label
from k3m.evaluation.reference import paper_values

COLORS = {"k3m": "C3", "no_kg": "C0", "pkg_text": "C2", "title_only": "C1", "image_only": "C4", "transe": "C7"}


def plot_metric(table: pd.DataFrame, task: str, metric: str, settings: list[str], path: Path) -> Path:
    """``table``: rows of (setting, ratio, model, value) for one task and metric, values in
    [0, 1], ratio-0 rows present under every setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(settings) + 1)
    rows = (len(settings) + 1 + cols - 1) // cols  # one spare panel holds the legend
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False, sharey=True)
    models = list(dict.fromkeys(table["model"]))
    reference = paper_values(task, metric)
    handles = {}
    for ax, setting in zip(axes.flat, settings):
        part = table[table["setting"] == setting]
        for model in models:
            line = part[part["model"] == model].sort_values("ratio")
            if line.empty:
                continue
            (h,) = ax.plot(100 * line["ratio"], 100 * line["value"], marker="o", ms=3, color=COLORS.get(model), label=label(model))
            handles[label(model)] = h
        for ref in reference:
            if ref.setting in (setting, "clean"):
                h = ax.scatter([100 * ref.ratio], [ref.value], marker="*", s=90, facecolors="none",
                               edgecolors=COLORS.get(ref.model, "k"), linewidths=1.2)
                handles[f"paper, Taobao: {ref.paper_model}"] = h
        ax.set_title(setting)
        ax.set_xticks([0, 20, 50, 80, 100])
        ax.set_xlabel("ratio (%)")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric} (%)")
    for ax in list(axes.flat)[len(settings):]:
        ax.axis("off")
    list(axes.flat)[len(settings)].legend(handles.values(), handles.keys(), loc="center", fontsize=8, frameon=False)
    fig.suptitle(f"{task}: {metric} against the corruption ratio")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
