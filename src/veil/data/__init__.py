"""Identity-labelled datasets, identity-disjoint splits, gallery/probe protocol, synthetic test data."""

from veil.data.faceset import FaceSet, load_npz
from veil.data.splits import GROUPS, Split, SplitSpec, gallery_probe, make_split
from veil.data.synthetic import synthetic_faces

# The loaders (veil.data.loaders) are not re-exported: they run the owner's face pipeline, and the attacks and
# cloud side import this package for the FaceSet type only.
__all__ = ["FaceSet", "load_npz", "GROUPS", "Split", "SplitSpec",
           "gallery_probe", "make_split", "synthetic_faces"]
