"""The image store is a plain .npy that numpy memory-maps, written in place by row batches."""
from __future__ import annotations

import numpy as np
import pytest

from etl.image_store import ImageStoreWriter, decode_into_store
from etl.images import NO_IMAGE, OK, UNREADABLE, ImageLimits


def test_rows_written_out_of_order_read_back_memory_mapped(fashion_slice_build, tmp_path):
    source = np.load(fashion_slice_build / "images.npy", mmap_mode="r")
    size = source.shape[1]
    writer = ImageStoreWriter(tmp_path / "images.npy", size)
    writer.write_rows(7, np.asarray(source[7:20]))
    writer.write_rows(0, np.asarray(source[:5]))  # rows 5, 6 never written: zeros
    writer.finish(22)
    back = np.load(tmp_path / "images.npy", mmap_mode="r")
    assert back.shape == (22, size, size, 3) and back.dtype == np.uint8 and back.offset % 64 == 0
    assert (back[:5] == source[:5]).all() and (back[7:20] == source[7:20]).all()
    assert not back[5:7].any() and not back[20:].any()


def test_decode_into_store_writes_decoded_rows_only(fashion_dir, tmp_path):
    archive = str(fashion_dir / "images.zip")
    writer = ImageStoreWriter(tmp_path / "images.npy", 32)
    status, digests = decode_into_store((writer.path, 32, 1, [("zip", archive, "images/10000.jpg"), None,
                                                              ("zip", archive, "images/no-such.jpg")],
                                         ImageLimits(), None, None))
    writer.finish(4)
    assert status.tolist() == [OK, NO_IMAGE, UNREADABLE] and digests[0] is not None and digests[1:] == [None, None]
    back = np.load(writer.path)
    assert back[1].any() and not back[0].any() and not back[2:].any()


def test_wrong_shape_is_refused(tmp_path):
    writer = ImageStoreWriter(tmp_path / "images.npy", 64)
    with pytest.raises(ValueError, match="expected uint8"):
        writer.write_rows(0, np.zeros((1, 32, 32, 3), np.uint8))
    writer.finish(0)
    assert np.load(tmp_path / "images.npy").shape == (0, 64, 64, 3)
