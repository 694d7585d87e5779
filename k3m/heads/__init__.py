"""Pretraining heads and losses: MLM (titles, knowledge values), MOM, LPM, task weighting."""
from k3m.heads.lpm import lpm_distance, lpm_margin_loss
from k3m.heads.mlm import MLMHead
from k3m.heads.mom import MOMHead
from k3m.heads.task_weighting import TaskWeighting

__all__ = ["MLMHead", "MOMHead", "TaskWeighting", "lpm_distance", "lpm_margin_loss"]
