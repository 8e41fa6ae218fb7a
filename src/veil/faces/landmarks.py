"""Step 2: the 5 landmarks (eye corners, base of the nose) in a face box, with dlib's 5-point shape predictor."""

from __future__ import annotations

import numpy as np

from veil.faces.models import LANDMARKS_5_DAT, import_dlib, model_file


class LandmarkLocator:
    """``shape_predictor_5_face_landmarks.dat``: a cascade of regression trees run inside the box."""

    def __init__(self) -> None:
        self._dlib = import_dlib()
        self._predictor = self._dlib.shape_predictor(str(model_file(LANDMARKS_5_DAT)))

    def __call__(self, image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[tuple[int, int], ...]:
        shape = self._predictor(image, self._dlib.rectangle(*box))
        return tuple((p.x, p.y) for p in shape.parts())
