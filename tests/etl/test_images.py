"""Image lookup that never leaves its root, and decoding real catalog images."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from etl.images import (NO_IMAGE, OK, TOO_LARGE, TOO_MANY_PIXELS, UNDECODABLE, UNREADABLE, DirImageRoot, ImageLimits,
                        ImageRefused, NoImageRoot, ZipImageRoot, decode_batch, decode_image, image_digest, open_root,
                        read_image, safe_relative)


@pytest.fixture(scope="module")
def real_images(fashion_dir) -> dict[str, bytes]:
    with zipfile.ZipFile(fashion_dir / "images.zip") as z:
        return {name: z.read(name) for name in ("images/10000.jpg", "images/10001.jpg", "images/10002.jpg")}


@pytest.mark.parametrize("ref, expected", [
    ("images/10000.jpg", "images/10000.jpg"),
    ("./images//10000.jpg", "images/10000.jpg"),
    ("images\\10000.jpg", "images/10000.jpg"),
    ("../images/10000.jpg", None),
    ("images/../../10000.jpg", None),
    ("images/..", None),
    ("/etc/passwd", None),
    ("\\\\server\\share\\x.jpg", None),
    ("C:/images/x.jpg", None),
    ("images/x\x00.jpg", None),
    ("", None),
    (".", None),
])
def test_safe_relative(ref, expected):
    assert safe_relative(ref) == expected


def test_zip_root_serves_safe_members_and_refuses_escapes(real_images, tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("images/10000.jpg", real_images["images/10000.jpg"])
        z.writestr("../10001.jpg", real_images["images/10001.jpg"])  # a member named to escape
        z.writestr("/abs/10002.jpg", real_images["images/10002.jpg"])
    root = ZipImageRoot(archive)
    assert root.unsafe_members == 2
    found = root.locate("images/10000.jpg")
    assert found.status == "found" and read_image(found.source) == real_images["images/10000.jpg"]
    assert (root.locate("../10001.jpg").status, root.locate("../10001.jpg").reason) == ("refused", "escapes_image_root")
    assert root.locate("/abs/10002.jpg").status == "refused"
    assert (root.locate("images/10003.jpg").status, root.locate("images/10003.jpg").reason) == ("missing", "not_in_archive")
    assert root.locate(None).reason == "no_image_reference"
    root.close()


def test_dir_root_refuses_links_out_of_the_root(real_images, tmp_path):
    images = tmp_path / "root" / "images"
    images.mkdir(parents=True)
    (images / "10000.jpg").write_bytes(real_images["images/10000.jpg"])
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(real_images["images/10001.jpg"])
    (images / "10001.jpg").symlink_to(outside)
    (images / "inner.jpg").symlink_to(images / "10000.jpg")  # a link that stays inside is fine
    root = open_root(tmp_path / "root")
    assert isinstance(root, DirImageRoot)
    assert read_image(root.locate("images/10000.jpg").source) == real_images["images/10000.jpg"]
    assert (root.locate("images/10001.jpg").status, root.locate("images/10001.jpg").reason) == ("refused", "link_outside_image_root")
    assert root.locate("images/inner.jpg").status == "found"
    assert root.locate("images/10009.jpg").reason == "not_found"
    assert root.locate("images").reason == "not_a_file"


def test_remote_urls_are_never_fetched(k3m_sample_dir):
    url = (k3m_sample_dir / "small_train.tsv").read_text(encoding="utf-8").split("\t")[2]
    located = NoImageRoot().locate(url)
    assert (located.status, located.reason, located.source) == ("missing", "remote_url_not_fetched", None)


def test_decode_keeps_aspect_and_pads_white(real_images):
    data = real_images["images/10000.jpg"]
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert original.shape == (80, 60, 3)
    pixels = decode_image(data, 64)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    # 60x80 scaled to 48x64, centred: 8 white columns either side
    assert (pixels[:, :8] == 255).all() and (pixels[:, -8:] == 255).all()
    assert (pixels[:, 8:56] < 250).any()
    assert decode_image(data, 32).shape == (32, 32, 3)
    big = decode_image(data, 160)
    assert (big[:, :20] == 255).all() and not (big[:, 20:140] == 255).all()


def test_undecodable_bytes(real_images):
    data = real_images["images/10000.jpg"]
    assert decode_image(data[: len(data) // 3], 64) is None  # truncated JPEG
    assert decode_image(data[100:], 64) is None  # no header


def test_decode_batch_reads_and_reports_each_row(real_images, tmp_path):
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as z:
        z.writestr("a.jpg", real_images["images/10000.jpg"])
        z.writestr("b.jpg", real_images["images/10001.jpg"][:300])
    (tmp_path / "c.jpg").write_bytes(real_images["images/10002.jpg"])
    archive = str(tmp_path / "images.zip")
    sources = [("zip", archive, "a.jpg"), None, ("zip", archive, "b.jpg"), ("dir", str(tmp_path), str(tmp_path / "c.jpg")),
               ("dir", str(tmp_path), str(tmp_path / "gone.jpg"))]
    pixels, status, digests = decode_batch(sources, 64)
    assert status.tolist() == [OK, NO_IMAGE, UNDECODABLE, OK, UNREADABLE]
    assert pixels.shape == (5, 64, 64, 3)
    assert pixels[0].any() and pixels[3].any() and not pixels[[1, 2, 4]].any()
    assert digests[0] == image_digest(real_images["images/10000.jpg"]) and digests[1] is None and digests[4] is None
    assert digests[3] == image_digest(real_images["images/10002.jpg"]) and digests[2] is not None


def test_decode_batch_reuses_an_earlier_row_only_when_the_bytes_are_the_same(real_images, tmp_path):
    """An update takes an item's pixels from the previous build when its file is unchanged."""
    (tmp_path / "a.jpg").write_bytes(real_images["images/10000.jpg"])
    (tmp_path / "b.jpg").write_bytes(real_images["images/10002.jpg"])
    sources = [("dir", str(tmp_path), str(tmp_path / name)) for name in ("a.jpg", "b.jpg")]
    fresh, _, digests = decode_batch(sources, 32)
    previous = np.full((3, 32, 32, 3), 7, np.uint8)  # marked rows: a copy is recognisable
    reuse = [(2, digests[0]), (1, image_digest(real_images["images/10001.jpg"]))]  # b's file changed
    pixels, status, again = decode_batch(sources, 32, reuse=reuse, previous=previous)
    assert status.tolist() == [OK, OK] and again == digests
    assert (pixels[0] == 7).all()  # reused
    assert np.array_equal(pixels[1], fresh[1])  # decoded again


