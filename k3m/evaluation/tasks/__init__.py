"""The downstream tasks, one class each, registered by name: ``make_task(name, config)``.

Each class declares the facts the runner and the report need (``title``, ``metrics``,
``note``, ``trains_head``, ``needs_lpm``, ``clean_only``, ``from_config``); adding a task is
adding a class here.
"""
from __future__ import annotations

from etl.errors import InvalidValue
from k3m.evaluation.tasks.alignment import AlignmentTask
from k3m.evaluation.tasks.attribute_qa import AttributeQATask, LPMAttributeQATask
from k3m.evaluation.tasks.base import Examples, HeadTask, Pools, ScoringTask, Task
from k3m.evaluation.tasks.classification import ClassificationTask
from k3m.evaluation.tasks.link_prediction import LinkPredictionTask
from k3m.evaluation.tasks.neighbours import NeighbourTask

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (ClassificationTask, AlignmentTask, AttributeQATask, LPMAttributeQATask, LinkPredictionTask,
                                            NeighbourTask)
}


def make_task(name: str, config) -> Task:
    """A fresh task object for ``name``, sized by the evaluation ``config``."""
    if name not in TASKS:
        raise InvalidValue(f"unknown task {name!r}; choose from {list(TASKS)}")
    return TASKS[name].from_config(config)


__all__ = [
    "TASKS",
    "AlignmentTask",
    "AttributeQATask",
    "ClassificationTask",
    "Examples",
    "HeadTask",
    "LPMAttributeQATask",
    "LinkPredictionTask",
    "NeighbourTask",
    "Pools",
    "ScoringTask",
    "Task",
    "make_task",
]
