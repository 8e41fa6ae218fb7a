"""Per-hop key material: one X25519 exchange, one HKDF-SHA256, four independent 32-byte keys.

Kept apart from the packet layout so the node, the designer and the benchmark all derive keys the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veil.cascade import constants as C
from veil.errors import VeilError


@dataclass(frozen=True)
class HopKeys:
    """What one hop derives from its shared secret. ``replay`` is a hash, safe to keep in a cache."""

    header: bytes  # AEAD key sealing this hop's routing information
    stream: bytes  # ChaCha20 key re-encrypting the rest of the header, so hops cannot link it bitwise
    payload: bytes  # AEAD key of the payload this hop receives
    e2e: bytes  # designer <-> this hop only: init content and checkpoint state, opaque to relays
    replay: bytes  # SHA-256 tag of the shared secret, the replay cache's key


def generate_private_key() -> X25519PrivateKey:
    """A fresh key pair from the OS CSPRNG (``cryptography`` draws from ``os.urandom``)."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    pub = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public(raw: bytes) -> X25519PublicKey:
    """Parse a raw public key, naming the problem when it is malformed."""
    if len(raw) != C.KEY_SIZE:
        raise VeilError(f"public key must be {C.KEY_SIZE} bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def derive(shared: bytes) -> HopKeys:
    """HKDF-SHA256 over the X25519 shared secret; an all-zero secret (small-order point) is refused."""
    if shared == bytes(len(shared)):
        raise VeilError("X25519 produced an all-zero shared secret (small-order public key)")
    okm = HKDF(algorithm=hashes.SHA256(), length=C.HKDF_LENGTH, salt=None, info=C.HKDF_INFO).derive(shared)
    k = C.KEY_SIZE
    return HopKeys(
        header=okm[0:k],
        stream=okm[k : 2 * k],
        payload=okm[2 * k : 3 * k],
        e2e=okm[3 * k : 4 * k],
        replay=hashlib.sha256(C.REPLAY_LABEL + shared).digest(),
    )


def derive_session(secret: bytes, nonce: bytes) -> HopKeys:
    """Session-mode hop keys: HKDF-SHA256 with the run's per-hop session secret as input key material and the
    slot's fresh random nonce as salt. No public-key operation: a hop that holds the secret derives the same
    keys, anyone else (the pool file lists only public keys) cannot. The replay tag is a fifth output, so it is
    as unforgeable as the keys."""
    if len(secret) != C.SESSION_SECRET_SIZE or len(nonce) != C.KEY_SIZE:
        raise VeilError("session secret and slot nonce must be 32 bytes each")
    okm = HKDF(algorithm=hashes.SHA256(), length=C.HKDF_LENGTH + C.KEY_SIZE, salt=nonce,
               info=C.SESSION_INFO).derive(secret)
    k = C.KEY_SIZE
    return HopKeys(header=okm[0:k], stream=okm[k : 2 * k], payload=okm[2 * k : 3 * k], e2e=okm[3 * k : 4 * k],
                   replay=okm[4 * k : 5 * k])


def fingerprint(public_key: bytes) -> str:
    """A short, loggable name for a public key (never for a private one)."""
    return hashlib.sha256(public_key).hexdigest()[:16]
