"""Every size and label of the cascade packet format, in one place, so no module invents its own.

A packet is ``header || payload``. The header is always ``HEADER_SIZE`` bytes. The payload size (the
"cell") is one of a few size classes (``CELL_SIZES``), chosen once per run by the designer from the model's
largest message and announced in every hop's routing information, so within a run every packet on the
wire has exactly the same length whatever its op or hop. The header holds ``MAX_HOPS`` slots; each slot is
an ephemeral X25519 key plus the AEAD-sealed routing information for one hop. The payload is one AEAD
ciphertext of a zero-padded body.
"""

from __future__ import annotations

from veil.errors import VeilError

# --- operations (the paper's op codes 0-3, plus cover traffic and checkpoint fetch) -------------------
OP_INIT = 0  # model initialisation: a hop learns its own layer spec, state and optimiser
OP_FORWARD = 1  # activations hop by hop; the loss layer reads labels from its own routing info
OP_BACKWARD = 2  # gradients hop by hop in reverse; each layer updates its own parameters
OP_TEST = 3  # forward without saving state or updating anything
OP_LOOP = 4  # cover traffic: every hop relays, the designer receives it back
OP_STATE = 5  # checkpoint: the target hop returns a fragment of its layer state, end-to-end sealed
OP_CLOSE = 6  # end of run: the target hop drops its layer and its session, then relays
OPS = {OP_INIT: "init", OP_FORWARD: "forward", OP_BACKWARD: "backward", OP_TEST: "test", OP_LOOP: "loop",
       OP_STATE: "state", OP_CLOSE: "close"}

# --- routing flags --------------------------------------------------------------------------------------
FLAG_TARGET = 0x01  # INIT/STATE: this hop is the one the end-to-end content is for
FLAG_FINAL = 0x02  # this hop is the packet's destination (the designer's own slot)
# LOOP + TARGET: a session-free liveness ping. The target answers it even when bound to a run, and even when
# the packet's window is outside its tolerance (so a skewed clock is measured, not taken for a dead node),
# with its wall-clock time and whether it is bound, sealed end to end to the pinging designer.
FLAG_PING = 0x04
FLAGS_MASK = 0x0F  # the routing's flags byte: low nibble flags, high nibble the format version

# --- format version -------------------------------------------------------------------------------------
# v1: ChaCha20-Poly1305 payloads, no version field (its flags byte's high nibble is always 0).
# v2: AES-256-GCM payloads (AES-NI: ~3x faster than ChaCha20-Poly1305 per 256 KiB cell here); the version sits in
# the high nibble of the authenticated routing's flags byte, so a hop names an old packet instead of failing it
# at payload authentication. Header slot, key derivation and every size are unchanged.
FORMAT_VERSION = 2
VERSION_SHIFT = 4
PAYLOAD_AEAD = {1: "ChaCha20-Poly1305", 2: "AES-256-GCM"}

# --- primitive sizes (fixed by the primitives, named so every offset below is derived) ----------------
KEY_SIZE = 32  # X25519 public key, and every symmetric key
TAG_SIZE = 16  # ChaCha20-Poly1305 and AES-256-GCM tag
NONCE_SIZE = 12  # ChaCha20-Poly1305 and AES-GCM nonce; every key is single-use, so nonces are constants
STREAM_NONCE_SIZE = 16  # ChaCha20 (stream) nonce for the header re-encryption
NONCE_TO_HOP = bytes(NONCE_SIZE)  # designer -> hop, end-to-end
NONCE_FROM_HOP = b"\x01" + bytes(NONCE_SIZE - 1)  # hop -> designer, end-to-end (same key, other nonce)

# --- routing information (the plaintext inside one header slot) ----------------------------------------
ADDRESS_SIZE = 64  # "host:port", UTF-8, zero padded
STEP_TAG_SIZE = 8  # per-hop random tag linking a forward to its backward at that hop only
EXTRA_SIZE = 256  # labels for the loss layer (uint8 per sample): the largest batch is 256
CELL_FIELD_SIZE = 4  # u32: the run's payload size, announced to every hop; it checks and keeps it
WINDOW_FIELD_SIZE = 4  # u32: the replay window the packet was built in (coarse time, shared by all packets)
ROUTING_FORMAT = f"<BB{STEP_TAG_SIZE}s{ADDRESS_SIZE}s{KEY_SIZE}sIIHH{EXTRA_SIZE}s"
ROUTING_SIZE = (1 + 1 + STEP_TAG_SIZE + ADDRESS_SIZE + KEY_SIZE + CELL_FIELD_SIZE + WINDOW_FIELD_SIZE + 2 + 2
                + EXTRA_SIZE)  # 374

# --- header ---------------------------------------------------------------------------------------------
MAX_HOPS = 12  # cascade nodes plus the designer's own final slot
SLOT_SIZE = KEY_SIZE + ROUTING_SIZE + TAG_SIZE  # 422
HEADER_SIZE = MAX_HOPS * SLOT_SIZE  # 5,064

