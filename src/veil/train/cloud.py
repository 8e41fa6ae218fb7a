"""Cloud side: train RecNet from an obfuscated store alone.

This is the code an untrusted cloud runs. It reads the store (features + anonymous labels +
public manifest), never the owner's key (a test checks this module's imports), and returns
RecNet weights as safetensors. It runs in one process or under ``torchrun`` with DDP (gloo on
CPU, NCCL on CUDA); the global batch size is the same either way.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset

from veil.errors import VeilError
from veil.models.recnet import RecNet, build_recnet, save_recnet
from veil.store import Store, open_store
from veil.train.closed_form import LDAGrid, fit_lda_recnet
from veil.train.imprint import imprint_class_weights
from veil.train.losses import cosface
from veil.train.progress import progress_bar
from veil.train.schedule import warmup_cosine
from veil.train.validation import BestEpoch, gallery_and_probes, holdout_identities, identification_top1


@dataclass
class CloudTrainConfig:
    """The paper's recipe: SGD with Nesterov momentum, lr 0.05, weight decay 4e-5, cosine, batch 256.

    ``val_fraction`` > 0 holds that fraction of the store's anonymous identities out of training and keeps the
    epoch (0 = untrained) with the best top-1 among them (:mod:`veil.train.validation`); ``patience`` stops
    after that many epochs without a better score (None: run every epoch, still keep the best).
    ``head_init="centroids"`` starts the CosFace class weights at each class's mean embedding under the untrained
    RecNet (its BatchNorm statistics first taken over the whole store), so the first steps fine-tune a
    working classifier instead of tearing the embedding apart to fit random class weights.
    ``fit="lda"`` replaces SGD by the closed-form recipe of :mod:`veil.train.closed_form` (shrinkage LDA on the
    mean of the tokens, chosen by cross-validation over the store's identities); the SGD and architecture
    fields are then unused.
    """

    epochs: int = 40
    batch_size: int = 256
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_epochs: float = 3.0
    margin: float = 0.35
    scale: float = 32.0
    seed: int = 0
    dim: int = 256
    depth: int = 2
    num_heads: int = 4
    emb_dim: int = 128
    init: str = "random"
    val_fraction: float = 0.0
    patience: int | None = None
    head_init: str = "random"
    fit: str = "sgd"


FITS = ("sgd", "lda")


class _Trainee(nn.Module):
    """RecNet and the CosFace class weights in one module, so DDP synchronises both."""

    def __init__(self, recnet: RecNet, loss: nn.Module) -> None:
        super().__init__()
        self.recnet = recnet
        self.loss = loss

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(self.recnet(x), y)


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return world, rank


def train_recnet(store: Store | str | Path, cfg: CloudTrainConfig | None = None,
                 device: torch.device | str | None = None, show_progress: bool = True) -> tuple[RecNet, dict]:
    """Train RecNet on a store. Under torchrun (WORLD_SIZE > 1) this joins the process group itself."""
    cfg = cfg or CloudTrainConfig()
    if cfg.fit not in FITS:
        raise VeilError(f"fit must be one of {', '.join(FITS)}, got {cfg.fit!r}")
    store = store if isinstance(store, Store) else open_store(store)
    if cfg.fit == "lda":
        return _fit_closed_form(store, cfg)
    world, rank = _dist_info()
    distributed = world > 1
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.batch_size % world:
        raise VeilError(f"batch size {cfg.batch_size} is not divisible by {world} processes")
    torch.manual_seed(cfg.seed)
    feats, labels = store.load_all()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= store.num_classes):
        raise VeilError(f"store labels fall outside 0..{store.num_classes - 1}")
    tokens, dim = store.token_shape
    classes = store.num_classes
    validation = None
    if cfg.val_fraction:
        keep, labels, val_labels = holdout_identities(labels, classes, cfg.val_fraction, cfg.seed)
        validation = (feats[~keep], val_labels, *gallery_and_probes(val_labels, cfg.seed))
        feats, classes = feats[keep], classes - len(torch.unique(val_labels))
    recnet = build_recnet(tokens, dim, cfg)
    trainee = _Trainee(recnet, cosface(classes, recnet.cfg.emb_dim, cfg.margin, cfg.scale)).to(device)
    if cfg.head_init == "centroids":
        step = 512
        imprint_class_weights(recnet, trainee.loss.W, lambda: ((feats[i:i + step].to(device).float(),
                                                                labels[i:i + step].to(device))
                                                               for i in range(0, len(feats), step)), classes)
    elif cfg.head_init != "random":
        raise VeilError(f"head_init must be 'random' or 'centroids', got {cfg.head_init!r}")
    model: nn.Module = DistributedDataParallel(trainee) if distributed else trainee
    data = TensorDataset(feats, labels)
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = (DistributedSampler(data, world, rank, shuffle=True, seed=cfg.seed, drop_last=True) if distributed
               else RandomSampler(data, generator=gen))
    loader = DataLoader(data, batch_size=cfg.batch_size // world, sampler=sampler, drop_last=True)
    if len(loader) == 0:
        raise VeilError(f"store has {len(data)} rows, fewer than one batch of {cfg.batch_size}")
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.epochs * len(loader), int(cfg.warmup_epochs * len(loader)))
    history: dict = {"loss": [], "config": asdict(cfg), "rows": len(data), "world_size": world,
                     "classes": store.num_classes}
    best = BestEpoch(cfg.patience)

    def stop_after(epoch: int) -> bool:
        if validation is None:
            return False
        score = torch.tensor(identification_top1(recnet, *validation, device), dtype=torch.float64)
        if distributed:  # every rank scores the same rows; the mean keeps their decisions identical
            dist.all_reduce(score)
            score /= world
        return best.update(epoch, float(score), recnet)

    start = time.time()
    stop_after(0)
    model.train()
    with progress_bar(show_progress and rank == 0) as bar:
        task = bar.add_task("cloud: train RecNet", total=cfg.epochs * len(loader), status="")
        for epoch in range(cfg.epochs):
            if isinstance(sampler, DistributedSampler):  # distributed: each epoch its own shuffle
                sampler.set_epoch(epoch)
            total, seen = 0.0, 0
            for x, y in loader:
                loss = model(x.to(device).float(), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(y)
                seen += len(y)
                bar.update(task, advance=1, status=f"epoch {epoch + 1} loss {total / seen:.3f}")
            mean_loss = torch.tensor([total, seen], dtype=torch.float64)
            if distributed:
                dist.all_reduce(mean_loss)
            history["loss"].append(float(mean_loss[0] / mean_loss[1]))
            if stop_after(epoch + 1):
                break
    if validation is not None:
        best.restore(recnet)
        history.update(val_top1=best.scores, best_epoch=best.best_epoch, val_rows=len(validation[0]),
                       val_identities=len(validation[2]), train_classes=classes)
    history["seconds"] = time.time() - start
    history["samples_per_second"] = len(history["loss"]) * len(loader) * cfg.batch_size / history["seconds"]
    return recnet.cpu().eval(), history


def _fit_closed_form(store: Store, cfg: CloudTrainConfig) -> tuple[RecNet, dict]:
    """``fit="lda"``: every process computes the same map from the same rows (no communication needed)."""
    if cfg.val_fraction:
        raise VeilError("val_fraction applies to fit='sgd'; fit='lda' holds identities out itself (cross-validation)")
    start = time.time()
    feats, labels = store.load_all()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= store.num_classes):
        raise VeilError(f"store labels fall outside 0..{store.num_classes - 1}")
    recnet, fit = fit_lda_recnet(feats, labels, LDAGrid(), cfg.seed)
    seconds = time.time() - start
    world, _ = _dist_info()
    history = {"loss": [], "config": asdict(cfg), "rows": len(feats), "world_size": world,
               "classes": store.num_classes, "fit": {"kind": "lda", "choice": fit.choice, "cv_top1": fit.cv_top1,
                                                      "cv_probes": fit.cv_probes, "folds": fit.folds},
               "seconds": seconds, "samples_per_second": len(feats) / max(seconds, 1e-9)}
    return recnet, history


def describe_fit(history: dict) -> str:
    """One line on how the RecNet was fitted, for a log: final loss (SGD) or the candidate chosen (closed form)."""
    fit = history.get("fit")
    if fit:
        return (f"closed form: {fit['choice']} (top-1 {100 * fit['cv_top1'][fit['choice']]:.2f}% on held-out "
                f"identities, identity map {100 * fit['cv_top1']['identity']:.2f}%)")
    return f"final loss {history['loss'][-1]:.3f}"


def train_to_file(store_dir: str | Path, out: str | Path, cfg: CloudTrainConfig | None = None,
                  device: str | None = None, show_progress: bool = True) -> dict:
    """Train and write ``out`` (rank 0 only under torchrun). Returns the history."""
    store = open_store(store_dir)
    recnet, history = train_recnet(store, cfg, device, show_progress)
    _, rank = _dist_info()
    if rank == 0:
        info = {"key_fingerprint": store.manifest.get("key_fingerprint"),
                "extractor": store.manifest.get("extractor"), "obfuscation": store.manifest.get("obfuscation"),
                "num_classes": store.num_classes, "synthetic": store.manifest.get("synthetic", False),
                "first_epoch_loss": history["loss"][0] if history["loss"] else None,
                "final_loss": history["loss"][-1] if history["loss"] else None, "fit": history.get("fit"),
                "world_size": history["world_size"]}
        save_recnet(recnet, out, info)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return history
