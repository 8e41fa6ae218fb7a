"""The adversary's own RecNet: trained with CosFace on tokens it can make itself.

Two attacks need one: the expectation attack trains it on auxiliary tokens under fresh random
obfuscation every batch; the known-plaintext and alignment attacks train it on clean auxiliary
tokens and feed it their estimate of the owner's de-obfuscated tokens. Same architecture and loss
as the cloud's RecNet (``veil.models.recnet``), so leakage is measured with the owner's own tool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from veil.attacks import params
from veil.models.extractor import Extractor
from veil.models.recnet import RecNet, build_recnet
from veil.train.closed_form import fit_lda_recnet
from veil.train.cloud import FITS, CloudTrainConfig
from veil.train.imprint import imprint_class_weights
from veil.train.losses import SoftCosFace, cosface
from veil.train.schedule import warmup_cosine

BatchTransform = Callable[[torch.Tensor], torch.Tensor]
PairTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class AttackRecNetConfig(CloudTrainConfig):
    """Training recipe for the adversary's RecNet: the cloud's recipe and fields, shorter by default."""

    epochs: int = 20
    batch_size: int = 128
    warmup_epochs: float = 2.0
    dim: int = 128

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "dim", "num_heads", "emb_dim"):
            params.positive_int(name, getattr(self, name))
        params.non_negative_int("depth", self.depth)  # 0: the linear RecNet of the strong-extractor recipe
        params.non_negative_int("seed", self.seed)
        if self.init not in ("random", "identity"):
            raise params.AttackParameterError("init", f"init must be 'random' or 'identity', got {self.init!r}")
        if self.fit not in FITS:
            raise params.AttackParameterError("fit", f"fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.head_init not in ("random", "centroids"):
            raise params.AttackParameterError("head_init", f"head_init must be 'random' or 'centroids', got "
                                                           f"{self.head_init!r}")
        for name in ("lr", "scale"):
            params.positive_float(name, getattr(self, name))
        for name in ("momentum", "weight_decay", "warmup_epochs", "margin"):
            params.non_negative_float(name, getattr(self, name))
        if self.dim % self.num_heads:
            raise params.AttackParameterError("dim", f"dim ({self.dim}) must be divisible by num_heads "
                                                     f"({self.num_heads})")


def strong_attack_recipe(epochs: int = 5, seed: int = 0) -> AttackRecNetConfig:
    """The strong attacker: the cloud's own recipe for a pre-trained extractor (a linear RecNet, identity
    initialised). Why the default: the transformer recipe from scratch under-fits a few thousand faces and
    understates leakage (Table 2's XNN aux_a: 7.77% with it, 62.34% with this one)."""
    return AttackRecNetConfig(epochs=epochs, seed=seed, depth=0, init="identity")


def owner_recipe(recipe: dict, epochs: int | None = None, seed: int = 0) -> AttackRecNetConfig:
    """The owner's recorded cloud recipe (a run's ``results.json`` ``config.cloud``) as the attacker's, every
    field of it (``lr``, ``head_init``, ``depth``, ...): "the same recipe as the owner" means all of it, so an
    attacker is not weakened by a field a hand-written copy left at its default. ``epochs`` replaces the
    recorded number when given; fields this version does not know are refused by name."""
    known = {f.name for f in fields(AttackRecNetConfig)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise params.AttackParameterError(unknown[0], f"the recorded recipe has fields this Veil does not know: "
                                                      f"{', '.join(unknown)}")
    values = {**recipe, "seed": seed}
    if epochs is not None:
        values["epochs"] = epochs
    return AttackRecNetConfig(**values)


def fit_recnet(tokens: torch.Tensor, labels: torch.Tensor, cfg: AttackRecNetConfig,
               transform: BatchTransform | None = None, device: torch.device | str = "cpu",
               mixer: PairTransform | None = None, classes: int | None = None) -> RecNet:
    """Train a RecNet on (tokens, labels); ``transform`` is applied to each batch before RecNet sees it.

    ``labels`` are class indices (n,), or soft targets (n, C) for mixed samples (trained with
    :class:`~veil.train.losses.SoftCosFace`). ``cfg.fit == "lda"``: the closed-form recipe on one pass over the
    rows, each batch transformed and mixed as one SGD epoch would see it. ``mixer(x, targets)`` replaces each
    batch and its one-hot targets by new ones (InstaHide's mixing); with a ``transform`` or ``mixer`` the rows of
    ``tokens`` may be images, and RecNet's input shape is read off the first transformed batch.
    """
    if len(tokens) != len(labels) or (transform is None and mixer is None and tokens.ndim != 3):
        raise ValueError(f"tokens must be (n, N, D) with n labels, got {tuple(tokens.shape)} and {len(labels)}")
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    soft = labels.ndim == 2 or mixer is not None
    classes = classes or (labels.shape[1] if labels.ndim == 2 else int(labels.max()) + 1)

    def prepare(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = x.to(device), y.to(device)
        if soft and y.ndim == 1:
            y = F.one_hot(y, classes).float()
        if mixer is not None:
            x, y = mixer(x, y)
        if x.is_floating_point():
            x = x.float()  # tokens may be stored in half precision; uint8 images stay as they are
        if transform is not None:
            x = transform(x)
        return x.float(), y

    if cfg.fit == "lda":  # the cloud's closed-form recipe (veil.train.closed_form) on one pass of the rows,
        with torch.no_grad():  # each batch transformed / mixed as SGD would see it in one epoch
            rows = [prepare(tokens[i:i + cfg.batch_size], labels[i:i + cfg.batch_size])
                    for i in range(0, len(tokens), cfg.batch_size)]
        return fit_lda_recnet(torch.cat([x for x, _ in rows]).cpu(), torch.cat([y for _, y in rows]).cpu(),
                              seed=cfg.seed)[0]
    with torch.no_grad():
        _, n_tok, dim = prepare(tokens[:2], labels[:2])[0].shape
    recnet = build_recnet(n_tok, dim, cfg).to(device)
    loss_fn = (SoftCosFace if soft else cosface)(classes, recnet.cfg.emb_dim, cfg.margin, cfg.scale).to(device)
    if cfg.head_init == "centroids":  # the cloud's recipe, the same way (veil.train.imprint)
        step = 512
        imprint_class_weights(recnet, loss_fn.W, lambda: (prepare(tokens[i:i + step], labels[i:i + step])
                                                          for i in range(0, len(tokens), step)), classes)
    data = TensorDataset(tokens, labels)
    batch = min(cfg.batch_size, len(data))
    loader = DataLoader(data, batch_size=batch, sampler=RandomSampler(data, generator=torch.Generator().manual_seed(
        cfg.seed)), drop_last=True)
    opt = torch.optim.SGD(list(recnet.parameters()) + list(loss_fn.parameters()), lr=cfg.lr,
                          momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.epochs * len(loader), int(cfg.warmup_epochs * len(loader)))
    recnet.train()
    for _ in range(cfg.epochs):
        for x, y in loader:
            x, y = prepare(x, y)
            loss = loss_fn(recnet(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return recnet.cpu().eval()


def recnet_embedder(recnet: RecNet, batch_size: int = 512) -> Callable[[torch.Tensor], torch.Tensor]:
    """Embedding function for :func:`veil.attacks.leakage.identity_leakage`."""

    @torch.no_grad()
    def embed(tokens: torch.Tensor) -> torch.Tensor:
        recnet.eval()
        return torch.cat([recnet(tokens[i:i + batch_size].float()) for i in range(0, len(tokens), batch_size)])

    return embed


@torch.no_grad()
def extract_tokens(ext: Extractor, images: torch.Tensor, batch_size: int = 256, flip: bool = False,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Public ExtNet tokens of uint8 images (of their mirrors with ``flip``): anyone with ExtNet can do this."""
    ext = ext.to(device)
    if len(images) == 0:  # e.g. zero leaked pairs: an empty batch of the right shape
        return torch.zeros(0, *ext.token_shape)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        out.append(ext(x.flip(-1) if flip else x).cpu())
    return torch.cat(out)
