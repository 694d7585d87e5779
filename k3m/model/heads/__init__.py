"""Pretraining heads and losses: one task head per name in each encoder mode's registry
(``registry.HEADS``), reading a forward pass through ``HeadContext``. Trainable encoders: MLM
(titles, knowledge values), MOM; frozen encoders: modality reconstruction and masked pair
(value) prediction, matching, consistency; both: LPM. TaskWeighting sums them."""
from k3m.model.heads.base import TaskHead
from k3m.model.heads.consistency import ModalityConsistency
from k3m.model.heads.context import HeadContext
from k3m.model.heads.lpm import LinkPrediction, lpm_distance, lpm_margin_loss, rows_of
from k3m.model.heads.matching import Matching
from k3m.model.heads.mlm import MaskedTokens, MLMHead
from k3m.model.heads.mom import MaskedVisualTokens, MOMHead
from k3m.model.heads.reconstruction import ModalityReconstruction, ReconstructionHead
from k3m.model.heads.registry import HEADS, build_heads
from k3m.model.heads.task_weighting import TaskWeighting
from k3m.model.heads.value_prediction import MaskedPairs, ValuePredictionHead

__all__ = ["HEADS", "HeadContext", "LinkPrediction", "MLMHead", "MOMHead", "MaskedPairs", "MaskedTokens",
           "MaskedVisualTokens", "Matching", "ModalityConsistency", "ModalityReconstruction", "ReconstructionHead", "TaskHead", "TaskWeighting",
           "ValuePredictionHead", "build_heads", "lpm_distance", "lpm_margin_loss", "rows_of"]
