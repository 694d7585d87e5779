"""The stored image size a catalog's photos call for (``k3m import --image-size auto``).

Photos are stored once, scaled to fit a square of ``image_size`` pixels. Storing them
larger than they are adds nothing; storing them much smaller throws away what a frozen
image encoder at its own resolution (EfficientNet-Lite0: 224 px) would see. So the size is
the median longest side of a sample of the catalog's photos, rounded up to a multiple of 32
(what the image encoders' grids need), within [64, 224]: fashion44k's 60x80 photos are
stored at 96 px, homegoods3k's 600x600 at 224. Only image headers are read.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from etl.images import ImageRefused, read_image

MIN_SIZE, MAX_SIZE, STEP = 64, 224, 32
SAMPLE = 64  # photos whose headers are read
FALLBACK = 64  # a catalog without a readable photo (K3M's remote URLs): the images are all absent anyway


@dataclass(frozen=True)
class ImageSizeChoice:
    size: int
    photos_sampled: int
    median_longest_side: int | None

    def as_dict(self) -> dict:
        return {"chosen": "auto", "photos_sampled": self.photos_sampled, "median_longest_side": self.median_longest_side}


def photo_side(source, max_bytes: int) -> int | None:
    """The longest side of a located photo, from its header; None when it cannot be read."""
    try:
        data = read_image(source, max_bytes)
    except ImageRefused:
        return None
    if data is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return max(image.size)
    except Exception:  # Pillow raises many types on bad data; the decode pass counts those
        return None


def choose_image_size(sides: list[int]) -> ImageSizeChoice:
    """The stored size for photos whose longest sides are ``sides``."""
    if not sides:
        return ImageSizeChoice(FALLBACK, 0, None)
    median = sorted(sides)[len(sides) // 2]
    size = min(MAX_SIZE, max(MIN_SIZE, -(-median // STEP) * STEP))
    return ImageSizeChoice(size, len(sides), int(median))
