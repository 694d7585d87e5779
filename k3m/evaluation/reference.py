"""The paper's published numbers (Zhu et al., ACM MM 2021, on Taobao data), for context.

Only values stated in the project's design notes (DESIGN.md §4, read off the paper's
figures) are listed; they are shown beside ours in the report and as markers in the plots,
never compared as if the data were the same. Values in percent; ratio 0 is the clean
setting and holds for every setting's panel.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperValue:
    task: str
    metric: str
    setting: str  # "clean" for ratio 0
    ratio: float
    model: str  # our model name the paper's model corresponds to
    paper_model: str
    value: float  # percent
    approximate: bool  # read off a figure ("≈") rather than printed


PAPER_VALUES: tuple[PaperValue, ...] = (
    PaperValue("classification", "accuracy", "clean", 0.0, "k3m", "K3M", 93.0, True),
    PaperValue("classification", "accuracy", "TMR", 1.0, "k3m", "K3M", 87.0, True),
    PaperValue("classification", "accuracy", "TMR", 1.0, "no_kg", "no PKG (ViLBERT)", 49.0, True),
    PaperValue("qa", "rank@10", "clean", 0.0, "k3m", "K3M", 87.2, False),
    PaperValue("qa", "rank@10", "TMR", 1.0, "k3m", "K3M", 76.8, False),
    PaperValue("qa", "rank@10", "TMR", 1.0, "no_kg", "ViLBERT", 38.5, False),
    PaperValue("qa", "rank@10", "TINR", 1.0, "k3m", "K3M", 73.7, False),
    PaperValue("qa", "rank@10", "TINR", 1.0, "no_kg", "ViLBERT", 2.1, False),
)


def paper_values(task: str, metric: str) -> list[PaperValue]:
    return [v for v in PAPER_VALUES if v.task == task and v.metric == metric]
