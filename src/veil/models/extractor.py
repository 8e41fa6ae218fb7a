"""ExtNet: the public, frozen feature extractor whose token output the owner obfuscates.

The paper's ExtNet is the first blocks of a pre-trained ViT (patch + position embedding, then
transformer blocks). On CPU, a ViT trained from scratch on a few thousand faces is weak, so
Veil's default backbone is a timm ``VisionTransformer`` whose patch embedding is a ResNet-18
convolutional stem (timm's ``HybridEmbed``): the token interface XNN needs, with the sample
efficiency of convolutions. Any timm ViT checkpoint (safetensors) also loads as an ExtNet.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import timm
import torch
import torchvision
from safetensors import safe_open
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_hybrid import HybridEmbed
from torch import nn

from veil.errors import VeilError
from veil.io import save_safetensors

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ExtractorConfig:
    """Architecture of the pre-training backbone and how many of its blocks form ExtNet.

    ``kind='hybrid'``: ResNet-18 stem (``stem_stages`` residual stages) feeding ViT blocks.
    ``kind='timm'``: any timm ViT built by ``timm_name`` (weights from a local safetensors file).
    ``kind='dlib-resnet'``: dlib's pre-trained face ResNet (:mod:`veil.models.dlib_resnet`) cut after
    ``cut`` residual levels; tokens are the spatial positions of that feature map.
    """

    kind: str = "hybrid"
    img_size: int = 64
    stem_stages: int = 3
    embed_dim: int = 256
    num_heads: int = 4
    depth: int = 4
    ext_depth: int = 2
    timm_name: str = ""
    drop_path: float = 0.1
    cut: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("hybrid", "timm", "dlib-resnet"):
            raise VeilError(f"extractor kind must be 'hybrid', 'timm' or 'dlib-resnet', got {self.kind!r}")
        if self.kind == "dlib-resnet":
            from veil.models.dlib_resnet import IMAGE_SIZE, LEVELS

            if not 1 <= self.cut <= len(LEVELS):
                raise VeilError(f"dlib-resnet cut must be 1..{len(LEVELS)} residual levels, got {self.cut}")
            self.img_size, self.embed_dim = IMAGE_SIZE, LEVELS[self.cut - 1][0]
            return
        if not 1 <= self.ext_depth <= self.depth:
            raise VeilError(f"ext_depth must be in 1..depth={self.depth}, got {self.ext_depth}")
        if self.kind == "hybrid" and not 1 <= self.stem_stages <= 4:
            raise VeilError(f"stem_stages must be 1..4, got {self.stem_stages}")


def _resnet18_stem(stages: int) -> nn.Module:
    r = torchvision.models.resnet18(weights=None)
    layers = [r.layer1, r.layer2, r.layer3, r.layer4][:stages]
    return nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, *layers)


def build_backbone(cfg: ExtractorConfig) -> VisionTransformer:
    """The whole ViT (all ``cfg.depth`` blocks); ExtNet keeps the first ``cfg.ext_depth``."""
    if cfg.kind == "timm":
        if not cfg.timm_name:
            raise VeilError("extractor kind 'timm' needs timm_name (e.g. vit_tiny_patch16_224)")
        model = timm.create_model(cfg.timm_name, pretrained=False, num_classes=0, img_size=cfg.img_size)
        if not isinstance(model, VisionTransformer):
            raise VeilError(f"{cfg.timm_name} is not a timm VisionTransformer; ExtNet needs its token blocks")
        cfg.depth = len(model.blocks)
        cfg.embed_dim = model.embed_dim
        if cfg.ext_depth > cfg.depth:
            raise VeilError(f"ext_depth {cfg.ext_depth} exceeds {cfg.timm_name}'s {cfg.depth} blocks")
        return model
    embed = partial(HybridEmbed, backbone=_resnet18_stem(cfg.stem_stages))
    return VisionTransformer(img_size=cfg.img_size, patch_size=1, embed_layer=embed, embed_dim=cfg.embed_dim,
                             depth=cfg.depth, num_heads=cfg.num_heads, num_classes=0, global_pool="avg",
                             drop_path_rate=cfg.drop_path)


class ExtNet(nn.Module):
    """Images (uint8 or float in [0, 1]) -> tokens (B, N, D) after ``ext_depth`` blocks of the backbone.

    Frozen and in eval mode: the owner never trains it, and its output must not depend on batch.
    """

    def __init__(self, backbone: VisionTransformer, cfg: ExtractorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = backbone.patch_embed
        self.cls_token = backbone.cls_token
        self.pos_embed = backbone.pos_embed
        self.reg_token = getattr(backbone, "reg_token", None)
        self.no_embed_class = bool(getattr(backbone, "no_embed_class", False))
        self.norm_pre = backbone.norm_pre
        self.blocks = nn.Sequential(*list(backbone.blocks)[: cfg.ext_depth])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ExtNet:  # noqa: ARG002 - frozen by design
        return super().train(False)

    @property
    def token_shape(self) -> tuple[int, int]:
        """(tokens, dim) of the output, CLS token included."""
        prefix = sum(t.shape[1] for t in (self.cls_token, self.reg_token) if t is not None)
        n = self.patch_embed.num_patches + prefix
        return n, self.cfg.embed_dim

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        if images.shape[-1] != self.cfg.img_size or images.shape[-2] != self.cfg.img_size:
            raise VeilError(f"ExtNet expects {self.cfg.img_size}x{self.cfg.img_size} images, "
                            f"got {tuple(images.shape[-2:])}")
        return (images - self.mean) / self.std

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.normalize(images))
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if self.no_embed_class:
            x = torch.cat(prefix + [x + self.pos_embed], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + self.pos_embed
        return self.blocks(self.norm_pre(x))


class DlibExtNet(nn.Module):
    """ExtNet from dlib's face ResNet: images -> the feature map after ``cfg.cut`` levels as tokens.

    Tokens are the H*W spatial positions (row-major), each a C-channel vector, so ObfNet, the store,
    RecNet and every attack keep their (B, N, D) interface. Frozen and in eval mode, like ExtNet.
    """

    def __init__(self, net: nn.Module, cfg: ExtractorConfig) -> None:
        super().__init__()
        from veil.models.dlib_resnet import level_output_shape

        self.cfg = cfg
        self.conv, self.aff = net.conv, net.aff
        self.levels = nn.ModuleList(list(net.levels)[: cfg.cut])
        self._shape = level_output_shape(cfg.cut, cfg.img_size)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> DlibExtNet:  # noqa: ARG002 - frozen by design
        return super().train(False)

    @property
    def token_shape(self) -> tuple[int, int]:
        return self._shape

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        from veil.models.dlib_resnet import normalize_rgb

        if images.shape[-1] != self.cfg.img_size or images.shape[-2] != self.cfg.img_size:
            raise VeilError(f"ExtNet expects {self.cfg.img_size}x{self.cfg.img_size} images, "
                            f"got {tuple(images.shape[-2:])}")
        return normalize_rgb(images)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) after the cut; differentiable (XNN-d's noise encoder trains a copy)."""
        x = torch.nn.functional.max_pool2d(torch.relu(self.aff(self.conv(self.normalize(images)))), 3, 2)
        for level in self.levels:
            x = level(x)
        return x

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature_map(images).flatten(2).transpose(1, 2).contiguous()


