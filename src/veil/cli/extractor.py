"""``veil extractor``: the public ExtNet (pre-train on public identities, or import a checkpoint)."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli.common import console, friendly
from veil.data.splits import Split
from veil.device import configure_threads, pick_device
from veil.models.extractor import ExtractorConfig, load_backbone, save_backbone
from veil.paths import default_data
from veil.pipeline import pretrain_extractor
from veil.train.pretrain import PretrainConfig

app = typer.Typer(help="The public feature extractor (ExtNet).", no_args_is_help=True)


@app.command("list")
@friendly
def list_() -> None:
    """Registered extractors: every --extractor option takes one of these names or a file."""
    from rich.table import Table

    from veil.models.registry import list_extractors

    table = Table(title="extractors (--extractor NAME|FILE)")
    for col in ("name", "what", "how to get it"):
        table.add_column(col)
    for e in list_extractors():
        table.add_row(e.name, e.summary, "automatic (converted on first use)" if e.materialise else e.how)
    console.print(table)


@app.command("pretrain")
@friendly
def pretrain(split: Path = typer.Option(..., help="Split file from `veil data split`."),
             out: Path = typer.Option(Path("extractor.safetensors"), "--out", "-o"),
             data: Path = typer.Option(None, help="Dataset the split was made from (default: LFW)."),
             img_size: int = typer.Option(64), embed_dim: int = typer.Option(256), heads: int = typer.Option(4),
             depth: int = typer.Option(4, help="Transformer blocks trained."),
             ext_depth: int = typer.Option(2, help="Blocks kept in ExtNet (the rest are dropped)."),
             stem_stages: int = typer.Option(3, help="ResNet-18 stages in the convolutional stem."),
             epochs: int = typer.Option(12), batch_size: int = typer.Option(128), lr: float = typer.Option(2e-3),
             loss: str = typer.Option("softmax", help="softmax (label-smoothed CE) or cosface."),
             min_images: int = typer.Option(2, help="Use identities with at least this many images."),
             seed: int = typer.Option(0), device: str = typer.Option(None, help="cpu, cuda, cuda:1 (default: auto)."),
             ) -> None:
    """Pre-train on the split's NON-OWNER identities (public + aux); ExtNet = its first --ext-depth blocks."""
    configure_threads()
    cfg = ExtractorConfig(img_size=img_size, embed_dim=embed_dim, num_heads=heads, depth=depth,
                          ext_depth=ext_depth, stem_stages=stem_stages)
    hist = pretrain_extractor(data or default_data(), Split.load(split), out, cfg,
                              PretrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, loss=loss,
                                             min_images=min_images),
                              pick_device(device))
    console.print(f"pre-trained on {hist['identities']} public identities ({hist['images']} images) in "
                  f"{hist['seconds']:.0f}s, final loss {hist['loss'][-1]:.3f}; wrote {out}")


@app.command("import")
@friendly
def import_(weights: Path = typer.Argument(..., help="A timm ViT checkpoint in safetensors format."),
            timm_name: str = typer.Option(..., help="timm model name, e.g. vit_tiny_patch16_224."),
            img_size: int = typer.Option(224), ext_depth: int = typer.Option(5),
            out: Path = typer.Option(Path("extractor.safetensors"), "--out", "-o")) -> None:
    """Use your own timm ViT checkpoint as ExtNet (its first --ext-depth blocks)."""
    cfg = ExtractorConfig(kind="timm", timm_name=timm_name, img_size=img_size, ext_depth=ext_depth,
                          depth=max(ext_depth, 1))
    backbone, cfg = load_backbone(weights, cfg)
    save_backbone(backbone, cfg, out, extra={"imported_from": weights.name})
    console.print(f"imported {timm_name} ({cfg.depth} blocks, ExtNet keeps {cfg.ext_depth}); wrote {out}")
