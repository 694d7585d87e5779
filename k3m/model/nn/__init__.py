"""K3M building blocks, one concept per module."""
from k3m.model.nn.attention import MultiHeadAttention, TransformerLayer
from k3m.model.nn.co_attention import CoAttentionLayer, CoAttentionStack
from k3m.model.nn.iifm import IIFM
from k3m.model.nn.pooling import presence_mean
from k3m.model.nn.projection import FeatureProjection
from k3m.model.nn.structure_aggregation import StructureAggregation

__all__ = [
    "CoAttentionLayer",
    "CoAttentionStack",
    "FeatureProjection",
    "IIFM",
    "MultiHeadAttention",
    "StructureAggregation",
    "TransformerLayer",
    "presence_mean",
]
