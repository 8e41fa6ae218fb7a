"""A reader of dlib's binary serialization for one network: the face ResNet of ``dnn_face_recognition_ex``.

dlib writes a network recursively (``dlib/dnn/core.h``): each ``add_layer`` writes its version, then its
whole sub-network, then its own details and state, so the file holds every layer's version from the
loss inwards, the input layer, and then each layer's details from the input outwards. Integers use
dlib's variable-length code (``dlib/serialize.h``: a control byte with the byte count and a sign bit,
then little-endian bytes), floats a (mantissa, exponent) pair of such integers, tensors raw
little-endian float32 (``dlib/cuda/tensor.h``, version 2).

This reader does not interpret arbitrary dlib files: it walks the one expected layout and refuses,
naming the layer, any file that diverges. No pickle and no C++ build are involved.
"""

from __future__ import annotations

import builtins  # _Bytes has a method named int
from dataclasses import dataclass, field

import numpy as np

from veil.errors import VeilError


class DlibFormatError(VeilError):
    """The file is not the expected dlib network (or is truncated or corrupt)."""


@dataclass(frozen=True)
class Layer:
    """One node of a dlib network, listed from the input outwards.

    ``kind`` is one of con, affine, relu, max_pool, avg_pool, add_prev, fc, tag, skip; ``args`` holds
    what the file must agree with (filters, kernel, stride, padding, pool window).
    """

    kind: str
    name: str
    args: dict = field(default_factory=dict)


Shape4 = tuple[int, int, int, int]  # a dlib tensor shape (named here: _Bytes.int shadows int in its body)


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DlibFormatError(f"file ends inside {what} (offset {self.pos}, needs {n} bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, what: str) -> int:
        ctrl = self.take(1, what)[0]
        size, negative = ctrl & 0x0F, bool(ctrl & 0x80)
        if size == 0 or size > 8 or ctrl & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} in {what} (offset {self.pos - 1})")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if negative else value

    def float(self, what: str) -> float:
        mantissa, exponent = self.int(what), self.int(what)
        if exponent >= 32000 - 3:  # dlib's float_details marks inf, -inf, nan with reserved exponents
            raise DlibFormatError(f"non-finite float in {what}")
        return float(mantissa) * 2.0 ** exponent

    def bool(self, what: str) -> bool:
        ch = self.take(1, what)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad boolean {ch!r} in {what}")
        return ch == b"1"

    def string(self, what: str) -> str:
        n = self.int(what)
        if n > 256:
            raise DlibFormatError(f"implausible string length {n} in {what}")
        return self.take(n, what).decode("ascii", errors="replace")

    def shape(self, what: str, version: builtins.int) -> Shape4:
        got = self.int(what)
        if got != version:
            raise DlibFormatError(f"{what}: tensor version {got}, expected {version}")
        dims = tuple(self.int(what) for _ in range(4))
        if any(d < 0 for d in dims) or np.prod(dims, dtype=np.int64) > 50_000_000:
            raise DlibFormatError(f"{what}: implausible tensor shape {dims}")
        return dims  # type: ignore[return-value]

    def tensor(self, what: str) -> np.ndarray:
        dims = self.shape(what, 2)
        n = int(np.prod(dims))
        return np.frombuffer(self.take(4 * n, what), dtype="<f4").reshape(dims).astype(np.float32)

    def alias(self, what: str) -> Shape4:
        return self.shape(what, 1)


def _expect(cond: bool, layer: Layer, detail: str) -> None:
    if not cond:
        raise DlibFormatError(f"layer {layer.name} ({layer.kind}): {detail}; not the expected dlib face ResNet")


def _version_string(r: _Bytes, layer: Layer, allowed: tuple[str, ...]) -> str:
    v = r.string(layer.name)
    _expect(v in allowed, layer, f"found {v!r}, expected one of {allowed}")
    return v


def _window(r: _Bytes, layer: Layer) -> None:
    got = [r.int(layer.name) for _ in range(6)]  # nr, nc, stride_y, stride_x, padding_y, padding_x
    want = [layer.args[k] for k in ("nr", "nc", "stride", "stride", "pad", "pad")]
    _expect(got == want, layer, f"window/stride/padding {got}, expected {want}")


