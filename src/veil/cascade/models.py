"""Layer specs from a TOML model file, and the torch modules they describe (one module per cascade layer).

Both the designer (to initialise weights and to train locally for comparison) and a node (to hold its one
layer) build layers here, so a layer is the same code on both sides.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veil.errors import VeilError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MLP_TOML = """\
# The MixNN paper's MLP (Table 1): layers 4 and 5 are parameter-free (LogSoftmax, NLL).
# "auto" takes the input width from the data set (784 for MNIST, 64 for scikit-learn's digits).
[model]
name = "mlp"

[[layers]]
kind = "linear"
in = "auto"
out = 128
activation = "relu"

[[layers]]
kind = "linear"
in = 128
out = 64
activation = "relu"

[[layers]]
kind = "linear"
in = 64
out = 10

[[layers]]
kind = "log_softmax"

[[layers]]
kind = "nll"

[optimizer]
kind = "sgd"
lr = 0.01
momentum = 0.9

[train]
batch = 64
"""
BUILTIN = {"mlp": MLP_TOML}
KINDS = {"linear", "log_softmax", "nll", "identity"}
ACTIVATIONS = {"relu": nn.ReLU, "none": None}


@dataclass
class ModelSpec:
    name: str
    layers: list[dict[str, Any]]
    optimizer: dict[str, Any] = field(default_factory=lambda: {"kind": "sgd", "lr": 0.01, "momentum": 0.9})
    batch: int = 64


def load_spec(model: str | Path, input_dim: int | None = None) -> ModelSpec:
    """Read a built-in name (``mlp``) or a TOML file; resolve ``in = "auto"`` from ``input_dim``."""
    text = BUILTIN.get(str(model))
    if text is None:
        p = Path(model)
        if not p.is_file():
            raise VeilError(f"model file {p} not found (or use a built-in: {', '.join(BUILTIN)})")
        text = p.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VeilError(f"model file {model} is not valid TOML: {exc}") from None
    layers = raw.get("layers")
    if not isinstance(layers, list) or not layers:
        raise VeilError(f"model file {model} has no [[layers]]")
    for i, layer in enumerate(layers):
        check_layer(layer, where=f"{model} layer {i + 1}")
        if layer.get("in") == "auto":
            if input_dim is None:
                raise VeilError(f"{model} layer {i + 1}: in = \"auto\" needs the data set's input width")
            layer["in"] = int(input_dim)
    opt = raw.get("optimizer", {"kind": "sgd", "lr": 0.01, "momentum": 0.9})
    if opt.get("kind", "sgd") != "sgd":
        raise VeilError(f"{model}: optimizer kind {opt.get('kind')!r} is not supported (sgd)")
    batch = int(raw.get("train", {}).get("batch", 64))
    return ModelSpec(name=raw.get("model", {}).get("name", Path(str(model)).stem), layers=layers,
                     optimizer=opt, batch=batch)


def check_layer(layer: dict[str, Any], where: str = "layer") -> None:
    """Refuse an unknown kind or activation before anything is built from it."""
    kind = layer.get("kind")
    if kind not in KINDS:
        raise VeilError(f"{where}: unknown kind {kind!r} (one of {', '.join(sorted(KINDS))})")
    if kind == "linear":
        for key in ("in", "out"):
            v = layer.get(key)
            if not (v == "auto" or (isinstance(v, int) and 0 < v <= 1 << 16)):
                raise VeilError(f"{where}: linear needs a positive integer {key!r}, got {v!r}")
        if layer.get("activation", "none") not in ACTIVATIONS:
            raise VeilError(f"{where}: unknown activation {layer.get('activation')!r}")


class NLL(nn.Module):
    """The loss as a layer: labels come with the packet, not from the layer's state."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return x if labels is None else nn.functional.nll_loss(x, labels)


def build_layer(layer: dict[str, Any]) -> nn.Module:
    """One cascade layer as a torch module (its parameters drawn from torch's current RNG state)."""
    check_layer(layer)
    kind = layer["kind"]
    if kind == "linear":
        lin = nn.Linear(int(layer["in"]), int(layer["out"]))
        act = ACTIVATIONS[layer.get("activation", "none")]
        return nn.Sequential(lin, act()) if act else nn.Sequential(lin)
    if kind == "log_softmax":
        return nn.LogSoftmax(dim=1)
    if kind == "nll":
        return NLL()
    return nn.Identity()


def build_all(spec: ModelSpec, seed: int) -> list[nn.Module]:
    """Every layer, initialised from ``seed`` in order: the designer and the local baseline agree bitwise."""
    torch.manual_seed(seed)
    return [build_layer(layer) for layer in spec.layers]


def make_optimizer(module: nn.Module, opt: dict[str, Any]) -> torch.optim.Optimizer | None:
    """SGD over this layer's own parameters (per-parameter SGD equals SGD over the whole model)."""
    params = list(module.parameters())
    if not params:
        return None
    return torch.optim.SGD(params, lr=float(opt.get("lr", 0.01)), momentum=float(opt.get("momentum", 0.0)))


def layer_state(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, torch.Tensor]:
    """Parameters and momentum buffers as named tensors: a checkpoint that resumes bit for bit."""
    state = {f"p.{k}": v.detach().clone() for k, v in module.state_dict().items()}
    if optimizer is not None:
        names = dict(module.named_parameters())
        for name, p in names.items():
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                state[f"m.{name}"] = buf.detach().clone()
    return state


def load_layer_state(module: nn.Module, optimizer: torch.optim.Optimizer | None,
                     state: dict[str, torch.Tensor]) -> None:
    """Inverse of ``layer_state``; a missing or misshapen tensor is a VeilError."""
    params = {k[2:]: v for k, v in state.items() if k.startswith("p.")}
    try:
        module.load_state_dict(params, strict=True)
    except RuntimeError as exc:
        raise VeilError(f"layer state does not fit the layer spec: {str(exc).splitlines()[0]}") from None
    if optimizer is not None:
        for name, p in module.named_parameters():
            buf = state.get(f"m.{name}")
            if buf is not None:
                if buf.shape != p.shape:
                    raise VeilError(f"momentum buffer {name} has shape {tuple(buf.shape)}, not {tuple(p.shape)}")
                optimizer.state[p]["momentum_buffer"] = buf.clone()
