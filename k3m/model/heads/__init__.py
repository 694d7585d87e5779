"""Pretraining heads and losses: MLM (titles, knowledge values), MOM, LPM, task weighting;
with frozen encoders, modality reconstruction and masked pair (value) prediction."""
from k3m.model.heads.lpm import lpm_distance, lpm_margin_loss, rows_of
from k3m.model.heads.mlm import MLMHead
from k3m.model.heads.mom import MOMHead
from k3m.model.heads.reconstruction import ReconstructionHead
from k3m.model.heads.task_weighting import TaskWeighting
from k3m.model.heads.value_prediction import ValuePredictionHead

__all__ = ["MLMHead", "MOMHead", "ReconstructionHead", "TaskWeighting", "ValuePredictionHead", "lpm_distance",
           "lpm_margin_loss", "rows_of"]
