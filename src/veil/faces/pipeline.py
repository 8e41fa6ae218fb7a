"""The face pipeline in one process: detect -> 5 landmarks -> chip, with the no-face policy applied.

Single images (``veil identify``, ``veil client``) use :class:`FacePipeline` directly; folders go through
:mod:`veil.faces.bulk`, which runs the same steps in a pool of worker processes with the owner's cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from veil.errors import VeilError
from veil.faces.chip import face_chip
from veil.faces.config import WHOLE_IMAGE, FaceConfig
from veil.faces.detect import FaceDetector
from veil.faces.geometry import Face, Geometry
from veil.faces.image import decode_rgb, read_bytes
from veil.faces.landmarks import LandmarkLocator


@dataclass(frozen=True)
class AlignedFace:
    face: Face
    chip: np.ndarray


class NoFaceError(VeilError):
    """No face in an image where one was required (a single-image command under the ``skip`` policy)."""


class FacePipeline:
    """Loads dlib's detector and landmark model once; finds faces and cuts chips."""

    def __init__(self, config: FaceConfig) -> None:
        self.config = config
        self.version = config.version
        self._models: tuple[FaceDetector, LandmarkLocator] | None = None

    def _load(self) -> tuple[FaceDetector, LandmarkLocator]:
        """dlib's models, loaded on first use (~1 s): a run served from the cache never loads them."""
        if self._models is None:
            self._models = (FaceDetector(self.config), LandmarkLocator())
        return self._models

    def geometry(self, image: np.ndarray) -> Geometry:
        """Every detected face (largest first) with its landmarks; the whole-image fallback when none is."""
        h, w = image.shape[:2]
        detect, landmarks = self._load()
        faces = tuple(Face((a, b, c, d), landmarks(image, (a, b, c, d)), s) for a, b, c, d, s in detect(image))
        fallback = None
        if not faces:
            whole = (0, 0, w - 1, h - 1)
            fallback = Face(whole, landmarks(image, whole), 0.0, whole_image=True)
        return Geometry(w, h, faces, fallback)

    def chips(self, image: np.ndarray, geometry: Geometry, size: int, all_faces: bool = False) -> list[AlignedFace]:
        """Chips by the policy: the largest face (or every face), else the fallback, else nothing."""
        return [AlignedFace(f, face_chip(image, f, size, self.config.padding))
                for f in select_faces(geometry, self.config, all_faces)]

    def align_file(self, path: str | Path, size: int, all_faces: bool = False) -> list[AlignedFace]:
        """Chips of one image file; a file with no face raises :class:`NoFaceError` (one line, exit 2)."""
        image = decode_rgb(read_bytes(path), path)
        aligned = self.chips(image, self.geometry(image), size, all_faces)
        if not aligned:
            raise NoFaceError(f"no face found in {path} ({self.config.detector} detector, "
                              f"{image.shape[1]}x{image.shape[0]} px); pass --on-no-face whole-image to use "
                              f"the whole image, or --align none if it is an aligned face chip already")
        return aligned


def select_faces(geometry: Geometry, config: FaceConfig, all_faces: bool = False) -> list[Face]:
    if geometry.faces:
        return list(geometry.faces) if all_faces else [geometry.faces[0]]
    if config.on_no_face == WHOLE_IMAGE and geometry.fallback is not None:
        return [geometry.fallback]
    return []
