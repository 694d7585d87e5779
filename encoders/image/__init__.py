"""Image encoders behind one interface (encoders.image.base.ImageEncoder)."""
from encoders.image.base import ImageEncoder, VisualTokens
from encoders.image.cnn import CNNGridEncoder
from encoders.image.patch import PatchImageEncoder
from encoders.image.region import RegionImageEncoder

ENCODERS = {"patch": PatchImageEncoder, "cnn": CNNGridEncoder, "region": RegionImageEncoder}


def build_image_encoder(image_config) -> ImageEncoder:
    return ENCODERS[image_config.kind](image_config)


__all__ = ["ImageEncoder", "VisualTokens", "PatchImageEncoder", "CNNGridEncoder", "RegionImageEncoder", "build_image_encoder"]
