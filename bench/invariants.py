"""Benchmark (issue 22): the invariant attacks on real tokens, no training anywhere (seconds once tokens are cached).

    python bench/invariants.py [--run runs/leaked-pairs] [--methods "none;xnn;xnnh;..."] [--tag resized]

For each method, against the adversary's own *clean* gallery photos of the owner's test persons (paper 5.1):
the pair-free invariant attacks (``token_spectrum``: singular values, kept by ``P X M`` with orthogonal M;
``token_multiset``: order-free token statistics, kept by a per-sample shuffle) and the inner-product attack
(``inner_products``: profile and posterior estimators, k leaked pairs, ``--draws`` draws of the pairs). Tokens
come from the leaked-pairs cache (``bench/leaked_pairs_cache.py``: owner_train / owner_test ExtNet tokens);
``--tag`` names the features (today's resized crops, or aligned chips from ``veil.faces``). Writes
bench/results/invariants_<tag>.{json,md}.

Each attack of a method is one attack result in Veil's one format (``AttackResult.to_dict``; the inner-product
curve's rate is its strongest estimator at the largest k, the curve and k½ among its details), so ``veil
report`` reads this file like bench/leaked_pairs.py's.

    python bench/invariants.py --convert OLD.json   # a file of the earlier shape, same figures
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import cast

import numpy as np
import torch
from _common import HERE, Envelope, write_markdown, write_result
from leaked_pairs_cache import dlib_identifier, ensure_split, owner_key, token_cache

from veil.attacks.base import AttackResult, View
from veil.attacks.inner_products import InnerProductAttack
from veil.attacks.leakage import Target
from veil.attacks.leaked_pairs import CleanGalleryTarget, LeakedPairsResult, k_half, merge_draws
from veil.attacks.spectrum import TokenSpectrumAttack
from veil.attacks.token_multiset import TokenMultisetAttack
from veil.metrics import top1
from veil.obfuscation import registry
from veil.obfuscation.base import KeySource

METHODS = "none;xnn;xnnh;xnnh:curve=1;xnnh:chaff=256,noise=0.5"
KS = "1,4,16,32,64,128,256"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=HERE.parent / "runs" / "leaked-pairs")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "lfw112")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--ks", default=KS)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="resized", help="what the features are (goes into the file name)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--convert", type=Path, default=None, metavar="OLD",
                        help="rewrite an invariants JSON of the earlier shape in the attack-result format, then stop")
    args = parser.parse_args()
    if args.convert is not None:
        convert(args.convert)
        return
    torch.set_num_threads(args.threads)
    env = Envelope("invariants", seed=args.seed, device="cpu")
    split = ensure_split(args.run, args.data, args.seed)
    cache = token_cache(args.run, args.data, log=print)
    key = owner_key(args.run)
    train_x, test_x, test_y = cache["owner_train/tokens"], cache["owner_test/tokens"], cache["owner_test/labels"]
    n_tok, dim = test_x.shape[1:]
    idx = Target.from_features(test_x, test_y, seed=split.gallery_seed)
    gallery, probe = idx.gallery, idx.probe
    cut, identifier = dlib_identifier(test_x)
    ks = [int(k) for k in args.ks.split(",")]
    picks = [torch.from_numpy(np.random.default_rng(args.seed + d).permutation(len(train_x))[:max(ks)])
             for d in range(args.draws)]
    with torch.no_grad():
        clean_rate, _ = top1(identifier(test_x[gallery]), test_y[gallery], identifier(test_x[probe]), test_y[probe])
    methods = []
    for label in args.methods.split(";"):
        method, options = registry.parse(label)
        geometry = registry.Geometry(int(n_tok), int(dim), 150)
        obf = method.from_key(cast(KeySource, key) if method.keyed else None, geometry, **options)
        with torch.no_grad():
            store, probes = obf(train_x).half().float(), obf(test_x[probe]).half().float()
        row: dict = {"name": label, "public_info": obf.public_info()}
        about = {"method": method.name, "options": options, "gallery_kind": "clean"}
        if probes.shape[1:] == test_x.shape[1:]:
            feats = test_x.clone()
            feats[probe] = probes
            target = Target(feats, test_y, gallery, probe)
            for free in (TokenSpectrumAttack(), TokenMultisetAttack()):
                result = free.on(View(target=target), f"python bench/invariants.py --methods '{label}'")
                result.details.update(about)
                row[free.name] = result.to_dict()
        clean_target = CleanGalleryTarget(test_x[gallery], test_y[gallery], probes, test_y[probe])
        attack = InnerProductAttack(ks, identifier=identifier)
        r = merge_draws([attack.run(train_x[p], store[p], clean_target) for p in picks])
        row["inner_products"] = inner_products(r, len(gallery), clean_rate.value, about,
                                               f"python bench/invariants.py --methods '{label}' --ks {args.ks} "
                                               f"--draws {args.draws} --seed {args.seed}")
        print(label, {k: v.get("rate") for k, v in row.items() if isinstance(v, dict) and "rate" in v},
              row["inner_products"]["k_half"], flush=True)
        methods.append(row)
    figures = {"features": args.tag, "clean_leakage": clean_rate.as_dict(), "chance": 1 / len(gallery),
               "gallery": len(gallery), "probes": len(probe), "ks": ks, "draws": args.draws,
               "identifier": f"dlib head after cut {cut} (public)", "load_average": list(os.getloadavg())}
    payload = env.finish(figures, methods=methods)
    out = HERE / "results" / f"invariants_{args.tag}.json"
    write_result(out, payload)
    write_markdown(out.with_suffix(".md"), markdown(payload))
    print(markdown(payload))


def inner_products(r: LeakedPairsResult, gallery: int, clean_rate: float, about: dict,
                   command: str | None) -> dict:
    """The inner-product curve as an attack result (``InnerProductAttack.curve_result``) with its k½ figures."""
    by_est = {e: k_half([q for q in r.points if q.estimator == e], clean_rate)
              for e in sorted({q.estimator for q in r.points})}
    return InnerProductAttack.curve_result(r, gallery, command, **about, k_half=k_half(r.strongest(), clean_rate),
                                           k_half_by_estimator=by_est).to_dict()


def convert(old: Path) -> None:
    """Rewrite an invariants JSON of the earlier shape (``inner_products`` as curve, seconds, k½) in the
    attack-result format beside itself: the same envelope and figures, nothing re-measured."""
    payload = json.loads(old.read_text())
    f = payload["figures"]
    for row in payload["methods"]:
        method, options = registry.parse(row["name"])
        about = {"method": method.name, "options": options, "gallery_kind": "clean"}
        for name in ("token_spectrum", "token_multiset"):
            if name in row:
                row[name] = {**row[name], **{k: v for k, v in about.items() if k not in row[name]}}
        body = row["inner_products"]
        if "attack" in body:
            raise SystemExit(f"{old} is already in the attack-result format")
        r = LeakedPairsResult.from_curve(body["curve"], body["seconds"])
        row["inner_products"] = inner_products(r, int(f["gallery"]), float(f["clean_leakage"]["rate"]), about, None)
        if (row["inner_products"]["k_half"], row["inner_products"]["k_half_by_estimator"]) != (
                body["k_half"], body["k_half_by_estimator"]):
            raise SystemExit(f"{old}: {row['name']}'s k½ does not recompute to the recorded one")
    f["converted"] = (f"methods rewritten in the attack-result format by `python bench/invariants.py --convert "
                      f"{old.name}`; no figure re-measured")
    write_result(old, payload)
    write_markdown(old.with_suffix(".md"), markdown(payload))
    print(f"wrote {old} (.md) in the attack-result format")


def markdown(payload: dict) -> str:
    f = payload["figures"]
    pct = lambda r: "—" if r is None or r.get("rate") is None else (  # noqa: E731
        f"{100 * r['rate']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]")
    lines = [f"# Invariant attacks, {f['features']} features (`{payload['command']}`)", "",
             f"Clean gallery (the adversary's own photos), n = {f['probes']} probes, {f['gallery']} persons, chance "
             f"{100 * f['chance']:.2f}%; clean leakage (dlib head on clean probes) {pct(f['clean_leakage'])}. "
             f"Inner products: mean of {f['draws']} draws of the leaked pairs (Wilson 95% CI at n probes). No "
             "training, no key.", "",
             "| method | token_spectrum (no pairs) | token_multiset (no pairs) | k½ | "
             + " | ".join(f"k={k}" for k in f["ks"]) + " |", "|---|---|---|---|" + "---|" * len(f["ks"])]
    for m in payload["methods"]:
        read = {name: AttackResult.from_dict(m[name]) for name in ("token_spectrum", "token_multiset",
                                                                   "inner_products") if name in m}
        inner = read["inner_products"].details
        free = {name: r.to_dict() for name, r in read.items() if name != "inner_products"}
        strongest = {p["k"]: p for p in inner["curve"] if p["attack"].startswith("strongest")}
        lines.append(f"| {m['name']} | {pct(free.get('token_spectrum'))} | {pct(free.get('token_multiset'))} | "
                     f"{inner['k_half']} | " + " | ".join(
                         f"{pct(strongest.get(k))} ({strongest[k]['attack'].split(':')[1]})" if k in strongest
                         else "—" for k in f["ks"]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
