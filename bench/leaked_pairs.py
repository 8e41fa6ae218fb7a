"""Benchmark (issue 16): how many leaked (image, obfuscated feature) pairs each keyed obfuscation withstands.

    python bench/leaked_pairs.py [--run runs/leaked-pairs] [--methods "Vanilla+PE,XNN,XNN-H,..."]

Owner side (holds the key, only to *make* what the adversary receives). ExtNet tokens of owner_train and
owner_test come from a private cache in the run directory (``bench/leaked_pairs_cache.py``, extracted once).
For every method: the store = owner_train under the owner's key; the cloud's RecNet = the demo preset's
recipe (20 epochs, dim 128) trained on it; utility = that RecNet on owner_test (gallery and probes under the
owner's key), ratio to Vanilla+PE with a bootstrap over identities. Then the leaked-pairs attack
(``veil.attacks.leaked_pairs``): pairs from owner_train, the adversary's clean photos of owner_test as the
gallery, the owner's obfuscated owner_test features as probes, dlib's public head as the identifier.
k_half = the smallest k whose strongest leakage reaches half of the clean leakage (Vanilla+PE at k = 0).
Writes bench/results/leaked_pairs.{json,md,png}.

On disk every method is one attack result in Veil's one format (``AttackResult.to_dict``, as ``veil attack
--json`` and bench/attacks.py write): the top-level rate is the strongest estimator at the largest k, the
owner's utility (with its per-probe hits) and the whole curve (every estimator at every k, and the strongest
envelope) are its details. The same records go to RUN/attacks/leaked_pairs_<method>.json, where ``veil report
RUN`` reads them; ``veil report`` also reads this bench's JSON placed in a run's attacks/ folder.

    python bench/leaked_pairs.py --convert OLD.json   # a file of the earlier per-method shape, same figures
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import HERE, Envelope, write_markdown, write_result
from leaked_pairs_cache import dlib_identifier, ensure_split, owner_key, token_cache
from safetensors.torch import load_file, save_file  # noqa: E402

from veil.attacks.base import AttackResult  # noqa: E402
from veil.attacks.leakage import LeakageResult, Target  # noqa: E402
from veil.attacks.leaked_pairs import (  # noqa: E402
    DEFAULT_KS,
    CleanGalleryTarget,
    InverseConfig,
    LeakedPairsAttack,
    LeakedPairsResult,
    k_half,
    merge_draws,
)
from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet, recnet_embedder  # noqa: E402
from veil.metrics import Rate, bootstrap_ratio, top1  # noqa: E402
from veil.obfuscation import registry  # noqa: E402
from veil.pipeline import write_json  # noqa: E402
from veil.presets import STRONG_EXTNET_CLOUD  # noqa: E402
from veil.report.collect import bench_attack_results  # noqa: E402

DEFAULT_METHODS = "Vanilla+PE;Vanilla+PE(flat);XNN;XNN-H;XNN-H(chaff=1024);xnnh:curve=1;xnnh:chaff=256,noise=0.5"
# The cloud's RecNet per method. "strong" (default): the presets' strong-extractor recipe (linear, identity-
# initialised, class-mean CosFace head, lr 0.01) trained by SGD: the closed-form fit the presets now use (fit="lda")
# needs ~125 eigendecompositions of a 4096 x 4096 scatter per method on XNN-H's one-token rows, and on these stores
# it keeps the identity map, which this recipe starts from. "transformer": the older 2-block recipe from scratch
# (epochs 20, dim 128, batch 256, warm-up 3, lr 0.05), what the committed tables used before 2026-12-06.
CLOUD_RECIPES = {
    "strong": {**{k: v for k, v in asdict(STRONG_EXTNET_CLOUD).items()
                  if k != "seed" and k in {f.name for f in fields(AttackRecNetConfig)}}, "fit": "sgd"},
    "transformer": dict(epochs=20, batch_size=256, warmup_epochs=3.0, dim=128),
}


FLAT_VANILLA = "Vanilla+PE(flat)"


class FlatNone(torch.nn.Module):
    """No obfuscation, tokens flattened into one row: Vanilla+PE with XNN-H's RecNet input shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), 1, -1)

    def public_info(self) -> dict:
        return {"method": "none", "tokens": 1}


