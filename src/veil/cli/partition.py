"""``veil partition``: train a splittable model, plan the split against reconstruction attacks, run split inference,
and the TON_IoT tabular task. SGX is simulated here; every modelled number says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from veil.cli.common import console, friendly
from veil.errors import VeilError
from veil.io import write_json

app = typer.Typer(help="Layer partitioning: first layers in a (simulated) enclave, the rest on an accelerator.",
                  no_args_is_help=True)

MODEL_HELP = "resnet50 | vgg16 | vgg16_bn | efficientnet_b0 | dlib_resnet (pre-trained face ResNet, 150 px)."
SIMULATED = ("note: no SGX here. The 'isolated' enclave is a real separate OS process behind an authenticated, "
             "encrypted channel; SGX enclave time is MODELLED (EPC paging + transitions), not measured.")


def _default_data() -> Path:
    from veil.paths import default_data

    return Path(default_data())


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def _threads() -> None:
    from veil.device import configure_threads

    configure_threads()


def train_model(model: str, data: Path, out: Path, image_size: int, epochs: int, batch_size: int, seed: int,
                min_class_images: int = 10, max_per_class: int = 40, lr: float | None = None) -> Path:
    """Shared by ``train`` and ``plan`` without weights: train on the public identities, save safetensors."""
    from veil.partition.data import load_image_data
    from veil.partition.models import MODELS, PRETRAINED, pretrained_weights, save_model
    from veil.partition.train import train_classifier

    if model not in MODELS:
        raise VeilError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if model in PRETRAINED:
        pretrained_weights(model, out)
        console.print(f"{model} is pre-trained (public weights, nothing trained here); wrote {out}")
        return out
    imgs = load_image_data(data, image_size, seed, min_class_images=min_class_images, max_per_class=max_per_class)
    with _progress() as bar:
        task = bar.add_task(f"training {model}", total=1)

        def step(s: int, total: int, loss: float) -> None:
            bar.update(task, completed=s, total=total, description=f"training {model} loss {loss:.3f}")

        res = train_classifier(model, imgs.train, imgs.val, image_size, epochs, batch_size, lr=lr, seed=seed,
                               on_step=step)
    meta = {"val_accuracy": res.val_accuracy.as_dict(), "train_seconds": res.seconds, "epochs": epochs, "lr": lr,
            "data": str(data), "roles": imgs.split, "task": "identity classification on public identities"}
    save_model(res.model, res.spec, out, meta)
    console.print(f"{model}: held-out accuracy {res.val_accuracy} over {len(res.spec.classes)} classes "
                  f"({res.seconds:.0f} s); wrote {out}")
    return out


@app.command()
@friendly
def train(model: str = typer.Option("resnet50", help=MODEL_HELP),
          data: Path | None = typer.Option(None, help="Folder with one sub-folder per class (LFW, ImageNet-style)."),
          out: Path = typer.Option(Path("runs/partition/model.safetensors"), help="Weights file to write."),
          image_size: int = typer.Option(32, min=16, help="CPU-friendly input size."),
          epochs: int = typer.Option(4, min=1), batch_size: int = typer.Option(64, min=2),
          min_class_images: int = typer.Option(10, min=2, help="Classes: public identities with this many images."),
          max_per_class: int = typer.Option(40, min=2, help="Cap per class (LFW is dominated by a few people)."),
          lr: float | None = typer.Option(None, help="Peak learning rate (default: 1e-3; 2e-4 for vgg16)."),
          seed: int = typer.Option(0)) -> None:
    """Train MODEL on the public identities of DATA (identity classification) and save safetensors + metadata."""
    _threads()
    train_model(model, data or _default_data(), out, image_size, epochs, batch_size, seed, min_class_images,
                max_per_class, lr)


@app.command()
@friendly
def splits(model: str = typer.Option("resnet50", help=MODEL_HELP),
           weights: Path | None = typer.Option(None, help="Use this file's architecture instead of MODEL."),
           granularity: str = typer.Option("stage", help="stage | block (ResNet: every bottleneck).")) -> None:
    """List the candidate split points (block boundaries) of a model."""
    from veil.partition.models import ModelSpec, build_model, dlib_spec, read_spec
    from veil.partition.sequence import candidate_splits, to_sequence

    spec = read_spec(weights) if weights else dlib_spec() if model == "dlib_resnet" else ModelSpec(model, 10)
    seq = to_sequence(build_model(spec))
    table = Table("split K", "label", "last enclave unit")
    for p in candidate_splits(seq, granularity):
        table.add_row(str(p.index), p.label, seq.names[p.index - 1])
    console.print(table)
    console.print(f"{spec.arch}: {len(seq)} units; units [0, K) run in the enclave")


@app.command()
@friendly
def plan(model: str = typer.Option("resnet50", help=MODEL_HELP),
         weights: Path | None = typer.Option(None, help="Trained weights (safetensors); omitted: train first."),
         data: Path | None = typer.Option(None, help="Image folder (one sub-folder per class)."),
         max_ssim: float = typer.Option(0.3, help="Reconstruction bound: SSIM (upper 95% CI) must stay below."),
         over_prior: float | None = typer.Option(None, help="Instead of --max-ssim: bound = SSIM of the adversary's "
                                                            "mean face (no features) + this margin."),
         split_list: str | None = typer.Option(None, "--splits", help="Comma-separated split labels/indices."),
         attacks: str = typer.Option("cgan,regression", help="Attacks to run (cgan, regression)."),
         epochs: int = typer.Option(6, min=1, help="Attack training epochs."),
         victims: int = typer.Option(128, min=4, help="Victim images scored."),
         aux: int = typer.Option(600, min=32, help="Adversary's auxiliary images."),
         image_size: int = typer.Option(32, min=16), train_epochs: int = typer.Option(4, min=1),
         seed: int = typer.Option(0),
         out: Path = typer.Option(Path("runs/partition/plan"), help="Directory for JSON, plot and grid.")) -> None:
    """Attack every candidate split, measure enclave cost, and recommend the cheapest split under the bound."""
    _threads()
    from veil.partition.cost_model import SGXCostModel
    from veil.partition.data import load_image_data
    from veil.partition.models import load_model
    from veil.partition.planner import plan as run_plan
    from veil.partition.report import plot_plan, reconstruction_grid

    if not 0.0 < max_ssim <= 1.0:
        raise VeilError(f"--max-ssim must be in (0, 1], got {max_ssim}")
    data = data or _default_data()
    out.mkdir(parents=True, exist_ok=True)
    if weights is None:
        console.print(f"no --weights: training {model} first (attacks on untrained networks measure nothing useful)")
        weights = train_model(model, data, out / f"{model}.safetensors", image_size, train_epochs, 64, seed)
    net, spec = load_model(weights)
    if spec.arch != model:
        raise VeilError(f"{weights} holds a {spec.arch}, not {model}; pass --model {spec.arch}")
    imgs = load_image_data(data, spec.image_size, seed, need_train=False)
    chosen: list[int | str] | None = [s.strip() for s in split_list.split(",")] if split_list else None
    result = run_plan(net, spec, imgs.aux.images[:aux], imgs.victim.images[:victims], max_ssim, chosen,
                      tuple(a.strip() for a in attacks.split(",")), epochs, SGXCostModel(), seed,
                      log=lambda m: console.print(m, highlight=False), over_prior=over_prior)
    body = {**result.as_dict(), "weights": str(weights), "roles": imgs.split, "simulated": SIMULATED}
    write_json(out / "plan.json", body, indent=1)
    plot_plan(result, out / "plan.png")
    reconstruction_grid(result, imgs.victim.images[:8], out / "reconstructions.png")
    console.print(_plan_table(result))
    pb = result.extra["prior_baseline"]
    console.print(f"prior baseline (adversary's mean aux image, no features): SSIM {pb['ssim_mean']:.3f}, "
                  f"PSNR {pb['psnr_db_mean']:.1f} dB; read the bound against it")
    console.print(body["recommendation"])
    console.print(SIMULATED, highlight=False)
    console.print(f"wrote {out / 'plan.json'}, {out / 'plan.png'}, {out / 'reconstructions.png'}")


def _plan_table(result) -> Table:  # noqa: ANN001 - a Plan
    table = Table("split", "exposed", *[f"SSIM {k}" for k in result.splits[0].attacks],
                  *[f"PSNR {k}" for k in result.splits[0].attacks], "enclave FLOPs", "params", "modelled SGX ms",
                  "safe", title=f"{result.arch}: bound SSIM <= {result.max_ssim} (upper 95% CI)")
    for s in result.splits:
        sm = {k: r.summary() for k, r in s.attacks.items()}
        table.add_row(s.point.label, "x".join(str(d) for d in s.enclave_cost["output_shape"][1:]),
                      *[f"{v['ssim']['mean']:.3f}" for v in sm.values()],
                      *[f"{v['psnr_db']['mean']:.1f}" for v in sm.values()],
                      f"{100 * s.flop_share:.1f}%", f"{100 * s.param_share:.1f}%",
                      f"{1000 * s.modelled['modelled_total_s']:.1f}", "yes" if s.safe else "no")
    return table


@app.command()
@friendly
def run(weights: Path = typer.Option(..., help="Trained weights (safetensors written by Veil)."),
        split: str = typer.Option(..., help="Split index K or label (layer2, block3, features.4)."),
        data: Path | None = typer.Option(None, help="Image folder; the victim images are run."),
        images: int = typer.Option(16, min=1, help="How many images to run."),
        batch_size: int = typer.Option(16, min=1),
        backend: str = typer.Option("isolated", help="isolated (separate process) | in-process."),
        device: str | None = typer.Option(None, help="Accelerator device (default: cuda if present, else cpu)."),
        check: bool = typer.Option(True, help="Owner-side check: compare with the unsplit model."),
        out: Path | None = typer.Option(None, help="Write the timing breakdown as JSON here.")) -> None:
    """Split inference: units [0, K) in the enclave backend, the rest on the accelerator; timing breakdown."""
    _threads()
    import torch

    from veil.partition.data import load_image_data
    from veil.partition.models import load_model, preprocess, read_spec
    from veil.partition.runner import SplitRunner

    spec = read_spec(weights)
    imgs = load_image_data(data or _default_data(), spec.image_size, 0, need_train=False).victim.images[:images]
    rows = []
    with SplitRunner(weights, split, backend, device) as runner:
        console.print(f"enclave backend {runner.enclave.info.backend} (pid {runner.enclave.info.pid}), "
                      f"accelerator {runner.device}; split after {runner.point.label} (K={runner.point.index})")
        logits = []
        for i in range(0, len(imgs), batch_size):
            r = runner.run(imgs[i:i + batch_size])
            r.timing.update(runner.modelled_enclave(imgs[i:i + batch_size], r.timing["enclave_measured_s"]))
            rows.append(r.timing)
            logits.append(r.logits)
    logits_t = torch.cat(logits)
    summary = {k: sum(t[k] for t in rows) for k in ("enclave_measured_s", "transfer_s", "accelerator_s", "total_s",
                                                     "modelled_total_s")}
    table = Table("part", "seconds", "what", title=f"split inference of {len(imgs)} images")
    table.add_row("enclave (measured)", f"{summary['enclave_measured_s']:.4f}", "compute inside the enclave process")
    table.add_row("enclave (MODELLED SGX)", f"{summary['modelled_total_s']:.4f}", "cost model, not a measurement")
    table.add_row("transfer", f"{summary['transfer_s']:.4f}", "seal, send, open (both ways)")
    table.add_row("accelerator", f"{summary['accelerator_s']:.4f}", str(rows[0]["device"]))
    table.add_row("total (measured)", f"{summary['total_s']:.4f}", "")
    console.print(table)
    result: dict[str, Any] = {"weights": str(weights), "split": split, "batches": rows, "summary": summary,
                              "simulated": SIMULATED}
    if check:
        net, _ = load_model(weights)
        with torch.no_grad():
            want = torch.cat([net(preprocess(imgs[i:i + 64], spec)) for i in range(0, len(imgs), 64)])
        diff = float((want - logits_t).abs().max())
        result["max_abs_diff_vs_unsplit"] = diff
        console.print(f"max |split - unsplit| = {diff:.3g} over {logits_t.numel()} logits "
                      f"({'identical to float tolerance' if diff < 1e-4 else 'MISMATCH'})")
        if diff >= 1e-4:
            raise VeilError(f"split output differs from the unsplit model by {diff:.3g}")
    if out:
        write_json(out, result, indent=1)
    console.print(SIMULATED, highlight=False)


@app.command()
@friendly
def tabular(csv: list[Path] = typer.Option(..., help="TON_IoT CSV file(s) with the same columns."),
            label: str = typer.Option("label", help="Label column: label (binary) or type (attack kind)."),
            use_time: bool = typer.Option(False, help="Add time-of-day as a feature (leaks attack windows)."),
            epochs: int = typer.Option(5, min=1), attack_epochs: int = typer.Option(30, min=1),
            seed: int = typer.Option(0),
            out: Path = typer.Option(Path("runs/partition/tabular.json"), help="JSON to write.")) -> None:
    """Train the MLP detector, split it after each hidden layer, report accuracy and per-feature reconstruction."""
    _threads()
    from veil.partition.tabular import load_csv, tabular_experiment

    data = load_csv(csv, label=label, use_time=use_time)
    result = tabular_experiment(data, seed=seed, epochs=epochs, attack_epochs=attack_epochs)
    table = Table("split", "exposed dim", "detection accuracy [95% CI]", "feature", "recon error", "prior",
                  title=f"{data.source}: {len(data)} rows, label {label!r}")
    for s in result["splits"]:
        acc = s["detection_accuracy"]
        first = True
        for name, e in s["reconstruction"].items():
            if e["kind"] == "numeric":
                err, prior = f"RMSE {e['rmse']:.4g}", f"RMSE {e['prior_rmse']:.4g}"
            else:
                err, prior = f"acc {e['accuracy']['rate']:.3f}", f"acc {e['prior_accuracy']['rate']:.3f}"
            table.add_row(str(s["split"]) if first else "", str(s["exposed_dim"]) if first else "",
                          (f"{100 * acc['rate']:.2f}% [{100 * acc['ci95'][0]:.2f}, {100 * acc['ci95'][1]:.2f}] "
                           f"n={acc['n']}") if first else "", name, err, prior)
            first = False
    console.print(table)
    write_json(out, result, indent=1)
    console.print(f"wrote {out}")
