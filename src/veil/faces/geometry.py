"""A found face as plain numbers (box, 5 landmarks, detector score): what the cache stores and the warp needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Face:
    """``box`` (left, top, right, bottom) in image pixels, dlib's inclusive convention; ``points``: the five
    landmarks of ``shape_predictor_5_face_landmarks`` (eye corners and the base of the nose);
    ``whole_image``: no face was detected and the whole image was taken as the box (the fallback policy)."""

    box: tuple[int, int, int, int]
    points: tuple[tuple[int, int], ...]
    score: float = 0.0
    whole_image: bool = False

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return (right - left + 1) * (bottom - top + 1)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "points": [list(p) for p in self.points], "score": self.score,
                "whole_image": self.whole_image}

    @classmethod
    def from_dict(cls, d: dict) -> Face:
        left, top, right, bottom = (int(v) for v in d["box"])
        return cls((left, top, right, bottom), tuple((int(x), int(y)) for x, y in d["points"]),
                   float(d.get("score", 0.0)), bool(d.get("whole_image", False)))


@dataclass(frozen=True)
class Geometry:
    """Every face found in one image (largest first) and, when none was, the whole-image fallback."""

    width: int
    height: int
    faces: tuple[Face, ...]
    fallback: Face | None = None

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "faces": [f.to_dict() for f in self.faces],
                "fallback": self.fallback.to_dict() if self.fallback else None}

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        fb = d.get("fallback")
        return cls(int(d["width"]), int(d["height"]), tuple(Face.from_dict(f) for f in d["faces"]),
                   Face.from_dict(fb) if fb else None)