AnyExtNet = ExtNet | DlibExtNet


def make_extnet(cfg: ExtractorConfig) -> AnyExtNet:
    """An ExtNet of ``cfg``'s architecture with fresh (untrained) weights: Table 2's random extractor."""
    if cfg.kind == "dlib-resnet":
        from veil.models.dlib_resnet import DlibFaceResNet

        return DlibExtNet(DlibFaceResNet(), cfg)
    return ExtNet(build_backbone(cfg), cfg)


def config_digest(state: dict[str, torch.Tensor]) -> str:
    """A short public digest of weights, recorded in stores so owner and cloud agree on ExtNet."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def save_backbone(backbone: VisionTransformer, cfg: ExtractorConfig, path: str | Path,
                  extra: dict | None = None) -> Path:
    """Weights as safetensors, the config (and any provenance) as JSON metadata inside the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    meta = {"format": "veil-extractor", "config": json.dumps(asdict(cfg)), "extra": json.dumps(extra or {})}
    return save_safetensors(state, path, metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except FileNotFoundError:
        raise VeilError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # safetensors raises its own error types for truncated/corrupt files
        raise VeilError(f"{path} is not a readable safetensors file ({exc})") from None


def _load_state(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise VeilError(f"checkpoint not found: {path}") from None
    except Exception as exc:
        raise VeilError(f"{path} is not a readable safetensors file ({exc})") from None


def load_backbone(path: str | Path, cfg: ExtractorConfig | None = None) -> tuple[VisionTransformer,
                                                                                  ExtractorConfig]:
    """Rebuild the backbone from a Veil extractor file, or from a plain timm checkpoint plus ``cfg``."""
    meta = read_metadata(path)
    if json.loads(meta.get("config", "{}")).get("kind") == "dlib-resnet":
        raise VeilError(f"{path} is a dlib-resnet extractor, not a ViT backbone; load it with load_extnet")
    if meta.get("format") == "veil-extractor":
        cfg = ExtractorConfig(**json.loads(meta["config"]))
    elif cfg is None:
        raise VeilError(f"{path} carries no Veil config; pass the timm model name and image size")
    backbone = build_backbone(cfg)
    state = _load_state(path)
    state = {k: v for k, v in state.items() if not k.startswith("head")}
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc)[:200])
        raise VeilError(f"{path} does not fit a {cfg.kind} extractor ({cfg.timm_name or 'hybrid'}, "
                        f"img {cfg.img_size}): {detail}") from None
    needed = [k for k in missing if k.startswith(("patch_embed", "cls_token", "pos_embed", "blocks."))
              and (not k.startswith("blocks.") or int(k.split(".")[1]) < cfg.ext_depth)]
    if needed or unexpected:
        raise VeilError(f"{path} does not fit a {cfg.kind} extractor ({cfg.timm_name or 'hybrid'}, "
                        f"img {cfg.img_size}): missing {needed[:3]}, unexpected {unexpected[:3]}")
    return backbone, cfg


