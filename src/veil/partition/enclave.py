"""The ``Enclave`` backend interface, the wire format of its requests, and the in-process backend.

An enclave backend holds the trusted partition (units [0, K)) and answers one question: given an input batch,
what is the exposed feature map? It loads its own weights from the safetensors path; callers never hand it a
model object, so the same call works for a separate process, or for a real TEE runner (Gramine-SGX, a
confidential VM) added later: see docs/partition.md for the contract such a backend must keep.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from veil.errors import VeilError
from veil.partition.models import ModelSpec, build_model, load_tensors, read_spec
from veil.partition.sequence import SplitPoint, resolve_split, to_sequence
from veil.partition.split import Part


@dataclass
class EnclaveOutput:
    """The exposed feature map and the compute time measured *inside* the enclave (seconds)."""

    features: torch.Tensor
    compute_s: float
    round_trip_s: float = 0.0


@dataclass
class EnclaveInfo:
    """What a backend reports about itself: a label saying what is real and what is simulated."""

    backend: str
    isolation: str
    pid: int
    split: SplitPoint
    params: int
    measurement: str
    extra: dict = field(default_factory=dict)


class Enclave(ABC):
    """A trusted partition behind a boundary. Implementations: InProcessEnclave, IsolatedProcessEnclave."""

    info: EnclaveInfo

    @abstractmethod
    def forward(self, x: torch.Tensor) -> EnclaveOutput:
        """Run units [0, K) on ``x`` (a normalised float batch) and return the exposed feature map."""

    def close(self) -> None:
        """Release the backend (end the process, wipe the keys)."""
        return None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).features

    def __enter__(self) -> Enclave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measurement_of(tensors: dict[str, torch.Tensor], spec: ModelSpec, split: int) -> bytes:
    """SHA-256 over the model spec, the split and the trusted weights: what an attestation quote would carry."""
    h = hashlib.sha256()
    h.update(spec.to_json().encode())
    h.update(str(split).encode())
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()


def load_enclave_part(weights: str | Path, split: int | str) -> tuple[Part, ModelSpec, SplitPoint, bytes]:
    """Build units [0, K) and load exactly their tensors from ``weights`` (what the enclave does at start)."""
    spec = read_spec(weights)
    seq = to_sequence(build_model(spec))
    point = resolve_split(seq, split)
    part = Part(seq, 0, point.index)
    tensors = load_tensors(weights, part.prefixes())
    want = {f"{n}.{k}" for n, u in zip(part.names, part.units, strict=True) if not n.startswith("<")
            for k in u.state_dict()}
    missing = sorted(want - set(tensors))
    if missing:
        raise VeilError(f"{weights} lacks {len(missing)} tensor(s) of the enclave part (first: {missing[0]})")
    for name, unit in zip(part.names, part.units, strict=True):
        own = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if own:
            try:
                unit.load_state_dict(own, strict=True)
            except RuntimeError as exc:
                raise VeilError(f"{weights}: tensors of {name} do not fit: {str(exc).splitlines()[0]}") from None
    return part.eval(), spec, point, measurement_of(tensors, spec, point.index)


def load_accelerator_part(weights: str | Path, split: int | str) -> tuple[Part, ModelSpec, SplitPoint]:
    """Units [K, end) with only their tensors read: the untrusted side never reads the enclave's weights."""
    spec = read_spec(weights)
    seq = to_sequence(build_model(spec))
    point = resolve_split(seq, split)
    part = Part(seq, point.index, len(seq))
    tensors = load_tensors(weights, part.prefixes())
    for name, unit in zip(part.names, part.units, strict=True):
        own = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if own or unit.state_dict():
            try:
                unit.load_state_dict(own, strict=True)
            except RuntimeError as exc:
                raise VeilError(f"{weights}: tensors of {name} do not fit: {str(exc).splitlines()[0]}") from None
    return part.eval(), spec, point


def encode_tensor(t: torch.Tensor, **meta: str) -> bytes:
    """A tensor as safetensors bytes (no pickle crosses the boundary)."""
    return st_save({"t": t.detach().cpu().contiguous()}, metadata=meta or None)


def decode_tensor(data: bytes) -> torch.Tensor:
    try:
        return st_load(data)["t"]
    except Exception as exc:
        raise VeilError(f"malformed tensor message ({exc})") from None


class InProcessEnclave(Enclave):
    """No isolation at all: the trusted part runs in the caller's process. For the planner's measurements, tests
    and as the reference the isolated backend is compared against. Nothing here is protected."""

    def __init__(self, weights: str | Path | None = None, split: int | str | None = None,
                 part: nn.Module | None = None, point: SplitPoint | None = None):
        if part is None:
            if weights is None or split is None:
                raise VeilError("InProcessEnclave needs weights and split, or a part")
            part, _spec, point, meas = load_enclave_part(weights, split)
        else:
            meas = b""
        self.part = part.eval()
        params = sum(p.numel() for p in self.part.parameters())
        self.info = EnclaveInfo("in-process", "none (same process; nothing is protected)", os.getpid(),
                                point or SplitPoint(-1, "?"), params, meas.hex())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> EnclaveOutput:
        t0 = time.perf_counter()
        y = self.part(x)
        dt = time.perf_counter() - t0
        return EnclaveOutput(y, dt, dt)


def info_json(info: EnclaveInfo) -> str:
    body = {**info.__dict__, "split": {"index": info.split.index, "label": info.split.label}}
    return json.dumps(body)
