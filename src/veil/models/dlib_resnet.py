"""dlib's public-domain face ResNet (``dlib_face_recognition_resnet_model_v1``) as a PyTorch module.

Why this model: it is the strongest face extractor that installs from the package registry
(``face-recognition-models`` ships the weights, ``dlib-bin`` runs the original), its author released
it into the public domain, and it was trained on 7,485 identities with none from LFW, so it is a
legitimate *public* ExtNet for an owner whose private persons are LFW's (LFW verification 99.38%).

The architecture is ``dnn_face_recognition_ex.cpp``'s ``anet_type`` (a ResNet-29 variant):
7x7/2 conv + affine + ReLU, 3x3/2 max-pool, five residual levels (32, 64, 128, 256, 256 channels;
each after the first opens with a down-sampling block whose shortcut is a 2x2 average pool), global
average pool and a 128-d linear map without bias. Two dlib rules matter for exact agreement:
strided convolutions and pools use no padding, and a residual sum of tensors of different sizes
zero-pads the smaller one at the end of each dimension (``tt::add``). Input: RGB 150x150,
``(pixel - mean_rgb) / 256``.

Weights are read from the installed ``.dat`` by :mod:`veil.models.dlib_format` (no pickle, no C++),
converted once into a safetensors file in Veil's cache with its SHA-256 recorded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from veil.errors import VeilError
from veil.io import read_safetensors, save_safetensors
from veil.models import registry
from veil.models.dlib_format import Layer, read_network
from veil.models.extractor import Extractor, ExtractorConfig
from veil.paths import cache_dir

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
IMAGE_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)
# (channels, blocks, first block down-samples), in forward order: dlib's alevel4 .. alevel0.
LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
EMBEDDING_DIM = 128


def level_output_shape(cut: int, image_size: int = IMAGE_SIZE) -> tuple[int, int]:
    """(tokens, channels) after ``cut`` residual levels: the ExtNet token shape at that cut."""
    s = (image_size - 7) // 2 + 1          # 7x7/2 conv, no padding
    s = (s - 3) // 2 + 1                   # 3x3/2 max-pool, no padding
    for _, _, down in LEVELS[:cut]:
        if down:                           # max of the block (3x3/2 conv) and shortcut (2x2/2 pool) sizes
            s = max((s - 3) // 2 + 1, (s - 2) // 2 + 1)
    return s * s, LEVELS[cut - 1][0]


class Affine(nn.Module):
    """dlib's ``affine`` layer: a per-channel scale and shift (a frozen batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _pad_to(t: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))


def zero_padded_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the element-wise sum, each tensor zero-padded to the larger size."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    return _pad_to(a, c, h, w) + _pad_to(b, c, h, w)


