"""CNN grid image encoder: a torchvision ResNet's last feature map as a grid of visual
tokens (image_size / 32 per side). The backbone trains from scratch unless a local weights
file is given (no download); loading it is strict. MOM target: the cell's backbone feature.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from encoders.image.base import ImageEncoder, check_pixels
from encoders.weights import load_state_dict_strictly, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet_trunk(name: str, weights: str | None = None) -> tuple[nn.Sequential, int]:
    """torchvision ResNet without avgpool/fc, and its output channels."""
    import torchvision

    if not hasattr(torchvision.models, name) or not name.startswith("resnet"):
        raise ValueError(f"cnn_backbone must be a torchvision ResNet (resnet18, resnet50, ...), got {name!r}")
    net = getattr(torchvision.models, name)(weights=None)
    if weights is not None:
        load_backbone_weights(net, weights)
    channels = net.fc.in_features
    return nn.Sequential(*list(net.children())[:-2]), channels


def load_backbone_weights(net: nn.Module, path: str | Path) -> None:
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}  # classifier not used
    trunk = nn.Module()  # the backbone without its classifier, under the same key names
    for name, child in net.named_children():
        if name != "fc":
            trunk.add_module(name, child)
    load_state_dict_strictly(trunk, state, path)


class CNNGridEncoder(ImageEncoder):
    def __init__(self, image_config):
        backbone, channels = resnet_trunk(image_config.cnn_backbone, image_config.cnn_weights)
        super().__init__(channels, image_config.hidden_size, image_config.dropout)
        self.backbone = backbone
        self.image_size = image_config.image_size
        self.num_tokens = image_config.num_visual_tokens
        self.positions = nn.Parameter(torch.zeros(1, self.num_tokens, image_config.hidden_size))
        nn.init.normal_(self.positions, std=0.02)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def raw_features(self, images):
        pixels = check_pixels(getattr(images, "pixels", None), self.image_size)
        x = (pixels.to(self.mean.dtype) / 255.0 - self.mean) / self.std
        grid = self.backbone(x).flatten(2).transpose(1, 2)  # [B, g*g, C]
        real = torch.ones(grid.shape[:2], dtype=torch.bool, device=grid.device)
        return grid, real, self.positions, grid
