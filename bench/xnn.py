"""Benchmark: XNN on real faces (LFW) — utility, overheads, throughput and memory.

    python bench/xnn.py [--preset bench] [--data PATH]

Prints a table and writes bench/results/xnn.json (the common bench envelope, ``veil.bench``; utility,
ratio, extractor and teacher whole at its top level) and bench/results/xnn.md. Measures:
- utility (top-1 identification of 300 unseen persons, one gallery image each) of Vanilla+PE
  (ExtNet -> RecNet) and XNN (ExtNet -> ObfNet -> RecNet), their ratio with a bootstrap CI;
- utility of XNN's RecNet under a wrong key (what the model is worth to anyone but the owner);
- ObfNet time / ExtNet time per batch of 256;
- cloud training throughput on obfuscated vs plain features;
- peak RSS of obfuscation streaming ``--memory-images`` LFW images, and a SYNTHETIC set ``--memory-multiple``
  times larger (flat: shards stream);
- the teacher whole: the public extractor (dlib's face ResNet) used end to end on the same probes;
- key binding: XNN's RecNet applied to probes obfuscated under the owner's key, matched against a
  gallery embedded under a fresh random key, or with no obfuscation at all — what the cloud, which
  holds RecNet and the public ExtNet, could do with clean gallery photos of the owner's persons.

``--reuse`` skips the end-to-end run and re-measures the rest on the existing run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import HERE, Envelope, publish, run_conditions  # also puts src/ on sys.path

from veil.attacks.recnet_fit import extract_tokens  # noqa: E402
from veil.data.splits import Split, gallery_probe  # noqa: E402
from veil.demo import run_xnn  # noqa: E402
from veil.device import configure_threads, pick_device  # noqa: E402
from veil.evaluation.teacher import teacher_whole  # noqa: E402
from veil.keys import OwnerKey  # noqa: E402
from veil.metrics import paired_difference, top1  # noqa: E402
from veil.models.extractor import load_extnet  # noqa: E402
from veil.models.memo import MemoExtNet  # noqa: E402
from veil.models.recnet import load_recnet  # noqa: E402
from veil.obfuscation.base import NoObfuscation  # noqa: E402
from veil.obfuscation.keyed import xnn_from_key  # noqa: E402
from veil.owner import OwnerModel  # noqa: E402
from veil.paths import default_data  # noqa: E402
from veil.pipeline import load_group  # noqa: E402
from veil.presets import PRESETS  # noqa: E402
from veil.train.cloud import CloudTrainConfig, train_recnet  # noqa: E402

MEMORY_CHILD = r"""
import json, resource, sys, tempfile, torch
from veil.device import configure_threads
configure_threads()
from veil.data.faceset import count_images
from veil.data.loaders import stream_faces
from veil.data.synthetic import synthetic_stream
from veil.keys import OwnerKey
from veil.models.extractor import load_extnet
from veil.obfuscation.keyed import xnn_from_key
from veil.owner import obfuscate_to_store
ext_path, source, n, data, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ext = load_extnet(ext_path)
key = OwnerKey.generate()
obf = xnn_from_key(key, *ext.token_shape)
if source == "lfw":
    counts, names, total = count_images(data), [], 0
    for name in sorted(counts):  # the first identities (sorted) up to ``limit`` images (0: all of LFW)
        if limit and total >= limit:
            break
        names.append(name)
        total += counts[name]
    batches, synthetic = stream_faces(data, names, ext.cfg.img_size, 128), False  # veil obfuscate's batch
else:
    names = [f"synthetic_{i}" for i in range(1000)]
    batches, synthetic = synthetic_stream(n, 1000, ext.cfg.img_size, 128), True
labels = {name: i for i, name in enumerate(names)}
with tempfile.TemporaryDirectory() as d:
    stats = obfuscate_to_store(ext, obf, batches, names, labels, d + "/store", flip_copies=False,
                               synthetic=synthetic, show_progress=False)
