"""Region feature file: precomputed detector output in the original K3M layout.

A directory of memory-mapped arrays (one row per image, ``num_regions`` = 36 slots)::

    ids.json           list of item ids (str), row order
    features.npy       float16/32 [N, R, 2048]   region features
    boxes.npy          float32 [N, R, 4]         x1, y1, x2, y2 in pixels
    image_wh.npy       float32 [N, 2]            image width, height
    num_boxes.npy      int32 [N]                 real regions per image (rest is padding)
    class_probs.npy    float16/32 [N, R, 1601]   detector class distribution

``box_locations`` turns boxes into the original's 5-d location
``[x1/W, y1/H, x2/W, y2/H, area/(W*H)]``. ``RegionFeatureFile.read`` returns the arrays of
a batch's regions (``k3m.model.inputs.RegionImages``) for file rows (``rows_of`` maps item
ids to rows, ``lookup`` does both); items without features come back with an all-False
``mask`` (a missing image, not zeros pretending to be regions). The data pipeline reads a model's region file
through ``k3m.data.index_for``, which makes the file's coverage the items' image presence.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

ARRAYS = ("features", "boxes", "image_wh", "num_boxes", "class_probs")


def box_locations(boxes: np.ndarray, image_wh: np.ndarray) -> np.ndarray:
    """boxes [..., R, 4] (pixels), image_wh [..., 2] -> [..., R, 5]."""
    wh = np.asarray(image_wh, dtype=np.float32)[..., None, :]
    w, h = wh[..., 0], wh[..., 1]
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    area = (x2 - x1) * (y2 - y1) / (w * h)
    return np.stack([x1 / w, y1 / h, x2 / w, y2 / h, area], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class RegionFeatureFile:
    path: Path

    @classmethod
    def open(cls, path: str | Path) -> "RegionFeatureFile":
        path = Path(path)
        missing = [name for name in ("ids.json",) + tuple(f"{a}.npy" for a in ARRAYS) if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: not a region feature file (missing {', '.join(missing)})")
        return cls(path)

    @staticmethod
    def write(path: str | Path, ids: Sequence[str], features, boxes, image_wh, num_boxes, class_probs) -> "RegionFeatureFile":
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        n = len(ids)
        arrays = dict(features=features, boxes=boxes, image_wh=image_wh, num_boxes=num_boxes, class_probs=class_probs)
        for name, array in arrays.items():
            array = np.asarray(array)
            if array.shape[0] != n:
                raise ValueError(f"{name} has {array.shape[0]} rows for {n} ids")
            np.save(path / f"{name}.npy", array)
        (path / "ids.json").write_text(json.dumps([str(i) for i in ids]))
        return RegionFeatureFile(path)

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {item_id: row for row, item_id in enumerate(json.loads((self.path / "ids.json").read_text()))}

    def _array(self, name: str) -> np.ndarray:
        return np.load(self.path / f"{name}.npy", mmap_mode="r")

    @property
    def num_regions(self) -> int:
        return int(self._array("features").shape[1])

    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """int64 file row of each item id, -1 where the file has none."""
        row_of = self.row_of
        return np.fromiter((row_of.get(str(i), -1) for i in item_ids), dtype=np.int64, count=len(item_ids))

    def lookup(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The region arrays (see :meth:`read`) of the given item ids."""
        return self.read(self.rows_of(item_ids))

    def read(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """features [B,R,F], locations [B,R,5], class_probs [B,R,C] (float32) and mask [B,R]
        (True = a real region) of file rows (-1: no image)."""
        rows = np.asarray(rows, dtype=np.int64)
        found = rows >= 0
        safe = np.where(found, rows, 0)
        features = np.asarray(self._array("features")[safe], dtype=np.float32)
        probs = np.asarray(self._array("class_probs")[safe], dtype=np.float32)
        locations = box_locations(np.asarray(self._array("boxes")[safe], dtype=np.float32), self._array("image_wh")[safe])
        mask = (np.arange(features.shape[1])[None, :] < np.asarray(self._array("num_boxes"))[safe][:, None]) & found[:, None]
        keep = mask[..., None]
        return {"features": features * keep, "locations": locations * keep, "class_probs": probs * keep, "mask": mask}
