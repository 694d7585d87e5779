"""Finding item images safely and decoding them to fixed-size uint8 arrays.

An image reference (from the mapping's path template or image column) is a path under an
image root: a zip archive or a directory. References that could escape the root (absolute
paths, ``..``, drive letters, NUL, symlinks pointing outside a directory root) are refused;
zip members with such names are never served. Remote URLs are never fetched.

Every image is bounded (:class:`ImageLimits`): a file or zip member larger than
``max_bytes`` (stored or uncompressed size, from the archive's directory, before a byte is
read) is refused, reads never take more than ``max_bytes + 1`` bytes, and an image whose
decoded size exceeds ``max_pixels`` is refused from its header, before pixels are decoded.
So a zip bomb or a decompression-bomb PNG costs neither memory nor time.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from etl.errors import InvalidValue
from etl.extract import is_remote

DRIVE = re.compile(r"^[A-Za-z]:")
# per-row outcome of decode_batch
NO_IMAGE, OK, UNDECODABLE, UNREADABLE, TOO_LARGE, TOO_MANY_PIXELS = 0, 1, 2, 3, 4, 5
# outcome -> (image status, reason) as counted in summary.json
OUTCOMES = {
    OK: ("ok", None),
    UNDECODABLE: ("bad", "undecodable"),
    UNREADABLE: ("bad", "unreadable"),
    TOO_LARGE: ("refused", "image_too_large"),
    TOO_MANY_PIXELS: ("refused", "too_many_pixels"),
}


@dataclass(frozen=True)
class ImageLimits:
    """What one image may cost. Real product photos are far below both defaults (fashion44k's
    are 60x80 pixels and ~3 KB); the peak for an image at the limits is about 4 bytes per pixel
    for the decoded image plus 3 for its RGB copy, i.e. ~175 MB at 25 megapixels."""

    max_bytes: int = 32 * 2**20  # stored and uncompressed bytes of one image file or zip member
    max_pixels: int = 25_000_000  # pixels decoded (JPEGs are decoded at a reduced scale first)

    def __post_init__(self):
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise InvalidValue(f"image limits must be positive, got {self}")


class ImageRefused(Exception):
    """An image over one of the :class:`ImageLimits`; ``status`` is TOO_LARGE or TOO_MANY_PIXELS."""

    def __init__(self, status: int):
        super().__init__(OUTCOMES[status][1])
        self.status = status


@dataclass
class Located:
    """Outcome of looking an image up: ``found`` with the ``source`` to read it from, or
    ``missing``/``refused`` with a reason."""

    status: str  # "found" | "missing" | "refused"
    reason: str | None = None
    source: tuple[str, str, str] | None = None  # (root kind, root path, member or file), see read_image


def safe_relative(ref: str) -> str | None:
    """``ref`` as a clean relative POSIX path, or None if it could leave its root."""
    if not ref or "\x00" in ref or ref.startswith(("/", "\\")) or DRIVE.match(ref):
        return None
    parts = [p for p in re.split(r"[/\\]", ref) if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


class ImageRoot:
    """Base: where references are looked up. Lookup checks safety and existence only; the
    bytes are read later by :func:`read_image`, possibly in a worker process."""

    description: str
    unsafe_members = 0  # archive members refused for their names
    limits = ImageLimits()

    def locate(self, ref: str | None) -> Located:
        if ref is None:
            return Located("missing", "no_image_reference")
        if is_remote(ref):
            return Located("missing", "remote_url_not_fetched")
        rel = safe_relative(ref)
        if rel is None:
            return Located("refused", "escapes_image_root")
        return self._find(rel)

    def _find(self, rel: str) -> Located:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NoImageRoot(ImageRoot):
    """The mapping names no image root: only remote URLs or nothing can be referenced."""

    description = "none"

    def _find(self, rel: str) -> Located:
        return Located("missing", "no_image_root")


class ZipImageRoot(ImageRoot):
    def __init__(self, path: Path, limits: ImageLimits = ImageLimits()):
        self.path = path
        self.limits = limits
        self.description = f"zip:{path}"
        try:
            self.zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise FileNotFoundError(f"{path}: image archive cannot be opened: {exc}") from None
        _OPEN_ZIPS[str(path)] = (os.getpid(), self.zip)  # read_image here reuses the parsed index
        # Only members whose own names are safe can ever be served.
        self.members = set()
        self.unsafe_members = 0
        for info in self.zip.infolist():
            if info.is_dir():
                continue
            if safe_relative(info.filename) == info.filename:
                self.members.add(info.filename)
            else:
                self.unsafe_members += 1

    def _find(self, rel: str) -> Located:
        if rel not in self.members:
            return Located("missing", "not_in_archive")
        info = self.zip.getinfo(rel)
        if max(info.compress_size, info.file_size) > self.limits.max_bytes:
            return Located("refused", OUTCOMES[TOO_LARGE][1])
        return Located("found", source=("zip", str(self.path), rel))

    def close(self) -> None:
        _OPEN_ZIPS.pop(str(self.path), None)
        self.zip.close()


class DirImageRoot(ImageRoot):
    def __init__(self, path: Path, limits: ImageLimits = ImageLimits()):
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: image directory not found")
        self.path = path
        self.limits = limits
        self.resolved = path.resolve()
        self.description = f"dir:{path}"

    def _find(self, rel: str) -> Located:
        candidate = self.path / rel
        if not candidate.exists():
            return Located("missing", "not_found")
        resolved = candidate.resolve()
        if not resolved.is_relative_to(self.resolved):
            return Located("refused", "link_outside_image_root")
        if not resolved.is_file():
            return Located("missing", "not_a_file")
        if resolved.stat().st_size > self.limits.max_bytes:
            return Located("refused", OUTCOMES[TOO_LARGE][1])
        return Located("found", source=("dir", str(self.path), str(resolved)))


def open_root(path: Path | None, limits: ImageLimits = ImageLimits()) -> ImageRoot:
    if path is None:
        return NoImageRoot()
    if path.is_dir():
        return DirImageRoot(path, limits)
    if not path.exists():
        raise FileNotFoundError(f"{path}: image root not found")
    return ZipImageRoot(path, limits)


# Archives opened by this process, by path. The pid guards forked workers: a ZipFile inherited
# through fork shares its file offset with the parent and must not be read from.
_OPEN_ZIPS: dict[str, tuple[int, zipfile.ZipFile]] = {}


def read_image(source: tuple[str, str, str], max_bytes: int = ImageLimits.max_bytes) -> bytes | None:
    """The bytes of a located image; None if they cannot be read (a damaged archive member).
    Raises ImageRefused when there are more than ``max_bytes`` (a file grown since it was
    located, or an archive whose directory understates a member): at most ``max_bytes + 1``
    bytes are ever read."""
    kind, root, key = source
    try:
        if kind == "dir":
            with open(key, "rb") as handle:
                data = handle.read(max_bytes + 1)
        else:
            owner, archive = _OPEN_ZIPS.get(root, (None, None))
            if owner != os.getpid():
                archive = zipfile.ZipFile(root)
                _OPEN_ZIPS[root] = (os.getpid(), archive)
            with archive.open(key) as member:
                data = member.read(max_bytes + 1)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError, zlib.error):
        return None
    if len(data) > max_bytes:
        raise ImageRefused(TOO_LARGE)
    return data


def decode_image(data: bytes, size: int, max_pixels: int = ImageLimits.max_pixels) -> np.ndarray | None:
    """RGB uint8 [size, size, 3]: scaled to fit (aspect kept), centred on white; None if
    undecodable. Raises ImageRefused when decoding would exceed ``max_pixels``."""
    try:
        with warnings.catch_warnings():
            # Pillow warns from ~89 megapixels and refuses from ~179: our own limit decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageRefused(TOO_MANY_PIXELS) from None
    except Exception:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...) on bad data
        return None
    try:
        with image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when far larger
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRefused(TOO_MANY_PIXELS)
            image = image.convert("RGB")
            scale = size / max(width, height)
            new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
            if (new_w, new_h) != (width, height):
                # BOX (area average) when shrinking: antialiased and the cheapest filter that is
                resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
                image = image.resize((new_w, new_h), resample)
            pixels = np.asarray(image)
    except ImageRefused:
        raise
    except Exception:
        return None
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = pixels
    return canvas


def image_digest(data: bytes) -> str:
    """What identifies an image file's content: blake2b-128 of its bytes, hex (an update
    re-decodes an item's image only when this changed)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def decode_batch(sources: list[tuple[str, str, str] | None], size: int,
                 limits: ImageLimits = ImageLimits(), reuse: list[tuple[int, str] | None] | None = None,
                 previous=None) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Read and decode a batch (None = no image): pixels [n, size, size, 3] (zeros where
    absent), a status per row (NO_IMAGE, OK, UNDECODABLE, UNREADABLE, TOO_LARGE or
    TOO_MANY_PIXELS) and the :func:`image_digest` of each file read (None where none was).

    ``reuse[i] = (row, digest)``: when the file's digest is ``digest``, row ``row`` of
    ``previous`` (an earlier build's image array) is taken instead of decoding again."""
    out = np.zeros((len(sources), size, size, 3), dtype=np.uint8)
    status = np.full(len(sources), NO_IMAGE, dtype=np.int8)
    digests: list[str | None] = [None] * len(sources)
    for i, source in enumerate(sources):
        if source is None:
            continue
        try:
            data = read_image(source, limits.max_bytes)
            if data is not None:
                digests[i] = image_digest(data)
                if reuse is not None and reuse[i] is not None and reuse[i][1] == digests[i]:
                    out[i] = previous[reuse[i][0]]
                    status[i] = OK
                    continue
            pixels = decode_image(data, size, limits.max_pixels) if data is not None else None
        except ImageRefused as refused:
            status[i] = refused.status
            continue
        if pixels is not None:
            out[i] = pixels
        status[i] = OK if pixels is not None else UNDECODABLE if data is not None else UNREADABLE
    return out, status, digests