stats["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(stats))
"""


def time_obfuscation(ext_path: Path, device: torch.device, repeats: int = 5) -> dict:
    ext = load_extnet(ext_path).to(device)
    repeats = repeats if device.type == "cuda" else 3
    obf = xnn_from_key(OwnerKey.generate(), *ext.token_shape).to(device)
    images = torch.randint(0, 256, (256, 3, ext.cfg.img_size, ext.cfg.img_size), dtype=torch.uint8).to(device)
    tokens = ext(images)
    obf(tokens)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return min(times)

    t_ext, t_obf = best(lambda: ext(images)), best(lambda: obf(tokens))
    return {"batch": 256, "extnet_s": t_ext, "obfnet_s": t_obf, "ratio": t_obf / t_ext, "repeats": repeats,
            "statistic": "min over repeats"}


def key_binding(run: Path, ext: MemoExtNet, data: Path, device: torch.device) -> dict:
    """Top-1 of owner-key probes against galleries embedded by XNN's RecNet under other keys."""
    split = Split.load(run / "split.json")
    rec, info = load_recnet(run / "recnet_xnn.safetensors")
    kind = info["obfuscation"]["matrix"]
    owner, fresh = OwnerKey.load(run / "owner.key"), OwnerKey.generate()
    chains = {"owner key": xnn_from_key(owner, *ext.token_shape, kind),
              "fresh random key": xnn_from_key(fresh, *ext.token_shape, kind),
              "no obfuscation": NoObfuscation()}
    faces = load_group(data, split, "owner_test", ext.cfg.img_size)
    gallery, probe = gallery_probe(faces, split.gallery_seed)
    emb = {}
    for name, obf in chains.items():
        model = OwnerModel(ext, obf, rec, {**info, "key_fingerprint": obf.key_fingerprint})
        emb[name] = model.embed(faces.images, device=device)
    out = {}
    for gallery_chain in chains:
        for probe_chain in chains:
            if probe_chain != "owner key" and gallery_chain != probe_chain:
                continue
            rate, _ = top1(emb[gallery_chain][gallery], faces.labels[gallery], emb[probe_chain][probe],
                           faces.labels[probe])
            out[f"gallery: {gallery_chain} / probes: {probe_chain}"] = {**rate.as_dict(), "gallery": len(gallery),
                                                                         "chance": 1 / len(gallery)}
    return out


def training_throughput(run: Path, cloud: CloudTrainConfig, device: torch.device, rounds: int = 4) -> dict:
    cfg = CloudTrainConfig(**{**cloud.__dict__, "epochs": 2, "warmup_epochs": 0.5})
    speeds: dict[str, list[float]] = {"plain": [], "obfuscated": []}
    for _ in range(rounds):  # alternate so drift in machine load hits both equally
        for tag, store in (("plain", "store_vanilla"), ("obfuscated", "store_xnn")):
            _, hist = train_recnet(run / store, cfg, device, show_progress=False)
            speeds[tag].append(hist["samples_per_second"])
    best = {k: float(torch.tensor(v).median()) for k, v in speeds.items()}
    return {"samples_per_second": best, "statistic": "median over rounds", "all": speeds,
            "ratio_obfuscated_over_plain": best["obfuscated"] / best["plain"], "epochs_per_round": 2,
            "rounds": rounds}


def peak_memory(ext_path: Path, data: Path, multiple: int, limit: int) -> dict:
    out = {}
    lfw_images = None
    for source in ("lfw", f"synthetic_{multiple}x"):
        n = 0 if source == "lfw" else multiple * lfw_images
        proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(ext_path), source, str(n), str(data),
                               str(limit)],
                              capture_output=True, text=True, check=True)
        stats = json.loads(proc.stdout.strip().splitlines()[-1])
        out[source] = {"images": stats["images"], "peak_rss_mib": stats["peak_rss_mib"],
                       "synthetic": source != "lfw"}
        lfw_images = lfw_images or stats["images"]
    return out


