"""Veil: privacy-preserving outsourced deep learning, and the attacks that measure it."""

from veil.errors import VeilError

__all__ = ["VeilError", "__version__"]
__version__ = "0.1.0"