def _details(r: _Bytes, layer: Layer, out: dict[str, np.ndarray]) -> None:
    """Read one layer's details; append its parameters to ``out`` under ``layer.name``."""
    k = layer.kind
    if k == "con":
        v = _version_string(r, layer, ("con_4", "con_5", "con_6"))
        params = r.tensor(layer.name).reshape(-1)
        filters = r.int(layer.name)
        _expect(filters == layer.args["filters"], layer, f"{filters} filters, expected {layer.args['filters']}")
        window = [r.int(layer.name) for _ in range(6)]  # nr, nc, stride_y, stride_x, padding_y, padding_x
        a = layer.args
        want = [a["k"], a["k"], a["stride"], a["stride"], a["pad"], a["pad"]]
        _expect(window == want, layer, f"kernel/stride/padding {window}, expected {want}")
        fshape, bshape = r.alias(layer.name), r.alias(layer.name)
        for _ in range(4):
            r.float(layer.name)  # learning-rate and weight-decay multipliers
        if v in ("con_5", "con_6"):
            r.bool(layer.name)
        if v == "con_6":
            r.bool(layer.name)
        nf, nb = int(np.prod(fshape)), int(np.prod(bshape))
        _expect(fshape[0] == filters and params.size == nf + nb, layer,
                f"parameter block of {params.size} floats does not hold filters {fshape} + biases {bshape}")
        out[f"{layer.name}.weight"] = params[:nf].reshape(fshape)
        if nb:
            out[f"{layer.name}.bias"] = params[nf:nf + nb].reshape(-1)
    elif k == "affine":
        v = _version_string(r, layer, ("affine_", "affine_2"))
        params = r.tensor(layer.name).reshape(-1)
        gshape, bshape = r.alias(layer.name), r.alias(layer.name)
        mode = r.int(layer.name)
        _expect(mode == 0, layer, f"mode {mode}, expected 0 (CONV_MODE)")
        if v == "affine_2":
            _expect(not r.bool(layer.name), layer, "layer is disabled")
        ng = int(np.prod(gshape))
        _expect(ng == layer.args["channels"] and params.size == 2 * ng, layer,
                f"gamma {gshape} / {params.size} parameters, expected {layer.args['channels']} channels")
        out[f"{layer.name}.weight"], out[f"{layer.name}.bias"] = params[:ng].copy(), params[ng:].copy()
    elif k == "relu":
        v = _version_string(r, layer, ("relu_", "relu_2"))
        if v == "relu_2":
            _expect(not r.bool(layer.name), layer, "layer is disabled")
    elif k in ("max_pool", "avg_pool"):
        _version_string(r, layer, (f"{k}_2",))
        _window(r, layer)
    elif k == "add_prev":
        _version_string(r, layer, ("add_prev_",))
    elif k == "fc":
        v = _version_string(r, layer, ("fc_2", "fc_3"))
        outputs, inputs = r.int(layer.name), r.int(layer.name)
        _expect((outputs, inputs) == (layer.args["outputs"], layer.args["inputs"]), layer,
                f"{inputs}->{outputs}, expected {layer.args['inputs']}->{layer.args['outputs']}")
        params = r.tensor(layer.name).reshape(-1)
        r.alias(layer.name), r.alias(layer.name)  # weights and biases views of the parameter block
        bias_mode = r.int(layer.name)
        _expect(bias_mode == 1, layer, f"bias mode {bias_mode}, expected 1 (no bias)")
        for _ in range(4):
            r.float(layer.name)
        if v == "fc_3":
            r.bool(layer.name)
        _expect(params.size == inputs * outputs, layer, f"{params.size} weights, expected {inputs * outputs}")
        out[f"{layer.name}.weight"] = params.reshape(inputs, outputs).T.copy()  # dlib: x @ W; torch: x @ W.T
    else:  # pragma: no cover - the layout table only holds the kinds above
        raise AssertionError(k)


def _state(r: _Bytes, layer: Layer, version: int, innermost: bool) -> None:
    """The bookkeeping an add_layer writes after its details (flags and cached tensors)."""
    for _ in range(3):
        r.bool(layer.name)
    for what in ("x_grad", "cached_output"):
        r.tensor(f"{layer.name}.{what}")
    if innermost:
        r.tensor(f"{layer.name}.grad_final")
        if version >= 3:
            r.int(f"{layer.name}.sample_expansion_factor")
    elif version == 2:
        r.tensor(f"{layer.name}.params_grad")


def read_network(data: bytes, layers: list[Layer], image_size: int) -> tuple[dict[str, np.ndarray], dict]:
    """Parameters (torch naming, numpy float32) and input/loss settings of a loss_metric network.

    ``layers`` lists the expected network from the input outwards (without input and loss).
    """
    r = _Bytes(data)
    top = Layer("loss", "loss")
    _expect(r.int("loss version") == 1, top, "unexpected add_loss_layer version")
    loss = r.string("loss")
    _expect(loss in ("loss_metric_", "loss_metric_2"), top, f"found {loss!r}, expected loss_metric")
    info: dict = {"loss": loss}
    if loss == "loss_metric_2":
        info["margin"], info["distance_threshold"] = r.float("loss margin"), r.float("loss distance threshold")
    versions: dict[int, int] = {}
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        v = r.int(f"{layer.name} version")
        if layer.kind in ("tag", "skip"):
            _expect(v == 1, layer, f"version {v}, expected 1")
        elif i == 0:
            _expect(v in (2, 3), layer, f"add_layer (input) version {v}, expected 2 or 3")
        else:
            _expect(v in (1, 2), layer, f"add_layer version {v}, expected 1 or 2")
        versions[i] = v
    inp = Layer("input", "input")
    _expect(r.string("input") == "input_rgb_image_sized", inp, "expected input_rgb_image_sized")
    info["mean_rgb"] = [r.float("input mean") for _ in range(3)]
    size = (r.int("input rows"), r.int("input cols"))
    _expect(size == (image_size, image_size), inp, f"input size {size}, expected {image_size}")
    params: dict[str, np.ndarray] = {}
    for i, layer in enumerate(layers):
        if layer.kind in ("tag", "skip"):
            continue
        _details(r, layer, params)
        _state(r, layer, versions[i], innermost=i == 0)
    if r.pos != len(r.data):
        raise DlibFormatError(f"{len(r.data) - r.pos} unexpected trailing bytes after the network")
    return params, info
