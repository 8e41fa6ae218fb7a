"""Reading photos: EXIF orientation applied (a phone photo stored sideways is aligned upright), bad files named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import LFW, needs_lfw
from veil.errors import VeilError
from veil.faces.image import EXIF_ORIENTATION, decode_rgb


@needs_lfw
def test_exif_orientation_is_applied():
    crop = Image.open(sorted(next(p for p in sorted(LFW.iterdir()) if p.is_dir()).iterdir())[0]).convert("RGB")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display": stored turned the other way
    buf = io.BytesIO()
    crop.transpose(Image.Transpose.ROTATE_90).save(buf, format="PNG", exif=exif)
    assert np.array_equal(decode_rgb(buf.getvalue()), np.asarray(crop))
    plain = io.BytesIO()
    crop.save(plain, format="PNG")
    assert np.array_equal(decode_rgb(plain.getvalue()), np.asarray(crop))


def test_non_image_bytes_are_a_named_error():
    with pytest.raises(VeilError, match="cannot read image notes.txt"):
        decode_rgb(b"just some text", "notes.txt")
