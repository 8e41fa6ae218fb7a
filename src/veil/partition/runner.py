"""Split inference: units [0, K) in an enclave backend, [K, end) on the accelerator, with a timing breakdown.

The accelerator side is built from the weights file but reads only the tensors of its own units; it receives the
exposed feature map from the enclave and nothing else. The accelerator is CUDA when present, else the CPU (then
"accelerator" and "enclave" share the same cores, and the breakdown says so).

Roles in one process, for convenience: ``SplitRunner`` is the data owner's client (it preprocesses the images and
terminates the encrypted channel to the enclave) *and* the accelerator host. The accelerator part itself only ever
receives the decrypted feature map. In a deployment the client would run the handshake through the host, which
would relay ciphertext it cannot open, and a real TEE would attest its key (see docs/partition.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from veil.errors import VeilError
from veil.partition.cost_model import SGXCostModel, measure_part
from veil.partition.enclave import Enclave, InProcessEnclave, load_accelerator_part
from veil.partition.models import ModelSpec, build_model, preprocess, read_spec
from veil.partition.sequence import to_sequence
from veil.partition.split import Part

BACKENDS = ("isolated", "in-process")


@dataclass
class RunResult:
    logits: torch.Tensor
    timing: dict


class SplitRunner:
    """Owns an enclave backend and the accelerator part; ``run(images)`` returns logits and the timing breakdown."""

    def __init__(self, weights: str | Path, split: int | str, backend: str = "isolated", device: str | None = None,
                 cost_model: SGXCostModel | None = None, threads: int | None = None):
        if backend not in BACKENDS:
            raise VeilError(f"unknown enclave backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.spec: ModelSpec = read_spec(weights)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise VeilError("CUDA was requested but is not available here")
        self.accelerator, _, self.point = load_accelerator_part(weights, split)
        self.accelerator.to(self.device)
        self.cost_model = cost_model or SGXCostModel()
        if backend == "isolated":
            from veil.partition.isolated import IsolatedProcessEnclave

            self.enclave: Enclave = IsolatedProcessEnclave(weights, self.point.index, threads=threads)
        else:
            self.enclave = InProcessEnclave(weights, self.point.index)

    def close(self) -> None:
        self.enclave.close()

    def __enter__(self) -> SplitRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, images: torch.Tensor) -> RunResult:
        """``images``: uint8 (n, 3, H, W) or float in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise VeilError(f"images must be (n, 3, H, W), got shape {tuple(images.shape)}")
        x = preprocess(images, self.spec)
        t0 = time.perf_counter()
        out = self.enclave.forward(x)
        t1 = time.perf_counter()
        feats = out.features.to(self.device)
        self._sync()
        t2 = time.perf_counter()
        with torch.no_grad():
            logits = self.accelerator(feats)
        self._sync()
        t3 = time.perf_counter()
        enclave_s = out.compute_s
        transfer_s = (t1 - t0 - enclave_s) + (t2 - t1)
        timing = {"batch": len(images), "enclave_measured_s": enclave_s, "transfer_s": transfer_s,
                  "accelerator_s": t3 - t2, "total_s": t3 - t0, "device": str(self.device),
                  "backend": self.enclave.info.backend, "enclave_pid": self.enclave.info.pid,
                  "exposed_shape": list(out.features.shape),
                  "note": "enclave_measured_s is measured in the enclave backend process; SGX is simulated"}
        return RunResult(logits.cpu(), timing)

    def modelled_enclave(self, images: torch.Tensor, measured_s: float) -> dict:
        """Modelled SGX time of the enclave part for this batch.

        Sizes (weight bytes, activation working set) come from a randomly initialised skeleton of the same
        architecture: shapes are public, so the untrusted side still never reads the enclave's weights.
        """
        skeleton = to_sequence(build_model(self.spec))
        part = Part(skeleton, 0, self.point.index).eval()
        cost = measure_part(part, preprocess(images, self.spec), repeats=1)
        return {**self.cost_model.modelled_seconds(measured_s, cost.weight_bytes, cost.peak_activation_bytes),
                "enclave_flops": cost.flops, "enclave_params": cost.params}
