"""Obfuscations behind one interface: XNN (permutation + matrix), none (vanilla), and the paper's baselines
InstaHide (pixel mixing + sign flips) and NeuraCrypt (random encoder + per-sample patch shuffle)."""

from veil.obfuscation.base import NoObfuscation, Obfuscation
from veil.obfuscation.instahide import InstaHide
from veil.obfuscation.neuracrypt import NeuraCrypt
from veil.obfuscation.randomness import SystemRandomness, TorchRandomness
from veil.obfuscation.xnn import MATRIX_KINDS, XNN

__all__ = ["Obfuscation", "NoObfuscation", "XNN", "MATRIX_KINDS", "InstaHide", "NeuraCrypt", "SystemRandomness",
           "TorchRandomness"]
