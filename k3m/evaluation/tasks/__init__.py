"""Downstream tasks by name: ``make_task(name, config)``."""
from __future__ import annotations

from k3m.evaluation.tasks.alignment import AlignmentTask
from k3m.evaluation.tasks.attribute_qa import AttributeQATask, LPMAttributeQATask
from k3m.evaluation.tasks.base import Examples, HeadTask, Pools, ScoringTask
from k3m.evaluation.tasks.classification import ClassificationTask
from k3m.evaluation.tasks.link_prediction import LinkPredictionTask


def make_task(name: str, config):
    """A fresh task object for ``name``, sized by the evaluation ``config``."""
    if name == "classification":
        return ClassificationTask()
    if name == "alignment":
        a = config.alignment
        return AlignmentTask(a.max_positives_per_group, a.hard_negatives, a.random_negatives)
    if name == "qa":
        return AttributeQATask()
    if name == "qa_lpm":
        return LPMAttributeQATask()
    if name == "link_prediction":
        return LinkPredictionTask(config.link_prediction.max_queries)
    raise ValueError(f"unknown task {name!r}")


__all__ = [
    "AlignmentTask",
    "AttributeQATask",
    "ClassificationTask",
    "Examples",
    "HeadTask",
    "LPMAttributeQATask",
    "LinkPredictionTask",
    "Pools",
    "ScoringTask",
    "make_task",
]
