"""What running a part in the enclave costs: measured (params, FLOPs, activation memory, time) and *modelled* SGX time.

Measured here, on this machine: parameter count, FLOPs (``torch.utils.flop_counter.FlopCounterMode``), the
largest leaf-module working set (input + output activations), wall time of the part.
Modelled, not measured (there is no SGX here): an Intel SGX1-style enclave with an EPC of ``epc_mib`` usable MiB
(93 of 128 before Ice Lake). When the trusted footprint (weights + activations + runtime) exceeds it, pages are
swapped at ``page_swap_cycles`` each (about 40k cycles), every ECALL/OCALL costs ``transition_cycles``, and
compute inside the EPC may be scaled by ``compute_slowdown`` (memory encryption). Every number it produces is
labelled ``modelled_*`` so nobody mistakes it for a measurement.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

PAGE = 4096
MIB = 1 << 20


@dataclass
class SGXCostModel:
    """Parameters of the modelled enclave (all configurable; defaults from the SGX literature in PRIOR_ART.md).

    ``paging``: 'optimal' swaps only the overflow (a lower bound); 'lru' swaps the whole footprint on every pass,
    which is what LRU does on a cyclic scan larger than the cache (an upper bound).
    """

    epc_mib: float = 93.0
    page_swap_cycles: float = 40_000.0
    transition_cycles: float = 8_600.0
    transitions_per_call: int = 2
    cpu_ghz: float = 3.0
    compute_slowdown: float = 1.0
    runtime_mib: float = 0.0
    paging: str = "optimal"

    def footprint_bytes(self, weight_bytes: int, activation_bytes: int) -> int:
        return int(weight_bytes + activation_bytes + self.runtime_mib * MIB)

    def swapped_pages(self, footprint: int) -> int:
        overflow = footprint - self.epc_mib * MIB
        if overflow <= 0:
            return 0
        pages = math.ceil((footprint if self.paging == "lru" else overflow) / PAGE)
        return 2 * pages  # evict one, load one

    def modelled_seconds(self, measured_compute_s: float, weight_bytes: int, activation_bytes: int,
                         calls: int = 1) -> dict:
        """Modelled enclave time for one pass of ``measured_compute_s`` native compute, with its breakdown."""
        hz = self.cpu_ghz * 1e9
        pages = self.swapped_pages(self.footprint_bytes(weight_bytes, activation_bytes))
        compute = measured_compute_s * self.compute_slowdown
        paging = pages * self.page_swap_cycles / hz
        transitions = calls * self.transitions_per_call * self.transition_cycles / hz
        return {"modelled_total_s": compute + paging + transitions, "modelled_compute_s": compute,
                "modelled_paging_s": paging, "modelled_transitions_s": transitions, "modelled_swapped_pages": pages,
                "footprint_mib": self.footprint_bytes(weight_bytes, activation_bytes) / MIB,
                "fits_epc": pages == 0}

    def as_dict(self) -> dict:
        return {**asdict(self), "note": "SGX is simulated: these parameters drive a cost model, not hardware"}


@dataclass
class PartCost:
    """Measured cost of running a part on one input batch (batch size ``batch``)."""

    params: int
    weight_bytes: int
    flops: int
    peak_activation_bytes: int
    output_bytes: int
    output_shape: tuple[int, ...]
    measured_s: float
    batch: int

    def as_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d


def count_flops(module: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass, as counted by PyTorch's own FlopCounterMode."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops())


def peak_leaf_activation(module: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Largest input+output bytes of any leaf module: the working set a layer-by-layer executor needs."""
    peak = [x.numel() * x.element_size()]

    def hook(_m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        size = sum(t.numel() * t.element_size() for t in inputs if torch.is_tensor(t))
        if torch.is_tensor(output):
            size += output.numel() * output.element_size()
        peak[0] = max(peak[0], size)

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            y = module(x)
    finally:
        for h in handles:
            h.remove()
    return peak[0], y


def time_module(module: nn.Module, x: torch.Tensor, repeats: int = 3) -> float:
    """Median wall time of ``repeats`` forward passes after one warm-up (seconds)."""
    times = []
    with torch.no_grad():
        module(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure_part(module: nn.Module, x: torch.Tensor, repeats: int = 3) -> PartCost:
    """Params, FLOPs, peak activation and time of ``module`` on ``x`` (batch = ``len(x)``)."""
    module = module.eval()
    params = sum(p.numel() for p in module.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers())
    if len(list(module.parameters())) == 0 and not list(module.children()) and isinstance(module, nn.Identity):
        return PartCost(0, 0, 0, 0, 0, tuple(x.shape), 0.0, len(x))
    peak, y = peak_leaf_activation(module, x)
    flops = count_flops(module, x)
    seconds = time_module(module, x, repeats)
    return PartCost(params, weight_bytes, flops, peak, y.numel() * y.element_size(), tuple(y.shape), seconds, len(x))