def pooled_comparison(run: Path, ext: MemoExtNet, data: Path, device: torch.device) -> dict:
    """The cloud's RecNets against the key-free pooled cosine of the same tokens, probe by probe.

    Pooled cosine: mean of the tokens, image plus mirror, cosine; ``centred`` subtracts the mean token of the
    target set (the cheap attack's k = 0 identifier, ``veil.attacks.identifiers``), ``uncentred`` does not. Both
    are the same on XNN's tokens as on clean ones (an orthogonal map keeps cosines), so they are computed once.
    """
    split = Split.load(run / "split.json")
    faces = load_group(data, split, "owner_test", ext.cfg.img_size)
    gallery, probe = gallery_probe(faces, split.gallery_seed)
    labels = faces.labels
    tokens = extract_tokens(ext, faces.images, device=device).float()
    mirrored = extract_tokens(ext, faces.images, flip=True, device=device).float()
    owner = OwnerKey.load(run / "owner.key")
    hits, rates = {}, {}
    for name, method in (("Vanilla+PE", "vanilla"), ("XNN", "xnn")):
        rec, info = load_recnet(run / f"recnet_{method}.safetensors")
        obf = (xnn_from_key(owner, *ext.token_shape, info["obfuscation"]["matrix"]) if method == "xnn"
               else NoObfuscation())
        with torch.no_grad():
            emb = rec(obf(tokens)) + rec(obf(mirrored))
        rates[name], hits[name] = top1(emb[gallery], labels[gallery], emb[probe], labels[probe])
    for name, centre in (("pooled cosine, centred", tokens.mean(dim=(0, 1))), ("pooled cosine, uncentred", 0.0)):
        emb = tokens.mean(dim=1) - centre + mirrored.mean(dim=1) - centre
        rates[name], hits[name] = top1(emb[gallery], labels[gallery], emb[probe], labels[probe])
    groups = labels[probe]
    return {"rates": {k: {**r.as_dict(), "gallery": len(gallery), "chance": 1 / len(gallery)}
                      for k, r in rates.items()},
            "paired": {f"{a} - {b}": paired_difference(hits[a], hits[b], groups)
                       for a in ("Vanilla+PE", "XNN") for b in ("pooled cosine, centred", "pooled cosine, uncentred")}}


