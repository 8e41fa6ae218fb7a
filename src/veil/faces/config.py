"""What the face pipeline does, as one frozen value: detector, upsampling, chip geometry, the no-face policy.

Its :attr:`FaceConfig.version` names everything that changes *where the faces are found* (detector,
upsampling, detection size limit, landmark model, dlib's version): the alignment cache is keyed by it, so a
change of any of these never serves a stale geometry. Chip size and padding are applied afterwards from the
cached geometry, so they are not part of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from veil.errors import VeilError
from veil.faces.models import CNN, CNN_DETECTOR_DAT, HOG, LANDMARKS_5_DAT

PIPELINE_REVISION = 1
SKIP = "skip"
WHOLE_IMAGE = "whole-image"
ON_NO_FACE = (SKIP, WHOLE_IMAGE)
DETECTORS = (HOG, CNN)
NO_ALIGNMENT = "none"
ALIGN_CHOICES = (HOG, CNN, NO_ALIGNMENT)
CHIP_SIZE = 150
CHIP_PADDING = 0.25
ALIGNED_MARKER = "veil-aligned.json"  # written by `veil data align`: this folder holds chips, never align it again


@dataclass(frozen=True)
class FaceConfig:
    """How faces are found and cut out.

    ``detector``: ``hog`` (dlib's frontal HOG + linear SVM, the default: ~13 ms per 112 px crop on one core)
    or ``cnn`` (dlib's MMOD CNN, ``mmod_human_face_detector.dat``: finds more faces off-frontal, ~40x slower
    on a CPU). ``upsample``: times the image is doubled before detecting (1 finds faces down to ~40 px wide).
    ``max_side``: larger photos are detected on a copy scaled down to this longer side (boxes mapped back;
    landmarks and the chip use the full image), so a 12-megapixel photo costs what a 1280 px one does.
    ``padding``: dlib's ``get_face_chip`` padding (0.25 is what its face ResNet was trained with).
    ``on_no_face``: ``skip`` (the image is counted and left out; a single-image command fails) or
    ``whole-image`` (the whole image is taken as the face box and the 5 landmarks are located in it: right
    for a folder of face crops the detector misses a few of, wrong for photos).
    """

    detector: str = HOG
    upsample: int = 1
    max_side: int = 1280
    padding: float = CHIP_PADDING
    on_no_face: str = SKIP

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise VeilError(f"unknown face detector {self.detector!r} (choose {', '.join(DETECTORS)})")
        if self.on_no_face not in ON_NO_FACE:
            raise VeilError(f"unknown no-face policy {self.on_no_face!r} (choose {', '.join(ON_NO_FACE)})")
        if not 0 <= self.upsample <= 3:
            raise VeilError(f"upsample must be 0..3, got {self.upsample}")
        if self.max_side < 64 or not 0 <= self.padding <= 2:
            raise VeilError(f"bad face config: max_side {self.max_side}, padding {self.padding}")

    @property
    def version(self) -> str:
        """Names what decides the geometry found in an image: the alignment cache's key with the image digest."""
        from veil.faces.models import import_dlib

        dlib_version = getattr(import_dlib(), "__version__", "?")
        model = CNN_DETECTOR_DAT if self.detector == CNN else "frontal_face_detector"
        return (f"veil-faces/{PIPELINE_REVISION} {self.detector}:{model} up{self.upsample} max{self.max_side} "
                f"{LANDMARKS_5_DAT} dlib-{dlib_version}")

    def describe(self, chip_size: int) -> dict:
        """Provenance for a run's JSON: every setting, the models, the chip produced."""
        return {**asdict(self), "chip_size": chip_size, "landmarks": LANDMARKS_5_DAT,
                "detector_model": CNN_DETECTOR_DAT if self.detector == CNN else "dlib frontal_face_detector (HOG)",
                "warp": "dlib.get_face_chip (5-point similarity transform)", "version": self.version}


DEFAULT_FACES = FaceConfig()


def recorded_faces(record: dict) -> tuple[FaceConfig | None, int | None]:
    """The face settings a run recorded for one group (its ``preprocess`` entry: :meth:`FaceConfig.describe`
    under ``align``, or a note such as ``"none (whole image resized)"``), as (config, chip size).

    None for a run that aligned nothing: whole images resized, an ``.npz``, or a folder of chips already (that
    folder's marker makes the loaders skip alignment anyway). A ``VeilError`` names a record it cannot read.
    """
    align = record.get("align") if isinstance(record, dict) else None
    if isinstance(align, str) and align.startswith(NO_ALIGNMENT):
        return None, None
    if not isinstance(align, dict):
        raise VeilError(f"unreadable face pipeline record {record!r}: expected 'align' settings or 'none (...)'")
    known = {f.name for f in fields(FaceConfig)}
    config = FaceConfig(**{k: v for k, v in align.items() if k in known})
    chip = align.get("chip_size")
    return config, int(chip) if chip is not None else None


def face_config(align: str = HOG, on_no_face: str = SKIP) -> FaceConfig | None:
    """The CLI's ``--align``/``--on-no-face`` as a config; ``--align none`` gives None (resize, as before)."""
    if align == NO_ALIGNMENT:
        return None
    if align not in DETECTORS:
        raise VeilError(f"--align must be one of {', '.join(ALIGN_CHOICES)}, got {align!r}")
    return FaceConfig(detector=align, on_no_face=on_no_face)
