"""Identity-labelled datasets, identity-disjoint splits, gallery/probe protocol, synthetic test data."""

from veil.data.faceset import FaceSet, load_faces, load_image_folder, load_npz
from veil.data.splits import GROUPS, Split, SplitSpec, gallery_probe, make_split
from veil.data.synthetic import synthetic_faces

__all__ = ["FaceSet", "load_faces", "load_image_folder", "load_npz", "GROUPS", "Split", "SplitSpec",
           "gallery_probe", "make_split", "synthetic_faces"]