def markdown(result: dict) -> str:
    ext, fig = result["extractor"], result["figures"]
    lines = [f"ExtNet: {ext['name']} (cut after {ext['cut']} levels, {ext['token_shape'][0]} tokens x "
             f"{ext['token_shape'][1]}, weights SHA-256 {str(ext['weights_sha256'])[:16]}...)", "",
             "| method | utility top-1 | 95% CI | n probes | gallery | chance |", "|---|---|---|---|---|---|"]
    t = result.get("teacher_whole")
    if t:
        lines.append(f"| teacher whole (dlib's network end to end, no cloud) | {100 * t['rate']:.2f}% | "
                     f"[{100 * t['ci95'][0]:.2f}, {100 * t['ci95'][1]:.2f}] | {t['n']} | {t['gallery']} | "
                     f"{100 * t['chance']:.2f}% |")
    for name, u in result["utility"].items():
        lines.append(f"| {name} | {100 * u['rate']:.2f}% | [{100 * u['ci95'][0]:.2f}, {100 * u['ci95'][1]:.2f}] "
                     f"| {u['n']} | {u['gallery']} | {100 * u['chance']:.2f}% |")
    r = result["ratio_xnn_over_vanilla"]
    o, t, m = fig["obfuscation_time"], fig["training_throughput"], fig["peak_memory"]
    lines += ["", "| figure | value | target |", "|---|---|---|",
              f"| XNN / Vanilla+PE utility | {100 * r['ratio']:.1f}% [{100 * r['ci95'][0]:.1f}, "
              f"{100 * r['ci95'][1]:.1f}] (bootstrap over {r['identities']} identities) | >= 97% |",
              f"| ObfNet / ExtNet time per batch of 256 | {100 * o['ratio']:.2f}% ({1000 * o['obfnet_s']:.1f} ms / "
              f"{1000 * o['extnet_s']:.0f} ms) | <= 2% |",
              f"| cloud training throughput, obfuscated / plain | {t['ratio_obfuscated_over_plain']:.3f} "
              f"({t['samples_per_second']['obfuscated']:.0f} / {t['samples_per_second']['plain']:.0f} samples/s)"
              " | >= 0.95 |"]
    for source, s in m.items():
        lines.append(f"| peak RSS of obfuscation, {source} ({s['images']} images) | {s['peak_rss_mib']:.0f} MiB "
                     "| < 2048 MiB |")
    lines += ["", "Key binding (XNN's RecNet; probes obfuscated under the owner's key unless stated):", "",
              "| gallery / probes | top-1 | 95% CI | n | chance |", "|---|---|---|---|---|"]
    for name, u in fig["key_binding"].items():
        lines.append(f"| {name} | {100 * u['rate']:.2f}% | [{100 * u['ci95'][0]:.2f}, {100 * u['ci95'][1]:.2f}] "
                     f"| {u['n']} | {100 * u['chance']:.2f}% |")
    pc = fig.get("pooled_comparison")
    if pc:
        lines += ["", "The cloud's RecNet against the key-free pooled cosine of the same tokens, same probes:", ""]
        lines += [f"- {name}: {100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}] "
                  f"(n = {r['n']})" for name, r in pc["rates"].items() if name.startswith("pooled")]
        lines += ["", "| comparison | difference (points) | 95% CI (bootstrap over identities) | won / lost "
                  "(probes only one gets right) | McNemar exact p |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {100 * d['difference']:+.2f} | [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}] "
                  f"| {d['won']} / {d['lost']} | {d['p_mcnemar']:.3f} |" for name, d in pc["paired"].items()]
    if fig.get("attacks"):
        lines += ["", "Cheap attacks on the same run (pooled identifier; k = 0: key-free pooled cosine):", "",
                  "| store | leaked pairs k | leakage top-1 | 95% CI | n | chance |", "|---|---|---|---|---|---|"]
        for method, r in fig["attacks"].items():
            for pt in r["points"]:
                lines.append(f"| {method} | {pt['k']} | {100 * pt['rate']:.2f}% | [{100 * pt['ci95'][0]:.2f}, "
                             f"{100 * pt['ci95'][1]:.2f}] | {pt['n']} | {100 * pt['chance']:.2f}% |")
    env = result["environment"]
    lines += ["", f"Device {env['device']}, torch {env['torch']}, timm {env['timm']}, {env['cpu_threads']} threads; "
              f"seed {result['seed']}; wall time {result['wall_seconds'] / 60:.1f} min; preset {fig['preset']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="bench", choices=sorted(PRESETS))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--run", type=Path, default=Path("runs/bench-xnn"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "xnn.json")
    parser.add_argument("--reuse", action="store_true", help="reuse RUN's end-to-end results; re-measure the rest")
    parser.add_argument("--memory-multiple", type=int, default=4, help="synthetic set size / LFW part for peak RSS")
    parser.add_argument("--memory-images", type=int, default=1000,
                        help="LFW images streamed for peak RSS (0: all 10,821; ExtNet at 150 px dominates the time)")
    args = parser.parse_args()
    configure_threads()
    device = pick_device(args.device)
    data = args.data or default_data()
    conditions = run_conditions(data)
    start = time.time()
    if args.reuse:
        summary = json.loads((args.run / "results.json").read_text())
    else:
        summary = run_xnn(data, args.run, args.preset, device, show_progress=sys.stderr.isatty())
    # wall time of the whole run: with --reuse, the reused end-to-end run's as well
    envelope = Envelope("xnn", seed=PRESETS[args.preset].split.seed, device=device,
                        started=start - (summary["wall_seconds"] if args.reuse else 0.0))
    ext_path = Path(summary["extractor"])
    ext = MemoExtNet(load_extnet(ext_path))  # key binding and the pooled comparison: one extraction
    teacher = (teacher_whole(data, Split.load(args.run / "split.json"), device)
               if (summary.get("extractor_info") or {}).get("kind") == "dlib-resnet" else None)
    figures = {
        "preset": args.preset, "data": str(data), "split": summary["split"], "config": summary["config"],
        "pipeline_timings": summary["timings"], "pretrain": summary["pretrain"], "attacks": summary.get("attacks"),
        "obfuscation_time": time_obfuscation(ext_path, device),
        "training_throughput": training_throughput(args.run, PRESETS[args.preset].cloud, device),
        "peak_memory": peak_memory(ext_path, data, args.memory_multiple, args.memory_images),
        "key_binding": key_binding(args.run, ext, data, device),
        "pooled_comparison": pooled_comparison(args.run, ext, data, device),
        "self_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reused_run": bool(args.reuse),
    }
    # utility, ratio, extractor and teacher_whole stay at the top level, where their readers look
    result = envelope.finish(
        figures, utility=summary["utility"], ratio_xnn_over_vanilla=summary["ratio_xnn_over_vanilla"],
        extractor=summary.get("extractor_info"), teacher_whole=teacher,
        preprocess=summary.get("preprocess") or conditions.pop("preprocess", None), **conditions,
        load_average_end=list(os.getloadavg()))
    publish(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
