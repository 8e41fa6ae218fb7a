"""Every size and label of the cascade packet format, in one place, so no module invents its own.

A packet is ``header || payload`` and always exactly ``PACKET_SIZE`` bytes, whatever its op or hop.
The header holds ``MAX_HOPS`` slots; each slot is an ephemeral X25519 key plus the AEAD-sealed
routing information for one hop. The payload is one AEAD ciphertext of a zero-padded body.
"""

from __future__ import annotations

# --- operations (the paper's op codes 0-3, plus cover traffic and checkpoint fetch) -------------------
OP_INIT = 0  # model initialisation: a hop learns its own layer spec, state and optimiser
OP_FORWARD = 1  # activations hop by hop; the loss layer reads labels from its own routing info
OP_BACKWARD = 2  # gradients hop by hop in reverse; each layer updates its own parameters
OP_TEST = 3  # forward without saving state or updating anything
OP_LOOP = 4  # cover traffic: every hop relays, the designer receives it back
OP_STATE = 5  # checkpoint: the target hop returns a fragment of its layer state, end-to-end sealed
OPS = {OP_INIT: "init", OP_FORWARD: "forward", OP_BACKWARD: "backward", OP_TEST: "test", OP_LOOP: "loop",
       OP_STATE: "state"}

# --- routing flags --------------------------------------------------------------------------------------
FLAG_TARGET = 0x01  # INIT/STATE: this hop is the one the end-to-end content is for
FLAG_FINAL = 0x02  # this hop is the packet's destination (the designer's own slot)

# --- primitive sizes (fixed by the primitives, named so every offset below is derived) ----------------
KEY_SIZE = 32  # X25519 public key, and every symmetric key
TAG_SIZE = 16  # ChaCha20-Poly1305 tag
NONCE_SIZE = 12  # ChaCha20-Poly1305 nonce; every key is single-use, so nonces are constants
STREAM_NONCE_SIZE = 16  # ChaCha20 (stream) nonce for the header re-encryption
NONCE_TO_HOP = bytes(NONCE_SIZE)  # designer -> hop, end-to-end
NONCE_FROM_HOP = b"\x01" + bytes(NONCE_SIZE - 1)  # hop -> designer, end-to-end (same key, other nonce)

# --- routing information (the plaintext inside one header slot) ----------------------------------------
ADDRESS_SIZE = 64  # "host:port", UTF-8, zero padded
STEP_TAG_SIZE = 8  # per-hop random tag linking a forward to its backward at that hop only
EXTRA_SIZE = 256  # labels for the loss layer (uint8 per sample): the largest batch is 256
ROUTING_FORMAT = f"<BB{STEP_TAG_SIZE}s{ADDRESS_SIZE}s{KEY_SIZE}sHH{EXTRA_SIZE}s"
ROUTING_SIZE = 1 + 1 + STEP_TAG_SIZE + ADDRESS_SIZE + KEY_SIZE + 2 + 2 + EXTRA_SIZE  # 366

# --- header ---------------------------------------------------------------------------------------------
MAX_HOPS = 12  # cascade nodes plus the designer's own final slot
SLOT_SIZE = KEY_SIZE + ROUTING_SIZE + TAG_SIZE  # 414
HEADER_SIZE = MAX_HOPS * SLOT_SIZE  # 4,968

# --- payload --------------------------------------------------------------------------------------------
# One cell size for every packet: large enough for an MNIST batch of 64 (200,704 bytes of float32) plus its
# framing. Per-position size classes would leak the hop position, so everything pads to this one size;
# larger messages (layer state) are split into fragments of whole packets.
PAYLOAD_SIZE = 256 * 1024  # ciphertext, tag included
LENGTH_PREFIX_SIZE = 4
PAYLOAD_PLAIN_SIZE = PAYLOAD_SIZE - TAG_SIZE  # padded plaintext
BODY_CAPACITY = PAYLOAD_PLAIN_SIZE - LENGTH_PREFIX_SIZE  # the largest body one packet carries
E2E_OVERHEAD = TAG_SIZE + 1024  # end-to-end AEAD tag + fragment framing (body header, safetensors header)
FRAGMENT_SIZE = BODY_CAPACITY - E2E_OVERHEAD - 1024  # raw bytes of layer state per INIT/STATE packet

PACKET_SIZE = HEADER_SIZE + PAYLOAD_SIZE  # 267,112: every packet on the wire, every op, every hop

# --- key derivation -------------------------------------------------------------------------------------
HKDF_INFO = b"veil-cascade-v1 hop keys"
HKDF_LENGTH = 4 * KEY_SIZE  # header AEAD key, header stream key, payload key, end-to-end key
REPLAY_LABEL = b"veil-cascade-v1 replay"

# --- transport ------------------------------------------------------------------------------------------
GRPC_SERVICE = "veil.cascade.Relay"
GRPC_METHOD = "Push"
GRPC_MAX_MESSAGE = 4 * PACKET_SIZE  # deliberately above gRPC's 4 MiB default only as far as needed
SEND_TIMEOUT_S = 10.0

# --- behaviour ------------------------------------------------------------------------------------------
SAVED_STEPS = 64  # forward state a layer keeps for pending backwards, oldest dropped first
MAX_LABELS = EXTRA_SIZE