# --- payload (the "cell") -------------------------------------------------------------------------------
# Size classes, Nym-style: powers of two from 8 KiB to 1 MiB. The designer picks ONE class per run, the
# smallest that holds the run's largest forward/backward/test message (``cell_for``), and uses it for every
# packet of that run: init, forward, backward, test, loop and state, at every hop. Per-position or per-op
# sizes would leak the hop position or phase, so there are none; what the class reveals to an observer is
# only the order of magnitude (a power of two) of batch x widest layer. Larger messages (layer state, init)
# are split into fragments of whole packets of the same class.
CELL_SIZES = tuple(1 << k for k in range(13, 21))  # 8 KiB ... 1 MiB, ciphertext, tag included
DEFAULT_CELL = 256 * 1024  # what a bare build_packet uses when no run chose a class
MAX_CELL = CELL_SIZES[-1]
LENGTH_PREFIX_SIZE = 4
E2E_OVERHEAD = TAG_SIZE + 1024  # end-to-end AEAD tag + fragment framing (body header, safetensors header)


def packet_size(cell: int = DEFAULT_CELL) -> int:
    """Every packet of a run whose payload class is ``cell``: header + payload."""
    return HEADER_SIZE + cell


def body_capacity(cell: int = DEFAULT_CELL) -> int:
    """The largest body one packet of class ``cell`` carries (payload minus AEAD tag and length prefix)."""
    return cell - TAG_SIZE - LENGTH_PREFIX_SIZE


def fragment_size(cell: int = DEFAULT_CELL) -> int:
    """Raw bytes of layer state per INIT/STATE packet of class ``cell``."""
    return body_capacity(cell) - E2E_OVERHEAD - 1024


def cell_for(largest_body: int) -> int:
    """The smallest size class whose packets carry a body of ``largest_body`` bytes."""
    for cell in CELL_SIZES:
        if body_capacity(cell) >= largest_body:
            return cell
    raise VeilError(f"a message of {largest_body} bytes exceeds the largest packet class ({MAX_CELL} bytes)")


PACKET_SIZES = frozenset(packet_size(c) for c in CELL_SIZES)  # the only lengths a node accepts
PACKET_SIZE = packet_size(DEFAULT_CELL)  # kept for callers that build packets outside a run
BODY_CAPACITY = body_capacity(DEFAULT_CELL)
FRAGMENT_SIZE = fragment_size(DEFAULT_CELL)

# --- key derivation -------------------------------------------------------------------------------------
HKDF_INFO = b"veil-cascade-v1 hop keys"
HKDF_LENGTH = 4 * KEY_SIZE  # header AEAD key, header stream key, payload key, end-to-end key
REPLAY_LABEL = b"veil-cascade-v1 replay"
# Session mode (after a hop is initialised for a run): the slot's first 32 bytes are a fresh random nonce, not an
# ephemeral public key, and the hop keys are HKDF(session secret, salt = nonce), so only the designer that sealed
# the session secret to this hop can build a packet it accepts (see docs/cascade.md, "Sessions").
SESSION_INFO = b"veil-cascade-v1 session hop keys"
SESSION_SECRET_SIZE = 32
SESSION_IDLE_S = 600.0  # a node drops a session (and its layer) after this long without a session packet
SESSION_SWEEP_S = 5.0  # how often a node checks for an idle session on its own (no packet needed)

# --- replay cache ---------------------------------------------------------------------------------------
REPLAY_WINDOW_S = 60  # packets carry the window they were built in (coarse time, shared by all packets)
# The clock skew between a designer and a node that packets tolerate: a hop accepts every window its clock
# could be in within +- CLOCK_SKEW_S. Beyond it, set-up reports "clock skew of N s" (measured by a ping).
CLOCK_SKEW_S = 120.0
REPLAY_WINDOWS_KEPT = 2 * int(-(-CLOCK_SKEW_S // REPLAY_WINDOW_S)) + 1  # the cache never holds older windows

# --- transport ------------------------------------------------------------------------------------------
TRANSPORTS = ("zmq", "grpc")
DEFAULT_TRANSPORT = "zmq"  # measured faster on loopback (bench/cascade.py, "transport")
GRPC_SERVICE = "veil.cascade.Relay"
GRPC_METHOD = "Push"
GRPC_MAX_MESSAGE = 2 * packet_size(MAX_CELL)  # the largest class with room to spare, nothing more
SEND_TIMEOUT_S = 10.0
NODE_SEND_TIMEOUT_S = 2.0  # a node never stalls longer than this on a dead next hop
# Deploy, first contact, and the liveness check behind a missed time bound: connection set-up, layer construction,
# and a node paged back in on a loaded machine, not a training step (so generous; a dead node fails sooner, at
# connecting).
SETUP_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 3.0  # selection: a candidate's answer, when the pool has spares to replace it

# --- behaviour ------------------------------------------------------------------------------------------
SAVED_STEPS = 64  # forward state a layer keeps for pending backwards, oldest dropped first
MAX_LABELS = EXTRA_SIZE
