"""``veil train``: cloud side, trains RecNet from a store alone (works under torchrun for DDP)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from veil.cli.common import console, friendly
from veil.device import configure_threads
from veil.errors import VeilError
from veil.presets import STRONG_EXTNET_CLOUD
from veil.train.cloud import CloudTrainConfig, describe_fit, train_to_file


@friendly
def train(store: Path = typer.Option(..., help="Store directory received from the owner."),
          out: Path = typer.Option(Path("recnet.safetensors"), "--out", "-o"),
          recipe: str = typer.Option("strong", help="strong: a linear RecNet fitted in closed form (shrinkage LDA "
                                                    "on the mean of the tokens, chosen on held-out identities; for a "
                                                    "pre-trained ExtNet, the default); transformer: 2 ViT blocks "
                                                    "from scratch, 40 epochs. Options below override it."),
          epochs: int = typer.Option(None), batch_size: int = typer.Option(None, help="Global batch size."),
          lr: float = typer.Option(None), weight_decay: float = typer.Option(None),
          warmup_epochs: float = typer.Option(None), dim: int = typer.Option(None), depth: int = typer.Option(None),
          heads: int = typer.Option(None), emb_dim: int = typer.Option(None), seed: int = typer.Option(None),
          val_fraction: float = typer.Option(None, help="Hold this fraction of the store's identities out and keep "
                                                        "the epoch (0 = untrained) with the best top-1 on them."),
          patience: int = typer.Option(None, help="With --val-fraction: stop after this many epochs without a "
                                                  "better held-out score."),
          head_init: str = typer.Option(None, help="random, or centroids: class weights start at class means."),
          fit: str = typer.Option(None, help="lda: closed form (the strong recipe); sgd: CosFace with SGD "
                                             "(`--recipe strong --fit sgd` is the linear RecNet trained 5 epochs)."),
          device: str = typer.Option(None),
          force: bool = typer.Option(False, help="Replace an existing --out file.")) -> None:
    """Train RecNet (closed form, or SGD Nesterov, cosine). For DDP: torchrun --nproc_per_node 2 -m veil train ..."""
    if out.exists() and not force:  # refused before training, not after an hour of it
        raise VeilError(f"{out} already exists; refusing to overwrite a RecNet (pass --force to replace it)")
    recipes = {"strong": STRONG_EXTNET_CLOUD, "transformer": CloudTrainConfig()}
    if recipe not in recipes:
        raise typer.BadParameter(f"--recipe must be one of {', '.join(recipes)}, got {recipe!r}")
    configure_threads()
    given: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
             "warmup_epochs": warmup_epochs, "dim": dim, "depth": depth, "num_heads": heads, "emb_dim": emb_dim,
             "seed": seed, "val_fraction": val_fraction, "patience": patience, "head_init": head_init,
             "fit": fit}
    cfg = replace(recipes[recipe], **{k: v for k, v in given.items() if v is not None})
    hist = train_to_file(store, out, cfg, device)
    console.print(f"trained on {hist['rows']} rows x {hist['world_size']} process(es) in {hist['seconds']:.0f}s; "
                  f"{describe_fit(hist)}; wrote {out}")
    if "best_epoch" in hist:
        console.print(f"held-out identities: {hist['val_identities']}; top-1 per epoch "
                      f"{', '.join(f'{100 * v:.1f}%' for v in hist['val_top1'])}; kept epoch {hist['best_epoch']}")
