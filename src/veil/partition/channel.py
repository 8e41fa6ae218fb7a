"""The authenticated, encrypted channel between the untrusted host and the enclave.

Standard primitives only (``cryptography``), composed as in ``veil.cascade.keys``:
- handshake: each side sends a fresh ephemeral X25519 public key; the enclave also sends a 32-byte
  *measurement* (SHA-256 of the weights it loaded), the part a real TEE would put in an attestation quote;
- HKDF-SHA256 over the shared secret, salted with the transcript (both public keys and the measurement),
  gives one ChaCha20-Poly1305 key per direction;
- every message carries an 8-byte counter, which is also the nonce and part of the associated data: the receiver
  accepts only the next counter, so a tampered message fails authentication and a replayed, dropped or reordered
  one is refused, each with an error that says which.

What is *not* covered here (see docs/partition.md): without SGX there is no quote, so nothing proves to the client
that the peer really is an enclave. Here the host spawns the enclave process itself over a private socketpair.
"""

from __future__ import annotations

import hashlib
import socket
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veil.errors import VeilError

MAGIC = b"VEILPART1"
INFO = b"veil partition channel v1"
KEY_SIZE = 32
MAX_FRAME = 1 << 30
_LEN = struct.Struct(">I")
_CTR = struct.Struct(">Q")


class ChannelError(VeilError):
    """A message was tampered with, replayed, reordered, or the peer broke the protocol."""


def _pub(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def derive_keys(shared: bytes, host_pub: bytes, enclave_pub: bytes, measurement: bytes) -> tuple[bytes, bytes]:
    """(host->enclave key, enclave->host key) from the X25519 secret, bound to the whole handshake transcript."""
    if shared == bytes(len(shared)):
        raise ChannelError("X25519 produced an all-zero shared secret (small-order public key)")
    salt = hashlib.sha256(MAGIC + host_pub + enclave_pub + measurement).digest()
    okm = HKDF(algorithm=hashes.SHA256(), length=2 * KEY_SIZE, salt=salt, info=INFO).derive(shared)
    return okm[:KEY_SIZE], okm[KEY_SIZE:]


class SecureChannel:
    """One side's view: a sealing key and counter for what it sends, an opening key and counter for what it gets."""

    def __init__(self, send_key: bytes, recv_key: bytes, send_label: bytes, recv_label: bytes):
        self._send, self._recv = ChaCha20Poly1305(send_key), ChaCha20Poly1305(recv_key)
        self._send_label, self._recv_label = send_label, recv_label
        self.sent = 0
        self.received = 0

    @staticmethod
    def _nonce(counter: int) -> bytes:
        return bytes(4) + _CTR.pack(counter)

    def seal(self, plaintext: bytes) -> bytes:
        """``counter(8) || ChaCha20-Poly1305(plaintext, aad=direction || counter)``."""
        ctr = _CTR.pack(self.sent)
        frame = ctr + self._send.encrypt(self._nonce(self.sent), plaintext, self._send_label + ctr)
        self.sent += 1
        return frame

    def open(self, frame: bytes) -> bytes:
        """The plaintext of the next expected message; anything else raises :class:`ChannelError`."""
        if len(frame) < _CTR.size + 16:
            raise ChannelError(f"message too short ({len(frame)} bytes) to be a sealed frame")
        (ctr,) = _CTR.unpack(frame[:_CTR.size])
        try:
            plaintext = self._recv.decrypt(self._nonce(ctr), frame[_CTR.size:], self._recv_label + frame[:_CTR.size])
        except InvalidTag:
            raise ChannelError(f"message {ctr} failed authentication: it was tampered with or sealed under "
                               "another key; rejected") from None
        if ctr != self.received:
            kind = "replayed" if ctr < self.received else "reordered (a message was skipped)"
            raise ChannelError(f"message counter {ctr} but expected {self.received}: {kind}; rejected")
        self.received += 1
        return plaintext


def channel_pair(host_priv: X25519PrivateKey, enclave_pub: bytes, measurement: bytes) -> SecureChannel:
    """The host's channel after it has seen the enclave's public key and measurement."""
    host_pub = _pub(host_priv)
    shared = host_priv.exchange(X25519PublicKey.from_public_bytes(enclave_pub))
    h2e, e2h = derive_keys(shared, host_pub, enclave_pub, measurement)
    return SecureChannel(h2e, e2h, b"h2e", b"e2h")


def enclave_channel(enclave_priv: X25519PrivateKey, host_pub: bytes, measurement: bytes) -> SecureChannel:
    """The enclave's channel (keys mirrored)."""
    enclave_pub = _pub(enclave_priv)
    shared = enclave_priv.exchange(X25519PublicKey.from_public_bytes(host_pub))
    h2e, e2h = derive_keys(shared, host_pub, enclave_pub, measurement)
    return SecureChannel(e2h, h2e, b"e2h", b"h2e")


# -- framing over a stream socket ------------------------------------------------------------------------------

def send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_LEN.pack(len(data)) + data)


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if n > MAX_FRAME:
        raise ChannelError(f"frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
    return _recv_exact(sock, n)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ChannelError("the peer closed the channel")
        buf += chunk
    return bytes(buf)


def host_handshake(sock: socket.socket, expected_measurement: bytes | None = None) -> tuple[SecureChannel, bytes]:
    """Host side: send MAGIC + ephemeral key, receive the enclave's key and measurement, derive the channel."""
    priv = X25519PrivateKey.generate()
    send_frame(sock, MAGIC + _pub(priv))
    reply = recv_frame(sock)
    if len(reply) != len(MAGIC) + 64 or not reply.startswith(MAGIC):
        raise ChannelError("the enclave's handshake reply is malformed")
    enclave_pub, measurement = reply[len(MAGIC):len(MAGIC) + 32], reply[len(MAGIC) + 32:]
    if expected_measurement is not None and measurement != expected_measurement:
        raise ChannelError(f"enclave measurement {measurement.hex()[:16]} does not match the expected "
                           f"{expected_measurement.hex()[:16]}: it loaded other weights")
    return channel_pair(priv, enclave_pub, measurement), measurement


def enclave_handshake(sock: socket.socket, measurement: bytes) -> SecureChannel:
    """Enclave side: receive the host's key, answer with a fresh key and the measurement."""
    hello = recv_frame(sock)
    if len(hello) != len(MAGIC) + 32 or not hello.startswith(MAGIC):
        raise ChannelError("the host's handshake is malformed")
    priv = X25519PrivateKey.generate()
    send_frame(sock, MAGIC + _pub(priv) + measurement)
    return enclave_channel(priv, hello[len(MAGIC):], measurement)
