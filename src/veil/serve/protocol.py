"""The wire format: a safetensors body holding ``features`` (B, N, D) float32 and optionally ``flipped``.

safetensors is parsed without unpickling; the header's offsets are checked against the buffer by the
library. Everything else (keys, dtype, shape, batch size, finite and bounded values) is checked here, and every
failure is a :class:`BadRequest` carrying an HTTP status and a one-line reason.
"""

from __future__ import annotations

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from veil.serve.config import DEFAULT_MAX_ABS

CONTENT_TYPE = "application/vnd.veil.features+safetensors"
ALLOWED_KEYS = {"features", "flipped"}



class BadRequest(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


def encode(features: torch.Tensor, flipped: torch.Tensor | None = None) -> bytes:
    """Request body for FG features (and, optionally, those of the mirrored images for flip averaging)."""
    tensors = {"features": features.detach().to(torch.float32).cpu().contiguous()}
    if flipped is not None:
        tensors["flipped"] = flipped.detach().to(torch.float32).cpu().contiguous()
    return st_save(tensors)


def decode(body: bytes, tokens: int, dim: int, max_batch: int,
           max_abs: float = DEFAULT_MAX_ABS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validated ``(features, flipped-or-None)`` from a request body, or :class:`BadRequest`."""
    if not body:
        raise BadRequest(400, "empty body: expected a safetensors payload with a 'features' tensor")
    try:
        tensors = st_load(body)
    except Exception as exc:  # the library raises its own SafetensorError and others for corrupt input
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise BadRequest(400, f"body is not a valid safetensors payload ({detail})") from None
    extra = set(tensors) - ALLOWED_KEYS
    if extra:
        raise BadRequest(422, f"unexpected tensor(s) {sorted(extra)}: only 'features' and 'flipped' are accepted")
    if "features" not in tensors:
        raise BadRequest(422, "missing tensor 'features'")
    out: list[torch.Tensor | None] = []
    for name in ("features", "flipped"):
        t = tensors.get(name)
        if t is None:
            out.append(None)
            continue
        if t.dtype != torch.float32:
            raise BadRequest(422, f"'{name}' must be float32, got {str(t.dtype).replace('torch.', '')}")
        if t.ndim != 3 or tuple(t.shape[1:]) != (tokens, dim):
            raise BadRequest(422, f"'{name}' must have shape (batch, {tokens}, {dim}), got {tuple(t.shape)}")
        if not 1 <= t.shape[0] <= max_batch:
            raise BadRequest(422, f"'{name}' batch must be 1..{max_batch}, got {t.shape[0]}")
        if not torch.isfinite(t).all():
            raise BadRequest(422, f"'{name}' contains NaN or infinite values")
        if t.numel() and float(t.abs().max()) > max_abs:
            raise BadRequest(422, f"'{name}' has a value of magnitude {float(t.abs().max()):.3g}, above the bound "
                             f"{max_abs:g} for features")
        out.append(t)
    features, flipped = out
    assert features is not None  # checked above: 'features' is present
    if flipped is not None and flipped.shape != features.shape:
        raise BadRequest(422, f"'flipped' shape {tuple(flipped.shape)} differs from 'features' {tuple(features.shape)}")
    return features, flipped
