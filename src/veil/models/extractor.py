"""ExtNet: the public, frozen feature extractor whose token output the owner obfuscates.

:class:`Extractor` is what every ExtNet offers (images -> tokens (B, N, D), frozen); ``ExtractorConfig.kind``
names the architecture, registered by its own module (:mod:`veil.models.registry`). Veil's default is
dlib's pre-trained face ResNet cut after a few residual levels (:mod:`veil.models.dlib_resnet`, kind
``dlib-resnet``: ``veil extractor list``). This module holds the paper's kind: the first blocks of a ViT
(patch + position embedding, then transformer blocks), either a timm ``VisionTransformer`` whose patch
embedding is a ResNet-18 convolutional stem (kind ``hybrid``, timm's ``HybridEmbed``, trained from scratch
by ``veil extractor pretrain``) or any timm ViT checkpoint in safetensors (kind ``timm``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import timm
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_hybrid import HybridEmbed
from torch import nn

from veil.errors import VeilError
from veil.io import read_safetensors, read_safetensors_metadata, save_safetensors
from veil.models import registry

VIT_KINDS = ("hybrid", "timm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ExtractorConfig:
    """Architecture of the extractor (``kind``, a registered name) and how much of it forms ExtNet.

    ``kind='hybrid'``: ResNet-18 stem (``stem_stages`` residual stages) feeding ViT blocks.
    ``kind='timm'``: any timm ViT built by ``timm_name`` (weights from a local safetensors file).
    ``kind='dlib-resnet'``: dlib's pre-trained face ResNet (:mod:`veil.models.dlib_resnet`) cut after
    ``cut`` residual levels; tokens are the spatial positions of that feature map.
    Each kind checks (and completes) its config when registered: see :mod:`veil.models.registry`.
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
        registry.kind(self.kind).configure(self)


def _configure_vit(cfg: ExtractorConfig) -> None:
    if not 1 <= cfg.ext_depth <= cfg.depth:
        raise VeilError(f"ext_depth must be in 1..depth={cfg.depth}, got {cfg.ext_depth}")
    if cfg.kind == "hybrid" and not 1 <= cfg.stem_stages <= 4:
        raise VeilError(f"stem_stages must be 1..4, got {cfg.stem_stages}")


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


class Extractor(nn.Module):
    """What every ExtNet offers the owner, the cloud and the attacks: images -> tokens (B, N, D).

    Frozen and in eval mode (``train()`` keeps it so): the owner never trains it, and a token must not
    depend on the rest of its batch. ``cfg`` is the extractor's config (``cfg.img_size`` is its input side).
    """

    cfg: ExtractorConfig

    def train(self, mode: bool = True) -> Extractor:  # noqa: ARG002 - frozen by design
        return super().train(False)

    @property
    def token_shape(self) -> tuple[int, int]:
        """(tokens, dim) of the output."""
        raise NotImplementedError

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images (uint8 or float in [0, 1]) -> the network's normalised input."""
        raise NotImplementedError


class ExtNet(Extractor):
    """Images (uint8 or float in [0, 1]) -> tokens (B, N, D) after ``ext_depth`` blocks of the backbone.

    Frozen and in eval mode: the owner never trains it, and its output must not depend on batch.
    """

    mean: torch.Tensor  # buffers, typed for the checker
    std: torch.Tensor

    def __init__(self, backbone: VisionTransformer, cfg: ExtractorConfig) -> None:
        super().__init__()
        if backbone.pos_embed is None:
            raise VeilError("ExtNet needs a ViT with a learned position embedding (timm pos_embed is None)")
        self.cfg = cfg
        self.patch_embed: nn.Module = backbone.patch_embed
        self.cls_token = backbone.cls_token
        self.pos_embed: torch.Tensor = backbone.pos_embed
        self.reg_token = getattr(backbone, "reg_token", None)
        self.no_embed_class = bool(getattr(backbone, "no_embed_class", False))
        self.norm_pre = backbone.norm_pre
        self.blocks = nn.Sequential(*list(backbone.blocks)[: cfg.ext_depth])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def token_shape(self) -> tuple[int, int]:
        """(tokens, dim) of the output, CLS token included."""
        prefix = sum(t.shape[1] for t in (self.cls_token, self.reg_token) if t is not None)
        n = int(self.patch_embed.num_patches) + prefix  # type: ignore[arg-type]  # timm's PatchEmbed attribute
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


AnyExtNet = Extractor  # the name callers used when there were two classes


def make_extnet(cfg: ExtractorConfig) -> Extractor:
    """An ExtNet of ``cfg``'s architecture with fresh (untrained) weights: Table 2's random extractor."""
    return registry.kind(cfg.kind).fresh(cfg)


def config_digest(state: dict[str, torch.Tensor]) -> str:
    """A short public digest of weights, recorded in stores so owner and cloud agree on ExtNet."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def save_backbone(backbone: nn.Module, cfg: ExtractorConfig, path: str | Path,
                  extra: dict | None = None) -> Path:
    """Weights as safetensors, the config (and any provenance) as JSON metadata inside the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "veil-extractor", "config": json.dumps(asdict(cfg)), "extra": json.dumps(extra or {})}
    return save_safetensors(backbone.state_dict(), path, meta)  # atomic: a crash leaves no half file


def load_backbone(path: str | Path, cfg: ExtractorConfig | None = None) -> tuple[VisionTransformer,
                                                                                  ExtractorConfig]:
    """Rebuild the backbone from a Veil extractor file, or from a plain timm checkpoint plus ``cfg``."""
    meta = read_safetensors_metadata(path)
    kind = json.loads(meta.get("config", "{}")).get("kind")
    if kind is not None and kind not in VIT_KINDS:
        raise VeilError(f"{path} is a {kind} extractor, not a ViT backbone; load it with load_extnet")
    if meta.get("format") == "veil-extractor":
        cfg = ExtractorConfig(**json.loads(meta["config"]))
    elif cfg is None:
        raise VeilError(f"{path} carries no Veil config; pass the timm model name and image size")
    backbone = build_backbone(cfg)
    state = read_safetensors(path)
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
        path = registry.resolve_extractor(str(path))
    meta = read_safetensors_metadata(path)
    if meta.get("format") == "veil-extractor":
        cfg = ExtractorConfig(**json.loads(meta["config"]))
        return registry.kind(cfg.kind).load(Path(path), cfg)
    backbone, cfg = load_backbone(path, cfg)
    return ExtNet(backbone, cfg)


def extnet_digest(ext: AnyExtNet) -> str:
    return config_digest(ext.state_dict())


def _load_vit(path: Path, cfg: ExtractorConfig) -> ExtNet:
    backbone, cfg = load_backbone(path, cfg)
    return ExtNet(backbone, cfg)


for _kind in VIT_KINDS:
    registry.register_kind(registry.ExtractorKind(_kind, _configure_vit, lambda cfg: ExtNet(build_backbone(cfg), cfg),
                                                  _load_vit))
registry.register(registry.ExtractorEntry(
    "hybrid", "ResNet-18 stem + ViT blocks trained from scratch on the split's public identities (64 px)", None,
    "veil extractor pretrain --split SPLIT --out FILE"))
registry.register(registry.ExtractorEntry(
    "timm:NAME", "your own timm ViT checkpoint (safetensors), its first blocks", None,
    "veil extractor import W.safetensors --timm-name NAME --out FILE"))
