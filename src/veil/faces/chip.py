"""Step 3: the aligned chip. The 5 landmarks fix a similarity transform; the face is warped to size x size.

Exactly ``dlib.get_face_chip`` (the chip dlib's face ResNet was trained on: 150 px, padding 0.25), called
with the geometry found earlier, so a cached geometry gives the same chip without detecting again.
"""

from __future__ import annotations

import numpy as np

from veil.faces.geometry import Face
from veil.faces.models import import_dlib


def face_chip(image: np.ndarray, face: Face, size: int, padding: float) -> np.ndarray:
    """(size, size, 3) uint8 chip of ``face`` in the RGB ``image``."""
    dlib = import_dlib()
    shape = dlib.full_object_detection(dlib.rectangle(*face.box), [dlib.point(x, y) for x, y in face.points])
    return np.ascontiguousarray(dlib.get_face_chip(image, shape, size=size, padding=padding), dtype=np.uint8)
