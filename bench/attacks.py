"""Benchmark: every attack of the suite against the XNN and Vanilla+PE stores of a bench/xnn.py run.

    python bench/attacks.py [--run runs/bench-xnn] [--data PATH] [--epochs N]

Needs the run folder that ``python bench/xnn.py`` writes (its stores, RecNets and split; the key stays
with the owner side of the harness and never reaches an attack). Runs, in order: the expectation attack
with each auxiliary group on XNN and on Vanilla+PE (the sanity check: leakage should be close to the
owner's utility), the known-plaintext curve over k with the pooled and the RecNet identifier, the
distribution-alignment attack, the cloud's own RecNet, and the expectation and cloud-model attacks
against a gallery of the adversary's own clean photos (the paper's section 5.1 definition). Each result
goes to RUN/attacks/NAME.json in the one attack-result format (``AttackResult.to_dict``, what ``veil report
RUN`` reads); the collation goes to bench/results/attacks.json and attacks.md.

The attacker's RecNets (expectation, the RecNet identifier, alignment) are trained with the owner's own cloud
recipe as the run recorded it (``results.json`` ``config.cloud``: every field, ``head_init`` and ``lr``
included), ``--epochs`` replacing only its number of epochs; ``--recipe transformer`` is the 2-block
transformer from scratch instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from _common import HERE, Envelope, pct, write_markdown, write_result  # (also puts src/ on sys.path)

from veil.attacks import registry
from veil.attacks.base import AttackResult
from veil.attacks.recnet_fit import AttackRecNetConfig
from veil.device import configure_threads, pick_device
from veil.evaluation.leakage_harness import LeakageHarness
from veil.pipeline import write_json


def markdown_table(written: Iterable[dict]) -> str:
    """One row per result (one per k for a curve), read back through the one attack-result format."""
    lines = ["| attack | method | leakage top-1 [95% CI] | n | chance | owner's utility |", "|---|---|---|---|---|---|"]
    for raw in written:
        result = AttackResult.from_dict(raw)
        r, label = result.to_dict(), registry.label(result.attack)
        util = pct(r["utility"]) if r.get("utility") else "—"
        if isinstance(r.get("points"), list):
            for p in r["points"]:
                est = (f" (P {100 * p['permutation_accuracy']:.0f}% right, M err {p['matrix_rel_error']:.3f})"
                       if "permutation_accuracy" in p else "")
                lines.append(f"| {label}, {r['identifier']}, k={p['k']}{est} | {r['method']} | {pct(p)} | "
                             f"{p['n']} | {100 * p['chance']:.2f}% | {util} |")
            continue
        label += f", {r['aux']}" if r.get("aux") else ""
        if r.get("gallery_kind") == "clean":
            label += ", clean gallery"
        lines.append(f"| {label} | {r['method']} | {pct(r)} | {r['n']} | {100 * r['chance']:.2f}% | {util} |")
        if r.get("whitened_pooled"):
            w = r["whitened_pooled"]
            lines.append(f"| {registry.label(result.attack)}, whitened pooled (no inversion) | {r['method']} | "
                         f"{pct(w)} | {w['n']} | {100 * r['chance']:.2f}% | {util} |")
    return "\n".join(lines) + "\n"


def attacker_recipe(harness: LeakageHarness, name: str, epochs: int | None, seed: int) -> AttackRecNetConfig:
    """``strong``: the owner's recorded cloud recipe, whole (``head_init``, ``lr``, depth, init, ...), with
    ``epochs`` replacing its own when given; ``transformer``: the 2-block transformer from scratch."""
    if name == "strong":
        return harness.owner_recipe(epochs, seed)
    return AttackRecNetConfig(epochs=epochs or 5, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=HERE.parent / "runs" / "bench-xnn")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None,
                        help="attacker RecNet epochs (default: the owner's recorded recipe's; 5 for transformer)")
    parser.add_argument("--recipe", choices=("strong", "transformer"), default="strong",
                        help="attacker RecNet: the owner's own cloud recipe as the run recorded it (default; the "
                             "strong-extractor recipe: linear, identity init, class-mean head) or the 2-block "
                             "transformer trained from scratch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if not (args.run / "store_xnn").is_dir():
        sys.exit(f"error: {args.run} has no XNN store; run `python bench/xnn.py` first")
    configure_threads()
    device = pick_device(args.device)
    envelope = Envelope("attacks", seed=args.seed, device=device)
    h = LeakageHarness(args.run, args.data, device, log=lambda m: print(f"  {m}", flush=True))
    cfg = attacker_recipe(h, args.recipe, args.epochs, args.seed)
    recipe = {"source": "the run's results.json config.cloud" if args.recipe == "strong" else "AttackRecNetConfig",
              **asdict(cfg)}
    jobs = {
        "expectation_xnn_aux_a": lambda: h.expectation("xnn", "aux_a", cfg, args.seed),
        "expectation_xnn_aux_b": lambda: h.expectation("xnn", "aux_b", cfg, args.seed),
        "expectation_vanilla_aux_a": lambda: h.expectation("vanilla", "aux_a", cfg, args.seed),
        "expectation_vanilla_aux_b": lambda: h.expectation("vanilla", "aux_b", cfg, args.seed),
        "known_plaintext_xnn_pooled": lambda: h.known_plaintext("xnn", identifier="pooled", seed=args.seed),
        "known_plaintext_xnn_pooled_uncentred": lambda: h.known_plaintext("xnn", identifier="pooled-uncentred",
                                                                          seed=args.seed),
        "known_plaintext_xnn_recnet": lambda: h.known_plaintext("xnn", identifier="recnet", recnet=cfg,
                                                                seed=args.seed),
        "alignment_xnn_aux_a": lambda: h.alignment("xnn", "aux_a", "pooled", recnet=cfg),
        "cloud_xnn": lambda: h.cloud_model("xnn"),
        "cloud_vanilla": lambda: h.cloud_model("vanilla"),
        # The paper's section 5.1 gallery: the adversary's own clean photos of the persons.
        "expectation_xnn_aux_a_clean_gallery": lambda: h.expectation("xnn", "aux_a", cfg, args.seed, "clean"),
        "expectation_vanilla_aux_a_clean_gallery": lambda: h.expectation("vanilla", "aux_a", cfg, args.seed, "clean"),
        "cloud_xnn_clean_gallery": lambda: h.cloud_model("xnn", "clean"),
    }
    results: dict[str, dict] = {}
    for name, job in jobs.items():
        t = time.time()
        print(f"{name} ...", flush=True)
        result = job()
        result.command = f"python bench/attacks.py (job {name})"
        results[name] = result.to_dict()
        write_json(args.run / "attacks" / f"{name}.json", results[name])
        print(f"{name}: {time.time() - t:.0f}s", flush=True)
    table = markdown_table(results.values())
    print(table)
    payload = envelope.finish({"run": str(args.run), "results": results, "attack_epochs": cfg.epochs,
                               "attack_recipe": {"name": args.recipe, **recipe}})
    write_result(HERE / "results" / "attacks.json", payload)
    write_markdown(HERE / "results" / "attacks.md",
                   f"Command: `{payload['command']}` on `{args.run.name}` ({device}, seed {args.seed}, "
                   f"attacker RecNet recipe {args.recipe}, wall {payload['wall_seconds']:.0f} s)\n\n" + table)
    print(f"wrote {HERE / 'results' / 'attacks.json'}")


if __name__ == "__main__":
    main()
