"""The owner's face pipeline: detect (dlib HOG, or its MMOD CNN), 5 landmarks, warp to the aligned chip.

dlib's face ResNet was trained on chips made exactly so (``dlib.get_face_chip``: 150 px, padding 0.25);
feeding it whole resized photos costs ~27 points of identification on LFW (docs/faces.md). One module per
step: :mod:`~veil.faces.detect`, :mod:`~veil.faces.landmarks`, :mod:`~veil.faces.chip`; the settings and
their version in :mod:`~veil.faces.config`; the owner-side cache in :mod:`~veil.faces.cache`; one image in
:mod:`~veil.faces.pipeline`, many (every core) in :mod:`~veil.faces.bulk`.

Owner side only: the cloud and the attacks receive chips' features, never run this (and it never imports
torch, so its worker processes start fast).
"""

from veil.faces.config import (
    ALIGN_CHOICES,
    DEFAULT_FACES,
    NO_ALIGNMENT,
    ON_NO_FACE,
    SKIP,
    WHOLE_IMAGE,
    FaceConfig,
    face_config,
)

__all__ = ["ALIGN_CHOICES", "DEFAULT_FACES", "NO_ALIGNMENT", "ON_NO_FACE", "SKIP", "WHOLE_IMAGE", "FaceConfig",
           "face_config"]
