"""Image bytes -> an RGB uint8 array, the way a camera or phone photo must be read (EXIF orientation applied)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from veil.errors import VeilError

EXIF_ORIENTATION = 0x0112


def decode_rgb(data: bytes, name: str | Path = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB; a corrupt or non-image file raises a VeilError naming it."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.getexif().get(EXIF_ORIENTATION, 1) != 1:  # a phone photo taken sideways: turn it upright
                im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise VeilError(f"cannot read image {name}: {exc}") from None


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise VeilError(f"cannot read image {path}: {exc.strerror or exc}") from None