def obfuscate(obf: torch.nn.Module, tokens: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Rows as the store carries them (float16 on the wire, back to float32)."""
    with torch.no_grad():
        return torch.cat([obf(tokens[i:i + batch]) for i in range(0, len(tokens), batch)]).half().float()


def pct(r: dict | None) -> str:
    if r is None:
        return "—"
    if r.get("rate") is None:
        return "n.a." if str(r.get("note", "")).startswith("not applicable") else "n.d."
    return f"{100 * r['rate']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=HERE.parent / "runs" / "leaked-pairs")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "lfw112")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="labels or name:opt=v,... separated by ';'")
    parser.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None,
                        help="cloud RecNet epochs (same for every method; default: the recipe's own)")
    parser.add_argument("--recipe", choices=sorted(CLOUD_RECIPES), default="strong",
                        help="the cloud's RecNet recipe (see CLOUD_RECIPES)")
    parser.add_argument("--inverse-steps", type=int, default=300, help="learned inverse training steps")
    parser.add_argument("--draws", type=int, default=3, help="independent draws of the leaked set (seeded orders)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--collate", action="store_true", help="only collate the methods measured so far")
    parser.add_argument("--convert", type=Path, default=None, metavar="OLD",
                        help="rewrite a leaked_pairs.json of the earlier shape in the attack-result format, then stop")
    args = parser.parse_args()
    if args.convert is not None:
        convert(args.convert, args.results)
        return
    torch.set_num_threads(args.threads)
    env = Envelope("leaked_pairs", seed=args.seed, device="cpu")
    log = lambda m: print(m, flush=True)  # noqa: E731

    split = ensure_split(args.run, args.data, args.seed)
    cache = token_cache(args.run, args.data, log=log)
    key = owner_key(args.run)
    train_x, train_y = cache["owner_train/tokens"], cache["owner_train/labels"]
    test_x, test_y = cache["owner_test/tokens"], cache["owner_test/labels"]
    n_tok, dim = train_x.shape[1:]
    geometry = registry.Geometry(int(n_tok), int(dim), 150)
    idx = Target.from_features(test_x, test_y, seed=split.gallery_seed)
    gallery, probe = idx.gallery, idx.probe
    ks = [int(k) for k in args.ks.split(",")]
    picks = [torch.from_numpy(np.random.default_rng(args.seed + d).permutation(len(train_x))[:max(ks)])
             for d in range(args.draws)]
    cut, identifier = dlib_identifier(train_x)
    cloud = {**CLOUD_RECIPES[args.recipe], **({"epochs": args.epochs} if args.epochs else {})}
    cfg = AttackRecNetConfig(**cloud, seed=args.seed)

    methods_dir = args.run / "methods"
    methods_dir.mkdir(parents=True, exist_ok=True)
    for label in ([] if args.collate else args.methods.split(";")):
        if label == FLAT_VANILLA:  # the utility reference for one-token methods: no obfuscation, same input shape
            method, options, obf = registry.get("none"), {"tokens": 1}, FlatNone()
        else:
            method, options = registry.parse(label)
            obf = method.from_key(key if method.keyed else None, geometry, **options)
        log(f"== {label} ({method.name} {options})")
        store = obfuscate(obf, train_x)
        recnet = fit_recnet(store, train_y, cfg)
        test_obf = obfuscate(obf, test_x)  # the owner's own view: gallery and probes under its key
        emb = recnet_embedder(recnet)(test_obf)
        util, hits = top1(emb[gallery], test_y[gallery], emb[probe], test_y[probe])
        log(f"utility {util}")
        target = CleanGalleryTarget(test_x[gallery], test_y[gallery], test_obf[probe], test_y[probe])
        matrix = obf.public_info().get("matrix", "orthogonal")
        inverse = InverseConfig(steps=args.inverse_steps, seed=args.seed)
        attack = LeakedPairsAttack(ks, matrix=matrix, inverse=inverse, identifier=identifier)
        r = merge_draws([attack.run(train_x[pick], store[pick], target, store, recnet, log=log) for pick in picks])
        slug = slugify(label)
        save_file({"hits": hits.to(torch.uint8), "labels": test_y[probe]},
                  str(methods_dir / f"{slug}.hits.safetensors"))
        record = method_result(label, method.name, options, obf.public_info(),
                               LeakageResult(util, 1 / len(gallery), len(gallery), hits), r, len(gallery),
                               f"python bench/leaked_pairs.py --methods '{label}' --recipe {args.recipe} "
                               f"--epochs {cloud['epochs']} "
                               f"--inverse-steps {args.inverse_steps} --draws {args.draws} --seed {args.seed}")
        write_json(methods_dir / f"{slug}.json", record.to_dict())
        log(f"attack {r.seconds:.0f} s")
        del store, recnet, test_obf, emb, target, attack, r  # one method's state at a time
        gc.collect()
        log(f"peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    methods, figures = collate(methods_dir, args.methods, args.seed, len(gallery))
    figures.update({"ks": ks, "owner_train_images": len(train_x), "owner_test_images": len(test_x),
                    "gallery": len(gallery), "probes": len(probe), "chance": 1 / len(gallery),
                    "token_shape": [int(n_tok), int(dim)], "cloud_recnet": cloud,
                    "identifier": f"dlib head after cut {cut} (public), cosine", "key_fingerprint": key.fingerprint,
                    "pairs": f"the first k of {args.draws} seeded random orders of owner_train images (seeds "
                             f"{args.seed}..{args.seed + args.draws - 1}); rates are the mean hits over the draws "
                             "(Wilson 95% interval at n probes), each draw's rate in 'draws'",
                    "format": FORMAT, "load_average": list(os.getloadavg()),
                    "reproduce": f"python bench/leaked_pairs.py --recipe {args.recipe} --epochs {cloud['epochs']} "
                                 f"--inverse-steps {args.inverse_steps} --draws {args.draws} --threads {args.threads} "
                                 "(every method in one process)"})
    payload = env.finish(figures, methods=methods)
    for m in methods:  # beside the run, where `veil report RUN` finds attack results
        write_json(args.run / "attacks" / f"leaked_pairs_{slugify(m['name'])}.json", m)
    publish(payload, args.results)
    log(f"wrote {args.results / 'leaked_pairs.json'} (.md, .png)")


def publish(payload: dict, results: Path, png: bool = True) -> None:
    results.mkdir(parents=True, exist_ok=True)
    write_result(results / "leaked_pairs.json", payload)
    write_markdown(results / "leaked_pairs.md", markdown(payload))
    if png:
        plot(payload, results / "leaked_pairs.png")


FORMAT = ("methods: one attack result each (AttackResult.to_dict: strongest estimator at the largest k on top; "
          "'utility', 'curve' and the k_half figures among its details)")


def method_result(label: str, method: str, options: dict, public_info: dict, utility: LeakageResult,
                  curve: LeakedPairsResult, gallery: int, command: str | None) -> AttackResult:
    """One method's measurement as an attack result (``LeakedPairsAttack.curve_result``: the strongest estimator
    at the largest k on top, the curve among the details) with what the bench adds: the method and the owner's
    utility with its per-probe hits."""
    return LeakedPairsAttack.curve_result(curve, gallery, command, name=label, method=method, options=options,
                                          public_info=public_info, gallery_kind="clean", utility=utility.as_dict())


def read_method(body: dict, gallery: int) -> AttackResult:
    """A method's record as an attack result; a record of the earlier per-method shape (``name``, ``utility``,
    ``curve``, ``attack_seconds``, ``attack_config`` and the collated figures) is converted, figures unchanged."""
    if "attack" in body:
        return AttackResult.from_dict(body)
    util = body["utility"]
    utility = LeakageResult(Rate(int(util["hits"]), int(util["n"])), float(util["chance"]), gallery)
    curve = LeakedPairsResult.from_curve(body["curve"], body["attack_seconds"], body["attack_config"])
    result = method_result(body["name"], body["method"], body["options"], body["public_info"], utility, curve,
                           gallery, None)
    collated = {k: body[k] for k in COLLATED if k in body}
    result.details.update(collated)
    return result


COLLATED = ("k_half_by_estimator", "utility_ratio_vs_flat_vanilla", "utility_ratio", "utility_ratio_ci95",
            "utility_ratio_bootstrap", "k_half", "k_half_note")


def convert(old: Path, results: Path) -> None:
    """Rewrite a leaked_pairs.json of the earlier per-method shape in the one attack-result format: the same
    envelope and figures, each method an ``AttackResult`` dict (``--convert OLD``; no measurement is re-run)."""
    payload = json.loads(old.read_text())
    gallery = int(payload["figures"]["gallery"])
    if all("attack" in m for m in payload["methods"]):
        raise SystemExit(f"{old} is already in the attack-result format")
    payload["methods"] = [read_method(m, gallery).to_dict() for m in payload["methods"]]
    payload["figures"]["format"] = FORMAT
    payload["figures"]["converted"] = (f"methods rewritten from the earlier per-method shape by `python "
                                       f"bench/leaked_pairs.py --convert {old.name}`; no figure re-measured")
    publish(payload, results, png=False)
    print(f"wrote {results / 'leaked_pairs.json'} (.md) in the attack-result format")


def slugify(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def collate(methods_dir: Path, order: str, seed: int, gallery: int) -> tuple[list[dict], dict]:
    """Every method measured so far (one file each, possibly from parallel runs): ratios and k_half vs Vanilla+PE."""
    found = {body["name"]: body for body in (json.loads(p.read_text()) for p in methods_dir.glob("*.json"))}
    if "Vanilla+PE" not in found:
        raise SystemExit("collate: Vanilla+PE has not been measured yet (it is the reference)")
    names = [n for n in DEFAULT_METHODS.split(";") + order.split(";") if n in found]
    names = list(dict.fromkeys(names + sorted(found)))
    ref = load_file(str(methods_dir / f"{slugify('Vanilla+PE')}.hits.safetensors"))
    ref_curve = read_method(found["Vanilla+PE"], gallery).details["curve"]
    clean_rate = next(p["rate"] for p in ref_curve if p["k"] == 0 and p["attack"] == "identity")
    methods = []
    for name in names:
        result = read_method(found[name], gallery)
        body = result.details
        hits = load_file(str(methods_dir / f"{slugify(name)}.hits.safetensors"))
        ratio = bootstrap_ratio(hits["hits"].bool(), ref["hits"].bool(), ref["labels"], seed=seed)
        curve = LeakedPairsResult.from_curve(body["curve"], body["seconds"], body["config"])
        kept = result.leakage
        again = method_result(name, body["method"], body["options"], body["public_info"],
                              LeakageResult.from_dict(body["utility"]), curve, gallery, result.command)
        if kept is not None and again.leakage is not None and kept.rate == again.leakage.rate:
            again.leakage.hits = kept.hits  # the envelope's top is the same point: keep its per-probe hits
        body = again.details
        kh = k_half(curve.strongest(), clean_rate)
        body["k_half_by_estimator"] = {est: k_half([p for p in curve.points if p.estimator == est], clean_rate)
                                       for est in sorted({p.estimator for p in curve.points})}
        if FLAT_VANILLA in found and body.get("public_info", {}).get("tokens") == 1:
            flat = load_file(str(methods_dir / f"{slugify(FLAT_VANILLA)}.hits.safetensors"))
            vs_flat = bootstrap_ratio(hits["hits"].bool(), flat["hits"].bool(), flat["labels"], seed=seed)
            body["utility_ratio_vs_flat_vanilla"] = vs_flat
        body.update({"utility_ratio": ratio["ratio"], "utility_ratio_ci95": ratio["ci95"],
                     "utility_ratio_bootstrap": ratio, "k_half": kh,
                     "k_half_note": None if kh is not None else "not reached at the largest k measured"})
        methods.append(again.to_dict())
    return methods, {"clean_leakage": clean_rate, "half_clean_leakage": clean_rate / 2,
                     "clean_leakage_meaning": "Vanilla+PE probes (clean tokens) vs the clean gallery, dlib head"}


def read_methods(payload: dict) -> list[dict]:
    """The methods of a result, each read back through ``AttackResult.from_dict``: its details (name, utility,
    curve, k_half figures)."""
    return [r.details for r in bench_attack_results(payload)]


def markdown(payload: dict) -> str:
    f, methods = payload["figures"], read_methods(payload)
    ks = f["ks"]
    lines = [f"# Leaked pairs vs a clean gallery (`{payload['command']}`)", "",
             f"Top-1 leakage % [95% CI], n = {f['probes']} probes, {f['gallery']} persons, chance "
             f"{100 * f['chance']:.2f}%. Strongest of the determined estimators at each k (which one in "
             f"brackets); n.d. = not determined. Clean leakage (Vanilla+PE, k = 0): {100 * f['clean_leakage']:.1f}%; "
             f"k½ = smallest k reaching {100 * f['half_clean_leakage']:.1f}%. Utility: the cloud's RecNet on the "
             "owner's test persons, ratio to Vanilla+PE with a bootstrap over identities.", "",
             "`Vanilla+PE(flat)`: no obfuscation, tokens flattened into one row, the RecNet input shape of the "
             "one-token XNN-H rows; the last utility column compares those rows with it.", "",
             "| method | utility % [CI] | / Vanilla+PE [CI] | / Vanilla+PE(flat) [CI] | k½ | "
             + " | ".join(f"k={k}" for k in ks) + " |",
             "|---|---|---|---|---|" + "---|" * len(ks)]
    for m in methods:
        strongest = {p["k"]: p for p in m["curve"] if p["attack"].startswith("strongest")}
        cells = [f"{pct(strongest.get(k))} ({strongest[k]['attack'].split(':')[1]})" if k in strongest else "n.d."
                 for k in ks]
        kh = m["k_half"] if m["k_half"] is not None else m["k_half_note"]
        flat = m.get("utility_ratio_vs_flat_vanilla")
        flat_cell = (f"{100 * flat['ratio']:.1f}% [{100 * flat['ci95'][0]:.1f}, {100 * flat['ci95'][1]:.1f}]"
                     if flat else "—")
        lines.append(f"| {m['name']} | {pct(m['utility'])} | {100 * m['utility_ratio']:.1f}% "
                     f"[{100 * m['utility_ratio_ci95'][0]:.1f}, {100 * m['utility_ratio_ci95'][1]:.1f}] | "
                     f"{flat_cell} | {kh} | " + " | ".join(cells) + " |")
    lines += ["", "Every estimator, every k (leakage %, mean over the draws of the pairs [95% CI at n probes]; "
              "k½ of that estimator alone; `profile`/`posterior` are the inner-product attack):", "",
              "| method | estimator | k½ | " + " | ".join(f"k={k}" for k in ks) + " |",
              "|---|---|---|" + "---|" * len(ks)]
    for m in methods:
        by_est = m.get("k_half_by_estimator", {})
        for est in sorted({p["attack"] for p in m["curve"] if not p["attack"].startswith("strongest")}):
            row = {p["k"]: p for p in m["curve"] if p["attack"] == est}
            kh_est = by_est.get(est)
            lines.append(f"| {m['name']} | {est} | {'—' if kh_est is None else kh_est} | "
                         + " | ".join(pct(row.get(k)) if k in row else "—" for k in ks) + " |")
    lines += ["", "Each draw of the pairs (strongest estimator, leakage %):", "",
              "| method | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for m in methods:
        strongest = {p["k"]: p for p in m["curve"] if p["attack"].startswith("strongest")}
        lines.append(f"| {m['name']} | " + " | ".join(
            " / ".join(f"{100 * d:.1f}" for d in strongest[k].get("draws", [])) or "—" if k in strongest else "—"
            for k in ks) + " |")
    return "\n".join(lines) + "\n"


def plot(payload: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = payload["figures"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in read_methods(payload):
        pts = sorted((p["k"], p["rate"], p["ci95"]) for p in m["curve"] if p["attack"].startswith("strongest"))
        if len(pts) < 2:  # a utility reference measured at k = 0 only
            continue
        xs = [max(k, 0.5) for k, _, _ in pts]
        ax.plot(xs, [100 * r for _, r, _ in pts], marker="o",
                label=f"{m['name']} (utility {100 * m['utility_ratio']:.0f}%)")
        ax.fill_between(xs, [100 * c[0] for _, _, c in pts], [100 * c[1] for _, _, c in pts], alpha=0.15)
    ax.axhline(100 * f["half_clean_leakage"], color="grey", ls="--", lw=1, label="half of clean leakage")
    ax.axhline(100 * f["chance"], color="black", ls=":", lw=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("leaked pairs k (k = 0 drawn at 0.5)")
    ax.set_ylabel("top-1 leakage vs clean gallery, % (strongest estimator)")
    ax.set_title("Leaked pairs vs clean gallery (LFW, dlib ExtNet)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
