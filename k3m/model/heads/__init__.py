"""Pretraining heads and losses: MLM (titles, knowledge values), MOM, LPM, task weighting."""
from k3m.model.heads.lpm import lpm_distance, lpm_margin_loss
from k3m.model.heads.mlm import MLMHead
from k3m.model.heads.mom import MOMHead
from k3m.model.heads.task_weighting import TaskWeighting

__all__ = ["MLMHead", "MOMHead", "TaskWeighting", "lpm_distance", "lpm_margin_loss"]
