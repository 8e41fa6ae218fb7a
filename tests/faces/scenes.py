"""Scenes built from REAL LFW crops: each crop scaled and pasted at a random place on a larger textured canvas.

The shared data are tight face crops, so this is how the tests get photos in which the face does not fill the
frame. The canvas texture is SYNTHETIC (smoothed noise and stripes, seeded); the faces are real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

WIDTH, HEIGHT = 640, 480


def texture(rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """A SYNTHETIC background: blurred colour noise plus faint diagonal stripes."""
    noise = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    base = Image.fromarray(noise).resize((width, height), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = (18 * np.sin((xx + yy) / rng.uniform(6, 14)))[..., None]
    return Image.fromarray(np.clip(np.asarray(base, dtype=np.float32) + stripes, 0, 255).astype(np.uint8))


def make_scene(crops: list[Path], rng: np.random.Generator, scales: tuple[float, float] = (1.0, 1.6)) -> Image.Image:
    """The crops, each scaled by a random factor in ``scales``, at random non-overlapping places on a texture."""
    canvas = texture(rng)
    taken: list[tuple[int, int, int, int]] = []
    for crop in crops:
        with Image.open(crop) as im:
            face = im.convert("RGB")
        side = int(face.width * rng.uniform(*scales))
        face = face.resize((side, side), Image.Resampling.BICUBIC)
        for _ in range(200):
            x, y = int(rng.integers(0, WIDTH - side)), int(rng.integers(0, HEIGHT - side))
            if all(x + side <= a or a + s <= x or y + side <= b or b + s <= y for a, b, s, _ in taken):
                break
        canvas.paste(face, (x, y))
        taken.append((x, y, side, side))
    return canvas
