"""The client's feature generator FG = LayerNorm(ExtNet(x)) + noise_encoder(x).

ExtNet is public and frozen. The paper's baseline adds a LayerNorm after ExtNet; Veil's uses no
affine parameters, so every clean token has RMS 1. The noise encoder
(``veil.obfuscation.noise.NoiseEncoder``) has ExtNet's structure (the same stem and first blocks),
starts from ExtNet's public weights and is then trained adversarially (stage 1); its trained weights
are the client's secret. Its output is rescaled per token to RMS ``eps``: a hard bound on the noise,
so the noised feature is never more than ``eps`` away (per token, in RMS) from the clean one.
BatchNorm layers use their running statistics in training as at inference, so a feature depends on
its image only, never on the rest of the batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import nn

from veil.errors import VeilError
from veil.io import read_safetensors, read_safetensors_metadata
from veil.models.extractor import AnyExtNet, ExtractorConfig, extnet_digest, make_extnet
from veil.obfuscation.noise import NoiseEncoder
from veil.secretfile import check_private, write_private
from veil.xnnd.token_noise import TokenEncoderConfig, TokenNoiseEncoder

FORMAT = "veil-xnnd-fg"


class FeatureGenerator(nn.Module):
    """FG: what the client runs before anything leaves the device. ``encoder=None`` is the baseline (no noise)."""

    def __init__(self, ext: AnyExtNet, encoder: NoiseEncoder | TokenNoiseEncoder | None = None) -> None:
        super().__init__()
        self.ext = ext
        self.encoder = encoder
        self.norm = nn.LayerNorm(ext.cfg.embed_dim, elementwise_affine=False)

    @property
    def token_shape(self) -> tuple[int, int]:
        return self.ext.token_shape

    @property
    def eps(self) -> float:
        return self.encoder.eps if self.encoder is not None else 0.0

    def clean(self, images: torch.Tensor) -> torch.Tensor:
        """The baseline feature: LayerNorm(ExtNet(x)); no gradient (ExtNet is frozen)."""
        with torch.no_grad():
            return self.norm(self.ext(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        clean = self.clean(images)
        if self.encoder is None:
            return clean
        return clean + self.noise_from_tokens(clean) if self.token_level else clean + self.encoder(images)

    @property
    def token_level(self) -> bool:
        """True when the encoder reads the clean tokens (``TokenNoiseEncoder``), not the image."""
        return getattr(self.encoder, "level", "images") == "tokens"

    def noise_from_tokens(self, clean: torch.Tensor) -> torch.Tensor:
        """The noise of a token-level encoder from clean tokens LayerNorm(ExtNet(x)) (the owner's cached ones)."""
        if self.encoder is None or not self.token_level:
            raise VeilError("this feature generator's noise encoder reads images, not tokens")
        return self.encoder(clean)

    def from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """FG's output from raw ExtNet tokens (B, N, D): what ``forward`` gives for the images they came from."""
        clean = self.norm(tokens.float())
        return clean if self.encoder is None else clean + self.noise_from_tokens(clean)


def save_generator(fg: FeatureGenerator, path: str | Path, info: dict | None = None) -> Path:
    """The client's secret file (mode 0600): ExtNet weights and the noise encoder, safetensors + JSON metadata."""
    if fg.encoder is None:
        raise VeilError("this feature generator has no noise encoder: nothing secret to save")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"ext.{k}": v for k, v in fg.ext.state_dict().items()}
    state.update({f"enc.{k}": v for k, v in fg.encoder.state_dict().items()})
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    encoder = fg.encoder.config_dict() if isinstance(fg.encoder, TokenNoiseEncoder) else {"kind": "images"}
    meta = {"format": FORMAT, "extractor_config": json.dumps(asdict(fg.ext.cfg)), "eps": repr(fg.encoder.eps),
            "encoder": json.dumps(encoder), "extractor_digest": extnet_digest(fg.ext), "info": json.dumps(info or {})}
    return write_private(path, st_save(state, metadata=meta))  # unique O_EXCL|O_NOFOLLOW temp file, 0600


def load_generator(path: str | Path) -> tuple[FeatureGenerator, dict]:
    """FG (eval mode) from :func:`save_generator`'s file, and its info dict."""
    meta = read_safetensors_metadata(path)
    if meta.get("format") != FORMAT:
        raise VeilError(f"{path} is not a Veil XNN-d feature-generator file")
    check_private(path, "feature-generator file (the client's secret)")
    try:
        cfg = ExtractorConfig(**json.loads(meta["extractor_config"]))
        eps = float(meta["eps"])
        enc_meta = json.loads(meta.get("encoder", '{"kind": "images"}'))  # files before token encoders: images
        kind = enc_meta.pop("kind")
        enc_cfg = TokenEncoderConfig(**enc_meta) if kind == "tokens" else None
        if kind not in ("images", "tokens"):
            raise ValueError(f"unknown noise encoder kind {kind!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise VeilError(f"{path}: corrupt metadata ({exc})") from None
    state = read_safetensors(path)
    ext = make_extnet(cfg)
    enc = TokenNoiseEncoder(enc_cfg, eps) if enc_cfg is not None else NoiseEncoder(ext, eps)
    try:
        ext.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ext.")})
        enc.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("enc.")})
    except RuntimeError as exc:
        raise VeilError(f"{path}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    if extnet_digest(ext) != meta.get("extractor_digest"):
        raise VeilError(f"{path}: ExtNet weights do not match the recorded digest")
    fg = FeatureGenerator(ext, enc).eval()
    fg.requires_grad_(False)
    return fg, json.loads(meta.get("info", "{}"))