class ResBlock(nn.Module):
    """relu(block(x) + shortcut(x)); block = affine(conv3x3(relu(affine(conv3x3/s(x)))))."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.aff2 = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(zero_padded_sum(y, shortcut))


class DlibFaceResNet(nn.Module):
    """The whole network: RGB float images (already normalised) -> 128-d face descriptors.

    Its children, in order, *are* the forward pass (conv, affine, ReLU, max-pool, the five levels, global
    average pool, fc), so :func:`veil.partition.sequence.to_sequence` can cut it at any level boundary
    like the torchvision models; parameter names stay those of the converted weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.aff = Affine(32)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2)
        levels, cin = [], 32
        for cout, blocks, down in LEVELS:
            levels.append(nn.Sequential(*[ResBlock(cin if i == 0 else cout, cout, down and i == 0)
                                          for i in range(blocks)]))
            cin = cout
        self.levels = nn.Sequential(*levels)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(LEVELS[-1][0], EMBEDDING_DIM, bias=False)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.aff(self.conv(x))))

    def features(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """The feature map (B, C, H, W) after the stem and the first ``cut`` residual levels."""
        x = self.stem(x)
        for level in self.levels[:cut]:
            x = level(x)
        return x

    def head(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """The rest of the network from the feature map after ``cut`` levels to the descriptor."""
        for level in self.levels[cut:]:
            x = level(x)
        return self.fc(self.gap(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x, 0), 0)



class DlibExtNet(Extractor):
    """ExtNet from dlib's face ResNet: images -> the feature map after ``cfg.cut`` levels as tokens.

    Tokens are the H*W spatial positions (row-major), each a C-channel vector, so ObfNet, the store,
    RecNet and every attack keep their (B, N, D) interface. Frozen and in eval mode, like ExtNet.
    """

    def __init__(self, net: DlibFaceResNet, cfg: ExtractorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv, self.aff = net.conv, net.aff
        self.levels = nn.ModuleList(list(net.levels)[: cfg.cut])
        self._shape = level_output_shape(cfg.cut, cfg.img_size)
        self.requires_grad_(False)
        self.eval()

    @property
    def token_shape(self) -> tuple[int, int]:
        return self._shape

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
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


def normalize_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 1]) RGB -> dlib's input scaling ``(pixel - mean) / 256``."""
    x = images.float() if images.dtype == torch.uint8 else images * 255.0
    mean = torch.tensor(MEAN_RGB, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / 256.0


def layout() -> list[Layer]:
    """The expected network, from the input outwards, named as :class:`DlibFaceResNet`'s parameters."""
    out = [Layer("con", "conv", {"filters": 32, "k": 7, "stride": 2, "pad": 0}),
           Layer("affine", "aff", {"channels": 32}), Layer("relu", "stem.relu"),
           Layer("max_pool", "stem.pool", {"nr": 3, "nc": 3, "stride": 2, "pad": 0})]
    for li, (cout, blocks, down) in enumerate(LEVELS):
        for bi in range(blocks):
            p = f"levels.{li}.{bi}"
            d = down and bi == 0
            first = {"filters": cout, "k": 3, "stride": 2 if d else 1, "pad": 0 if d else 1}
            out += [Layer("tag", f"{p}.tag1"), Layer("con", f"{p}.conv1", first),
                    Layer("affine", f"{p}.aff1", {"channels": cout}), Layer("relu", f"{p}.relu1"),
                    Layer("con", f"{p}.conv2", {"filters": cout, "k": 3, "stride": 1, "pad": 1}),
                    Layer("affine", f"{p}.aff2", {"channels": cout})]
            if d:
                out += [Layer("tag", f"{p}.tag2"), Layer("skip", f"{p}.skip1"),
                        Layer("avg_pool", f"{p}.shortcut", {"nr": 2, "nc": 2, "stride": 2, "pad": 0})]
            out += [Layer("add_prev", f"{p}.add"), Layer("relu", f"{p}.relu")]
    out += [Layer("avg_pool", "pool", {"nr": 0, "nc": 0, "stride": 1, "pad": 0}),
            Layer("fc", "fc", {"outputs": EMBEDDING_DIM, "inputs": LEVELS[-1][0]})]
    return out


def installed_dat() -> Path:
    """The ``.dat`` shipped by ``face-recognition-models`` (found without importing that package,
    whose ``__init__`` needs the retired ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise VeilError("dlib's face model is not installed: pip install face-recognition-models "
                        "(or pass --extractor hybrid / a checkpoint file)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / DAT_NAME
    if not path.exists():
        raise VeilError(f"face-recognition-models is installed but {path} is missing; reinstall it")
    return path


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_dat(path: str | Path) -> dict[str, torch.Tensor]:
    """The network's parameters from a dlib ``.dat``, checked against the expected layout."""
    params, info = read_network(Path(path).read_bytes(), layout(), IMAGE_SIZE)
    if any(abs(a - b) > 1e-3 for a, b in zip(info["mean_rgb"], MEAN_RGB, strict=True)):
        raise VeilError(f"{path}: input mean {info['mean_rgb']} differs from dlib's {MEAN_RGB}")
    state = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
    missing = set(DlibFaceResNet().state_dict()) - set(state)
    if missing:
        raise VeilError(f"{path}: no weights for {sorted(missing)[:3]}")
    return state


def converted_weights(cache: Path) -> tuple[Path, str]:
    """The whole network as safetensors in ``cache`` (converted on first use) and its SHA-256."""
    dat = installed_dat()
    out = cache / "dlib_face_recognition_resnet_model_v1.safetensors"
    if not out.exists():
        meta = {"format": "veil-dlib-resnet", "source": DAT_NAME, "source_sha256": sha256_file(dat),
                "license": "public domain (Davis E. King)"}
        save_safetensors(read_dat(dat), out, meta)  # atomic: a crash leaves no half-converted file
    return out, sha256_file(out)


def load_whole(cache: Path) -> DlibFaceResNet:
    """The teacher whole (eval mode, frozen), from the converted safetensors."""
    path, _ = converted_weights(cache)
    net = DlibFaceResNet()
    net.load_state_dict(read_safetensors(path))
    net.requires_grad_(False)
    return net.eval()


def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """ExtNet tokens (B, H*W, C), row-major positions, back to the feature map (B, C, H, W)."""
    b, hw, c = tokens.shape
    side = int(round(hw ** 0.5))
    if side * side != hw:
        raise VeilError(f"{hw} tokens are not a square feature map")
    return tokens.float().transpose(1, 2).reshape(b, c, side, side)


def public_identifier(cut: int, cache: Path | None = None):
    """The rest of dlib's public network after ``cut`` levels: tokens -> 128-d descriptors.

    What an adversary (or the owner's reference) holds for free: the layers ExtNet does not keep.
    """
    net = load_whole(cache or cache_dir())

    @torch.no_grad()
    def embed(tokens: torch.Tensor) -> torch.Tensor:
        return net.head(tokens_to_map(tokens), cut)

    return embed


def describe(cache: Path) -> dict:
    path, digest = converted_weights(cache)
    return {"name": "dlib-resnet", "weights": str(path), "sha256": digest, "source": DAT_NAME,
            "levels": json.dumps([c for c, _, _ in LEVELS])}


# -- registered: the dlib-resnet kind and one name per cut ------------------------------------------------
# The default ExtNet (``dlib-resnet``, the demo and bench presets, every ``--extractor`` default): cut after level 5,
# 2 x 2 = 4 tokens x 256 channels. On aligned chips (issue 21) cut 5 beat cut 4 with the same cloud recipe
# (Vanilla+PE / XNN 94.06% / 92.96% vs 92.78% / 92.14%, n = 1,094; veil.presets). The one place the default cut
# is set: the registry's default name materialises this cut, and the presets use that name.
DEFAULT_CUT = 5


def _configure(cfg: ExtractorConfig) -> None:
    if not 1 <= cfg.cut <= len(LEVELS):
        raise VeilError(f"dlib-resnet cut must be 1..{len(LEVELS)} residual levels, got {cfg.cut}")
    cfg.img_size, cfg.embed_dim = IMAGE_SIZE, LEVELS[cfg.cut - 1][0]


def _load(path: Path, cfg: ExtractorConfig) -> DlibExtNet:
    net = DlibFaceResNet()
    try:
        net.load_state_dict(read_safetensors(path))
    except RuntimeError as exc:
        raise VeilError(f"{path} does not fit dlib's face ResNet ({str(exc).splitlines()[0]})") from None
    return DlibExtNet(net, cfg)


def extractor_file(cut: int, cache: Path | None = None) -> Path:
    """dlib's face ResNet cut after ``cut`` levels, as a Veil extractor file (whole weights + config)."""
    cache = cache or cache_dir()
    weights, sha = converted_weights(cache)
    out = cache / "extractors" / f"dlib-resnet-cut{cut}.safetensors"
    if not out.exists():
        cfg = ExtractorConfig(kind="dlib-resnet", cut=cut)
        tokens, dim = level_output_shape(cut)
        extra = {"name": f"dlib-resnet-cut{cut}", "weights_sha256": sha, "token_shape": [tokens, dim],
                 "source": "face-recognition-models: dlib_face_recognition_resnet_model_v1.dat (public domain)"}
        meta = {"format": "veil-extractor", "config": json.dumps(asdict(cfg)), "extra": json.dumps(extra)}
        save_safetensors(read_safetensors(weights), out, meta)  # atomic: a crash leaves no half file
    return out


registry.register_kind(registry.ExtractorKind("dlib-resnet", _configure,
                                              lambda cfg: DlibExtNet(DlibFaceResNet(), cfg), _load))
for _cut in range(1, len(LEVELS) + 1):
    _n, _d = level_output_shape(_cut)
    _side = int(round(_n ** 0.5))
    _entry = registry.register(registry.ExtractorEntry(
        f"dlib-resnet-cut{_cut}", f"dlib's public-domain face ResNet, first {_cut} residual levels: "
        f"{_side}x{_side} = {_n} tokens x {_d} channels (150 px input)", partial(extractor_file, _cut)))
    if _cut == DEFAULT_CUT:
        registry.register(registry.ExtractorEntry(registry.DEFAULT_EXTRACTOR, f"the default: {_entry.summary}",
                                                  _entry.materialise))
