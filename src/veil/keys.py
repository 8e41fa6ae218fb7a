"""The owner's secret key and every secret derived from it.

One 256-bit seed from the operating system's CSPRNG (``secrets``) is the only secret the
owner has to keep. Every obfuscation parameter (patch permutation, mixing matrix, label map)
is derived from it with HKDF-SHA256 under a distinct ``info`` label, then expanded with the
ChaCha20 keystream (a standard stream cipher used as a deterministic random bit generator).
No parameter is ever drawn from Python's ``random`` or NumPy's PRNG, whose state space is the
seed space: the mistake that broke the InstaHide challenge and the XNN reference code.

Only the key holder imports this module. Code that runs on an untrusted party
(``veil.train.cloud``, ``veil.attacks``) must not, and a test reads their imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veil.errors import VeilError
from veil.secretfile import read_private, write_private

KEY_FORMAT = "veil-owner-key"
KEY_VERSION = 1
SEED_BYTES = 32


class KeyError_(VeilError):
    """A key file is missing, malformed, or not the key a file was made with."""


@dataclass(frozen=True, repr=False)
class OwnerKey:
    """The owner's secret. ``repr`` and ``str`` show only the fingerprint, so it never lands in a log."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise KeyError_(f"owner key seed must be {SEED_BYTES} bytes, got {len(self.seed)}")

    def __repr__(self) -> str:
        return f"OwnerKey(fingerprint={self.fingerprint})"

    __str__ = __repr__

    @classmethod
    def generate(cls) -> OwnerKey:
        """A fresh key from the OS CSPRNG."""
        return cls(secrets.token_bytes(SEED_BYTES))

    @property
    def fingerprint(self) -> str:
        """A public, one-way identifier of the key (HKDF output, then SHA-256).

        It is recorded in stores and models so a mismatched key is caught with a clear error;
        it reveals nothing about the seed.
        """
        return hashlib.sha256(self.derive_bytes("veil/fingerprint", 32)).hexdigest()[:16]

    def derive_bytes(self, label: str, length: int) -> bytes:
        """``length`` pseudo-random bytes bound to ``label`` (HKDF-SHA256 then ChaCha20 keystream)."""
        stream_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(
            self.seed
        )
        cipher = Cipher(algorithms.ChaCha20(stream_key, b"\x00" * 16), mode=None)
        return cipher.encryptor().update(b"\x00" * length)

    def rng(self, label: str) -> KeyedStream:
        """A deterministic stream of random numbers bound to ``label``."""
        return KeyedStream(self, label)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the key file with mode 0600. Refuses to replace an existing key unless told to.

        Written through :func:`veil.secretfile.write_private`: a unique ``O_EXCL | O_NOFOLLOW`` temporary
        file renamed into place, so a symlink planted beside the key is never followed.
        """
        body = json.dumps(
            {"format": KEY_FORMAT, "version": KEY_VERSION, "seed": self.seed.hex(),
             "fingerprint": self.fingerprint}
        )
        try:
            return write_private(path, (body + "\n").encode(), overwrite=overwrite)
        except VeilError as exc:
            raise KeyError_(str(exc)) from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OwnerKey:
        """Read a key file, checking its mode (0600, as ssh does), its format and its own fingerprint."""
        path = Path(path)
        if not path.is_file():
            raise KeyError_(f"key file not found: {path}")
        try:
            raw = read_private(path, "key file")
        except VeilError as exc:
            raise KeyError_(str(exc)) from None
        try:
            data = json.loads(raw.decode())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("format") != KEY_FORMAT:
                raise ValueError("not a Veil owner key")
            key = cls(bytes.fromhex(data["seed"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyError_(f"{path} is not a valid Veil key file ({exc})") from None
        if data.get("fingerprint") not in (None, key.fingerprint):
            raise KeyError_(f"{path} is corrupt: its fingerprint does not match its seed")
        return key


class KeyedStream:
    """Uniform integers, permutations and Gaussian matrices from a keyed ChaCha20 stream.

    Deterministic: the same key and label give the same values, bit for bit, on a given platform.
    """

    def __init__(self, key: OwnerKey, label: str) -> None:
        self._key = key
        self._label = label
        self._counter = 0

    def _bytes(self, n: int) -> bytes:
        # Each request draws from its own sub-label so the stream need not be kept in memory.
        out = self._key.derive_bytes(f"{self._label}#{self._counter}", n)
        self._counter += 1
        return out

    def uniform(self, n: int) -> np.ndarray:
        """``n`` float64 values in the open interval (0, 1), 53 random bits each."""
        words = np.frombuffer(self._bytes(8 * n), dtype="<u8") >> np.uint64(11)
        return (words.astype(np.float64) + 0.5) / float(1 << 53)

    def permutation(self, n: int) -> np.ndarray:
        """A uniformly random permutation of ``range(n)`` (Fisher-Yates with rejection sampling)."""
        perm = np.arange(n)
        words = np.frombuffer(self._bytes(8 * 2 * n), dtype="<u8")
        used = 0
        for i in range(n - 1, 0, -1):
            bound = i + 1
            limit = (1 << 64) - ((1 << 64) % bound)
            while True:
                if used >= len(words):
                    words = np.frombuffer(self._bytes(8 * 2 * n), dtype="<u8")
                    used = 0
                w = int(words[used])
                used += 1
                if w < limit:
                    break
            j = w % bound
            perm[i], perm[j] = perm[j], perm[i]
        return perm

    def normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normal values (Box-Muller on keyed uniforms)."""
        n = int(np.prod(shape))
        half = (n + 1) // 2
        u1, u2 = self.uniform(half), self.uniform(half)
        radius = np.sqrt(-2.0 * np.log(u1))
        z = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])
        return z[:n].reshape(shape)
