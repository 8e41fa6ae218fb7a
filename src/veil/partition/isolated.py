"""``IsolatedProcessEnclave``: the trusted partition in a separate OS process, behind an encrypted channel.

What is real: a separate process (its own PID and address space) that loads the trusted weights itself from the
safetensors path; the host only ever holds the exposed feature map; every message is sealed (``channel.py``).
What is simulated: the hardware. There is no SGX here, so the host's OS could still read the child's memory; the
SGX *cost* is modelled separately (``cost_model.py``) and labelled as modelled wherever it is reported.

Run as ``python -m veil.partition.isolated FD WEIGHTS SPLIT THREADS`` by the host, never by hand.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from veil.errors import VeilError
from veil.partition.channel import (
    ChannelError,
    SecureChannel,
    enclave_handshake,
    host_handshake,
    recv_frame,
    send_frame,
)
from veil.partition.enclave import (
    Enclave,
    EnclaveInfo,
    EnclaveOutput,
    decode_tensor,
    encode_tensor,
)
from veil.partition.models import read_spec
from veil.partition.sequence import SplitPoint, resolve_split, to_sequence

OP_INFER, OP_QUIT, OP_OK, OP_ERR, OP_INFO = b"I", b"Q", b"R", b"E", b"N"


class IsolatedProcessEnclave(Enclave):
    """Spawn the enclave process, run the handshake, then ``forward`` = seal input, send, open feature map."""

    def __init__(self, weights: str | Path, split: int | str, threads: int | None = None,
                 expected_measurement: bytes | None = None, start_timeout: float = 120.0):
        weights = Path(weights).resolve()
        from veil.partition.models import build_model

        spec = read_spec(weights)  # fail here, with a clear message, rather than in the child
        point = resolve_split(to_sequence(build_model(spec)), split)
        threads = threads or torch.get_num_threads()
        host_sock, child_sock = socket.socketpair()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "veil.partition.isolated", str(child_sock.fileno()), str(weights),
             str(point.index), str(threads)],
            pass_fds=(child_sock.fileno(),), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        child_sock.close()
        self._sock = host_sock
        self._sock.settimeout(start_timeout)
        try:
            self._chan, measurement = host_handshake(self._sock, expected_measurement)
            body = self._request(OP_INFO, b"")
        except (ChannelError, OSError) as exc:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            reason = self._child_error() or str(exc)
            self.close()
            raise VeilError(f"enclave process failed to start: {reason}") from None
        self._sock.settimeout(None)
        meta = json.loads(body.decode())
        self.info = EnclaveInfo("isolated-process", "separate OS process + authenticated encrypted channel "
                                "(SGX hardware simulated: the host OS can still read its memory)",
                                int(meta["pid"]), SplitPoint(meta["split"]["index"], meta["split"]["label"]),
                                int(meta["params"]), measurement.hex(), {"threads": threads})

    def _child_error(self) -> str:
        if self._proc.poll() is None:
            return ""
        raw = (self._proc.stderr.read() if self._proc.stderr else b"") or b""
        err = raw.decode(errors="replace").strip().splitlines()
        return err[-1] if err else f"exit status {self._proc.returncode}"

    def _request(self, op: bytes, body: bytes) -> bytes:
        send_frame(self._sock, self._chan.seal(op + body))
        reply = self._chan.open(recv_frame(self._sock))
        if reply[:1] == OP_ERR:
            raise VeilError(f"enclave refused the request: {reply[1:].decode(errors='replace')}")
        return reply[1:]

    def forward(self, x: torch.Tensor) -> EnclaveOutput:
        t0 = time.perf_counter()
        try:
            reply = self._request(OP_INFER, encode_tensor(x.float()))
        except (ChannelError, OSError) as exc:
            raise VeilError(f"enclave channel failed: {exc}") from None
        rt = time.perf_counter() - t0
        from safetensors.torch import load as st_load

        compute = float(_metadata(reply).get("compute_s", "nan"))
        return EnclaveOutput(st_load(reply)["t"], compute, rt)

    def send_raw(self, frame: bytes) -> bytes:
        """Testing hook: put an arbitrary frame on the wire and return the enclave's (opened) reply."""
        send_frame(self._sock, frame)
        reply = self._chan.open(recv_frame(self._sock))
        if reply[:1] == OP_ERR:
            raise VeilError(f"enclave refused the request: {reply[1:].decode(errors='replace')}")
        return reply[1:]

    @property
    def channel(self) -> SecureChannel:
        return self._chan

    def close(self) -> None:
        if getattr(self, "_proc", None) is None:
            return
        try:
            if self._proc.poll() is None and hasattr(self, "_chan"):
                send_frame(self._sock, self._chan.seal(OP_QUIT))
                self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ChannelError):
            pass
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._sock.close()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None  # type: ignore[assignment]


def _metadata(st_bytes: bytes) -> dict:
    import struct

    (n,) = struct.unpack("<Q", st_bytes[:8])
    return json.loads(st_bytes[8:8 + n]).get("__metadata__", {}) or {}


def _serve(fd: int, weights: str, split: int, threads: int) -> None:
    """The enclave's main loop: load own weights, handshake, answer sealed requests until QUIT or a bad message."""
    torch.set_num_threads(threads)
    from veil.partition.enclave import load_enclave_part

    sock = socket.socket(fileno=fd)
    part, spec, point, measurement = load_enclave_part(weights, split)
    chan = enclave_handshake(sock, measurement)
    params = sum(p.numel() for p in part.parameters())
    while True:
        try:
            frame = recv_frame(sock)
        except ChannelError:
            return  # host went away
        try:
            msg = chan.open(frame)
        except ChannelError as exc:
            send_frame(sock, chan.seal(OP_ERR + str(exc).encode()))
            return  # a forged or replayed message ends the session: keys are not reused after an attack
        op, body = msg[:1], msg[1:]
        if op == OP_QUIT:
            return
        if op == OP_INFO:
            send_frame(sock, chan.seal(OP_OK + json.dumps({"pid": os.getpid(), "params": params,
                                                           "split": {"index": point.index, "label": point.label},
                                                           "arch": spec.arch}).encode()))
            continue
        if op != OP_INFER:
            send_frame(sock, chan.seal(OP_ERR + f"unknown operation {op!r}".encode()))
            continue
        try:
            x = decode_tensor(body)
            if x.ndim != 4 or x.shape[1] != 3:
                raise VeilError(f"input must be (n, 3, H, W), got {tuple(x.shape)}")
            t0 = time.perf_counter()
            with torch.no_grad():
                y = part(x)
            dt = time.perf_counter() - t0
            send_frame(sock, chan.seal(OP_OK + encode_tensor(y, compute_s=repr(dt))))
        except (VeilError, RuntimeError) as exc:
            send_frame(sock, chan.seal(OP_ERR + str(exc).splitlines()[0].encode()))


if __name__ == "__main__":
    _fd, _weights, _split, _threads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    _serve(_fd, _weights, _split, _threads)