def test_zip_members_over_the_byte_limit_are_refused_before_reading(real_images, tmp_path):
    """A 64 MiB member that compresses to 64 KiB: refused from the archive's directory alone."""
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("images/10000.jpg", real_images["images/10000.jpg"])
        with z.open("images/10001.jpg", "w") as member:
            for _ in range(64):
                member.write(bytes(2**20))
    assert archive.stat().st_size < 2**20
    root = ZipImageRoot(archive, ImageLimits(max_bytes=2**20))
    assert root.locate("images/10000.jpg").status == "found"
    assert (root.locate("images/10001.jpg").status, root.locate("images/10001.jpg").reason) == ("refused", "image_too_large")
    # and a read never takes more than the limit + 1 bytes, whatever the directory says
    with pytest.raises(ImageRefused):
        read_image(("zip", str(archive), "images/10001.jpg"), max_bytes=2**20)
    root.close()


def test_a_file_that_grew_after_lookup_is_refused_at_read(real_images, tmp_path):
    (tmp_path / "a.jpg").write_bytes(real_images["images/10000.jpg"])
    limit = len(real_images["images/10000.jpg"]) + 10
    root = DirImageRoot(tmp_path, ImageLimits(max_bytes=limit))
    found = root.locate("a.jpg")
    assert found.status == "found" and read_image(found.source, limit) == real_images["images/10000.jpg"]
    with open(tmp_path / "a.jpg", "ab") as grow:
        grow.write(bytes(100))
    assert root.locate("a.jpg").reason == "image_too_large"
    pixels, status, _ = decode_batch([found.source], 32, ImageLimits(max_bytes=limit))
    assert status.tolist() == [TOO_LARGE] and not pixels.any()


def _png(width: int, height: int) -> bytes:
    """A 1-bit PNG: tiny on disk and in memory to build, width x height pixels to decode."""
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, "PNG")
    return buffer.getvalue()


def test_pixel_bombs_are_refused_from_their_header(real_images):
    over = _png(6000, 5000)  # 30 megapixels, a few KB
    assert len(over) < 100_000
    with pytest.raises(ImageRefused) as refused:
        decode_image(over, 64)
    assert refused.value.status == TOO_MANY_PIXELS
    assert decode_image(over, 64, max_pixels=31_000_000) is not None  # the limit is the setting
    huge = _png(20000, 10000)  # beyond Pillow's own bomb limit: refused the same way
    with pytest.raises(ImageRefused):
        decode_image(huge, 64, max_pixels=10**12)
    assert decode_image(real_images["images/10000.jpg"], 64, max_pixels=60 * 80).shape == (64, 64, 3)
    with pytest.raises(ImageRefused):
        decode_image(real_images["images/10000.jpg"], 64, max_pixels=60 * 80 - 1)
