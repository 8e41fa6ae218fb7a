"""``veil train``: cloud side, trains RecNet from a store alone (works under torchrun for DDP)."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli.common import console, friendly
from veil.device import configure_threads
from veil.errors import VeilError
from veil.train.cloud import CloudTrainConfig, train_to_file


@friendly
def train(store: Path = typer.Option(..., help="Store directory received from the owner."),
          out: Path = typer.Option(Path("recnet.safetensors"), "--out", "-o"),
          epochs: int = typer.Option(40), batch_size: int = typer.Option(256, help="Global batch size."),
          lr: float = typer.Option(0.05), weight_decay: float = typer.Option(4e-5),
          warmup_epochs: float = typer.Option(3.0), dim: int = typer.Option(256), depth: int = typer.Option(2),
          heads: int = typer.Option(4), emb_dim: int = typer.Option(128), seed: int = typer.Option(0),
          device: str = typer.Option(None),
          force: bool = typer.Option(False, help="Replace an existing --out file.")) -> None:
    """Train RecNet (SGD Nesterov, cosine). For DDP: torchrun --nproc_per_node 2 -m veil train ..."""
    if out.exists() and not force:  # refused before training, not after an hour of it
        raise VeilError(f"{out} already exists; refusing to overwrite a RecNet (pass --force to replace it)")
    configure_threads()
    cfg = CloudTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                           warmup_epochs=warmup_epochs, dim=dim, depth=depth, num_heads=heads, emb_dim=emb_dim,
                           seed=seed)
    hist = train_to_file(store, out, cfg, device)
    console.print(f"trained on {hist['rows']} rows x {hist['world_size']} process(es) in {hist['seconds']:.0f}s; "
                  f"final loss {hist['loss'][-1]:.3f}; wrote {out}")
