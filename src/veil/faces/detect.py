"""Step 1: where the faces are. dlib's HOG frontal detector (default) or its MMOD CNN detector."""

from __future__ import annotations

import numpy as np
from PIL import Image

from veil.faces.config import FaceConfig
from veil.faces.models import CNN, CNN_DETECTOR_DAT, import_dlib, model_file

Box = tuple[int, int, int, int, float]  # left, top, right, bottom, score


class FaceDetector:
    """Boxes of the faces in an RGB image, largest first (dlib's detector, ``upsample`` doublings)."""

    def __init__(self, config: FaceConfig) -> None:
        dlib = import_dlib()
        self.config = config
        if config.detector == CNN:
            self._cnn = dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR_DAT)))
            self._hog = None
        else:
            self._hog = dlib.get_frontal_face_detector()
            self._cnn = None

    def _detect(self, image: np.ndarray) -> list[Box]:
        if self._hog is not None:
            rects, scores, _ = self._hog.run(image, self.config.upsample, 0.0)
            return [(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in zip(rects, scores, strict=True)]
        return [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence))
                for d in self._cnn(image, self.config.upsample)]

    def __call__(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        scale = min(1.0, self.config.max_side / max(h, w))
        if scale < 1.0:  # a large photo: detect on a smaller copy, map the boxes back to full resolution
            small = np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)),
                                                             Image.Resampling.BILINEAR))
            boxes = [(round(a / scale), round(b / scale), round(c / scale), round(d / scale), s)
                     for a, b, c, d, s in self._detect(small)]
        else:
            boxes = self._detect(image)
        return sorted(boxes, key=lambda b: -((b[2] - b[0] + 1) * (b[3] - b[1] + 1)))
