"""What each encoder mode reads: one typed input sub-batch and its pretraining targets per
mode (``K3MConfig.encoders``), made by that mode's input adapter in ``k3m.data.adapters``
and read by that mode's stem and heads in ``k3m.model``.

- ``trainable`` (the encoders are part of the model): :class:`TokenInputs` (token ids of
  the title and the knowledge text, and pixels or detector regions) with
  :class:`TokenTargets` (MLM labels, the MOM mask);
- ``frozen`` (pretrained encoders' outputs from the feature cache): :class:`FeatureInputs`
  (cached token, pair and grid features) with :class:`FeatureTargets` (the item's own title
  and image features to reconstruct, the pairs masked out of the knowledge stream).

Presence (``K3MBatch.*_present``), the pairs' star graph and the LPM targets are shared by
both modes and live in :class:`~k3m.model.batch.K3MBatch` itself. An absent modality has
all-False mask rows here; what sits in its tensors is never read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from k3m.model.batch_graph import Pairs


# -- encoders: trainable ------------------------------------------------------------------
@dataclass
class TokenSequences:
    """A padded batch of token sequences."""

    input_ids: torch.Tensor  # long [N, L]
    attention_mask: torch.Tensor  # bool [N, L], True = real token


@dataclass
class PixelImages:
    """Raw images, for the patch / CNN / EfficientNet encoders."""

    pixels: torch.Tensor  # uint8 [B, 3, H, W]; zeros where the item shows no image


@dataclass
class RegionImages:
    """Precomputed detector regions in the original K3M layout (image.kind 'region')."""

    features: torch.Tensor  # float [B, R, F]
    locations: torch.Tensor  # float [B, R, 5]: x1/W, y1/H, x2/W, y2/H, area
    class_probs: torch.Tensor  # float [B, R, C] the detector's class distribution (MOM target)
    mask: torch.Tensor  # bool [B, R], True = real region


@dataclass
class TokenInputs:
    title: TokenSequences  # the title's tokens, MLM-masked
    knowledge: TokenSequences  # "p1 : v1 ; p2 : v2 ..." with value tokens MLM-masked; spans on batch.graph
    image: Union[PixelImages, RegionImages, None]  # None: the model has no image stream
    # LPM (targets only): property / value strings encoded on their own, rows of
    # batch.lpm.property_ids / batch.lpm.value_ids
    properties: Optional[TokenSequences] = None
    values: Optional[TokenSequences] = None


@dataclass
class TokenTargets:
    title_labels: torch.Tensor  # long [B, Lt], the original token at MLM targets, -100 elsewhere
    knowledge_labels: torch.Tensor  # long [B, Lk]
    visual_mask: torch.Tensor  # bool [B, Nv], True = visual token masked for MOM


# -- encoders: frozen -------------------------------------------------------------------------
@dataclass
class FeatureInputs:
    title: torch.Tensor  # float [B, Lt, F] token features of the title shown ("+PKG as text": pair vectors follow)
    title_mask: torch.Tensor  # bool [B, Lt]
    knowledge: torch.Tensor  # float [B, P, F] one "property : value" vector per pair (a value mention's one token)
    knowledge_mask: torch.Tensor  # bool [B, P]
    image: Optional[torch.Tensor]  # float [B, N, 1280] the cached EfficientNet grid; None without an image stream
    property_ids: torch.Tensor  # long [Up] the properties of the batch's pairs (in the graph and masked), sorted
    property_features: torch.Tensor  # float [Up, F] their names' features (graph edges, LPM)
    value_features: Optional[torch.Tensor] = None  # float [U, F] rows of batch.lpm.value_ids (targets only)


@dataclass
class FeatureTargets:
    """The item's own features, whatever it was shown (hidden, swapped or intact)."""

    title: Optional[torch.Tensor]  # float [B, F] mean of its title's token features; None without a title stream
    title_present: Optional[torch.Tensor]  # bool [B] the item has a title
    image: Optional[torch.Tensor]  # float [B, 1280] mean of its grid; None without an image stream
    image_present: Optional[torch.Tensor]  # bool [B]
    masked: Pairs  # pairs taken out of the knowledge stream and the graph: values to predict, LPM positives
    # float [B, F] mean of the "property : value" vectors of all its pairs (masked ones too);
    # zeros without pairs; None when the model keeps no knowledge block (k3m.model.nn.kept_features)
    knowledge: Optional[torch.Tensor] = None
    # bool [B] the item shows its own title / image (not hidden, not another item's): what the
    # consistency head learns to judge; None without the stream
    title_own: Optional[torch.Tensor] = None
    image_own: Optional[torch.Tensor] = None


ModeInputs = Union[TokenInputs, FeatureInputs]
ModeTargets = Union[TokenTargets, FeatureTargets]
