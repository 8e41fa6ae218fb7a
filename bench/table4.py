"""Benchmark: the XNN-d paper's Table 4 on real faces (LFW) — baseline vs XNN-d, utility and black-box ASR.

    python bench/table4.py [--data PATH] [--run runs/bench-table4]

Prints a table and writes bench/results/table4.json and bench/results/table4.md. Measures, on the
owner's 300 unseen test persons (one gallery image each, the rest probes):
- utility: top-1 of the server's RecNet (baseline: the teacher on clean LayerNorm(ExtNet) features;
  XNN-d: the distilled RecNet on noised features);
- black-box ASR (paper 5.3) with two disjoint auxiliary groups aux_a / aux_b (the paper's FaceScrub
  and IMDb columns): the attacker queries FG with its aux images (+ mirrors), trains its own RecNet
  on the answers and identifies the intercepted probe features against FG features of the gallery;
- the ASR curve over the number of queries (aux_a);
- attacks that need no queries, on the same features: a recogniser trained on clean public features
  (transfer), the same with random noise of the public bound (expectation over the noise), and k
  leaked (clean, noised) pairs of owner images with a least-squares de-noising map (known-plaintext).
Every rate: n probes, Wilson 95% CI, chance = 1/gallery. The public ExtNet is the cached one of
``veil demo --preset bench`` (pre-trained here when the cache is empty).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from veil.attacks.recnet_fit import AttackRecNetConfig  # noqa: E402
from veil.demo import PRESETS, default_data, environment, extractor_cache_path  # noqa: E402
from veil.device import configure_threads, pick_device  # noqa: E402
from veil.models.extractor import load_extnet  # noqa: E402
from veil.models.recnet import load_recnet  # noqa: E402
from veil.pipeline import prepare_split, pretrain_extractor, write_json  # noqa: E402
from veil.xnnd.config import AdversarialConfig, DistillConfig, XnndConfig  # noqa: E402
from veil.xnnd.generator import FeatureGenerator, load_generator  # noqa: E402
from veil.xnnd.harness import Harness  # noqa: E402
from veil.xnnd.train import train_xnnd  # noqa: E402

PAPER = {"CelebA": {"baseline": {"utility": 70.49, "aux_a": 39.58, "aux_b": 78.63},
                    "XNN-d": {"utility": 73.15, "aux_a": 19.07, "aux_b": 21.02}}}


def pct(r: dict) -> str:
    return f"{100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]"


def markdown(res: dict) -> str:
    lines = ["| method | utility top-1 [95% CI] | black-box ASR, aux_a [95% CI] | black-box ASR, aux_b [95% CI] | "
             "n probes | chance |", "|---|---|---|---|---|---|"]
    for name, m in res["methods"].items():
        lines.append(f"| {name} | {pct(m['utility'])} | {pct(m['black_box']['aux_a'])} | "
                     f"{pct(m['black_box']['aux_b'])} | {m['utility']['n']} | {100 * m['utility']['chance']:.2f}% |")
    p = PAPER["CelebA"]
    lines += ["", f"Paper (CelebA, ViT-B): baseline {p['baseline']['utility']} / {p['baseline']['aux_a']} / "
              f"{p['baseline']['aux_b']}; XNN-d {p['XNN-d']['utility']} / {p['XNN-d']['aux_a']} / "
              f"{p['XNN-d']['aux_b']} (utility / ASR FaceScrub / ASR IMDb, %).", "",
              "Black-box ASR over the number of queries (aux_a; each image is sent as is and mirrored):", "",
              "| queries | aux identities | " + " | ".join(res["methods"]) + " |",
              "|---|---|" + "---|" * len(res["methods"])]
    curves = {n: m["black_box"]["aux_a"]["curve"] for n, m in res["methods"].items()}
    first = next(iter(curves.values()))
    for i, pt in enumerate(first):
        cells = " | ".join(pct(c[i]) for c in curves.values())
        lines.append(f"| {pt['queries']} | {pt['identities']} | {cells} |")
    lines += ["", "Attacks without queries, on the same intercepted features (aux_a for training):", "",
              "| attack | " + " | ".join(res["methods"]) + " |", "|---|" + "---|" * len(res["methods"])]
    extra_names = list(next(iter(res["methods"].values()))["other_attacks"])
    for a in extra_names:
        cells = " | ".join(pct(m["other_attacks"][a]) for m in res["methods"].values())
        lines.append(f"| {a} | {cells} |")
    s1 = res["training"]["stage1"]
    env = res["environment"]
    lines += ["", f"Stage 1: adversary CE on noised training features {s1['adversary_ce'][0]:.2f} -> "
              f"{s1['adversary_ce'][-1]:.2f} (chance level {s1['chance_ce']:.2f}), adversary train accuracy "
              f"{100 * s1['adversary_acc'][-1]:.1f}%; noise bound eps = {res['config']['adversarial']['eps']} "
              "(per-token RMS; clean tokens have RMS 1).",
              f"Device {env['device']}, torch {env['torch']}, timm {env['timm']}, {env['cpu_threads']} threads; "
              f"seed {res['seed']}; wall time {res['wall_seconds'] / 60:.1f} min; regenerate: `{res['command']}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--run", type=Path, default=Path("runs/bench-table4"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--eps", type=float, default=1.0)
    parser.add_argument("--adv-weight", type=float, default=1.0)
    parser.add_argument("--adv-epochs", type=int, default=6)
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--student-epochs", type=int, default=30)
    parser.add_argument("--kd-weight", type=float, default=0.3)
    parser.add_argument("--attack-epochs", type=int, default=20)
    parser.add_argument("--budgets", default="50,100,200,400")
    parser.add_argument("--ks", default="0,16,64,256", help="known-plaintext pair counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="reuse RUN's trained XNN-d files; re-run the attacks")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "table4.json")
    args = parser.parse_args()
    configure_threads()
    device = pick_device(args.device)
    data = args.data or default_data()
    start = time.time()
    preset = PRESETS["bench"]
    split = prepare_split(data, args.run / "split.json", preset.split)
    ext_path = extractor_cache_path(split, preset)
    if not ext_path.exists():
        print(f"no cached extractor: pre-training {ext_path} (about 10 minutes on 2 CPU cores)")
        pretrain_extractor(data, split, ext_path, preset.extractor, preset.pretrain, device, sys.stderr.isatty())
    ext = load_extnet(ext_path)
    h = Harness(data, split, device)
    img = ext.cfg.img_size
    adv = AdversarialConfig(epochs=args.adv_epochs, eps=args.eps, adv_weight=args.adv_weight, seed=args.seed)
    cfg = XnndConfig(adv,
                     DistillConfig(epochs=args.teacher_epochs, kd_weight=0.0, seed=args.seed),
                     DistillConfig(epochs=args.student_epochs, kd_weight=args.kd_weight, seed=args.seed))
    if args.reuse and (args.run / "xnnd_history.json").exists():
        training = json.loads((args.run / "xnnd_history.json").read_text())
    else:
        owner_train = h.group("owner_train", img)
        training = train_xnnd(ext, owner_train, args.run, cfg, device, sys.stderr.isatty(),
                              log=lambda m: print(m, flush=True))
    train_s = time.time() - start
    fg, _ = load_generator(args.run / "fg.safetensors")
    chains = {"baseline": (FeatureGenerator(fg.ext), load_recnet(args.run / "recnet_baseline.safetensors")[0]),
              "XNN-d": (fg, load_recnet(args.run / "recnet_server.safetensors")[0])}
    test, leaked_from = h.group("owner_test", img), h.group("owner_train", img)
    aux = {g: h.group(g, img) for g in ("aux_a", "aux_b")}
    budgets = tuple(int(b) for b in args.budgets.split(",") if b.strip())
    ks = tuple(int(k) for k in args.ks.split(",") if k.strip())
    atk = AttackRecNetConfig(epochs=args.attack_epochs, seed=args.seed)
    methods = {}
    for name, (gen, recnet) in chains.items():
        t = time.time()
        target = h.target(gen, test)
        m = {"utility": h.utility(gen, recnet, test), "black_box": {}}
        print(f"{name}: utility {pct(m['utility'])}", flush=True)
        for g, faces in aux.items():
            m["black_box"][g] = h.black_box(gen, target, faces, atk, budgets if g == "aux_a" else (), args.seed)
            print(f"{name}: black-box ASR {g} {pct(m['black_box'][g])}", flush=True)
        m["other_attacks"] = {
            "transfer (RecNet on clean public features)": h.noise_expectation(fg, target, aux["aux_a"], atk,
                                                                              args.seed, eps=0.0),
            f"expectation over random noise (eps={fg.eps})": h.noise_expectation(fg, target, aux["aux_a"], atk,
                                                                                   args.seed),
        }
        kp = h.known_plaintext(gen, target, leaked_from, aux["aux_a"], atk, ks, args.seed)
        for p in kp["points"]:
            m["other_attacks"][f"known-plaintext, k={p['k']} leaked pairs"] = p
        m["seconds"] = time.time() - t
        methods[name] = m
    result = {"benchmark": "table4", "data": str(data), "seed": args.seed, "synthetic": False,
              "split": {g: len(v) for g, v in split.groups.items()}, "extractor": str(ext_path),
              "config": asdict(cfg), "attack_recnet": vars(atk), "budgets": budgets, "ks": ks,
              "methods": methods, "paper": PAPER,
              "training": {k: training[k] for k in ("stage1", "teacher", "student", "seconds")},
              "train_wall_seconds": train_s, "reused_training": bool(args.reuse),
              "environment": environment(device), "wall_seconds": time.time() - start,
              "command": "python bench/table4.py " + " ".join(sys.argv[1:])}
    write_json(args.out, result)
    md = markdown(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
