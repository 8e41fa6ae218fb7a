"""Obfuscations behind one interface: XNN (permutation + matrix), none (vanilla); baselines later."""

from veil.obfuscation.base import NoObfuscation, Obfuscation
from veil.obfuscation.xnn import MATRIX_KINDS, XNN

__all__ = ["Obfuscation", "NoObfuscation", "XNN", "MATRIX_KINDS"]