def load_extnet(path: str | Path, cfg: ExtractorConfig | None = None) -> AnyExtNet:
    """ExtNet from a checkpoint file (see :func:`load_backbone`) or a registered extractor name.

    A name (``dlib-resnet``, ``dlib-resnet-cut3``; ``veil extractor list``) is materialised in Veil's
    cache on first use, so every ``--extractor`` option takes a name or a file.
    """
    if not Path(path).exists():
        from veil.models.registry import resolve_extractor

        path = resolve_extractor(str(path))
    meta = read_metadata(path)
    if meta.get("format") == "veil-extractor" and json.loads(meta.get("config", "{}")).get("kind") == "dlib-resnet":
        from veil.models.dlib_resnet import DlibFaceResNet

        cfg = ExtractorConfig(**json.loads(meta["config"]))
        net = DlibFaceResNet()
        try:
            net.load_state_dict(_load_state(path))
        except RuntimeError as exc:
            raise VeilError(f"{path} does not fit dlib's face ResNet ({str(exc).splitlines()[0]})") from None
        return DlibExtNet(net, cfg)
    backbone, cfg = load_backbone(path, cfg)
    return ExtNet(backbone, cfg)


def extnet_digest(ext: AnyExtNet) -> str:
    return config_digest(ext.state_dict())
