"""The XNN paper's Table 2 (utility and expectation-attack leakage of every method) and Table 5 (ablations).

One run, one split, one public ExtNet, one RecNet recipe for every row:

- *Utility*: the owner's RecNet, trained on the method's training rows of the ``owner_train``
  persons, identifies the unseen ``owner_test`` persons (one gallery image each, the rest probes).
- *Leakage*: the expectation attack. The adversary simulates the method with fresh public randomness
  on an auxiliary group (``aux_a`` and ``aux_b``, the paper's FaceScrub and IMDb columns), trains the same
  RecNet on it, and identifies the owner's encoded test persons. Chance is 1 / gallery.
- *Ablations* (Table 5): a random, untrained ExtNet instead of the pre-trained one; and a RecNet
  pre-trained on public persons and frozen (the cloud trains nothing), on clean and on XNN tokens.

Everything is in memory; the owner's key is generated for the run and saved 0600 in the run folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from veil.attacks.leakage import Target, identity_leakage
from veil.attacks.recnet_fit import (
    AttackRecNetConfig,
    extract_tokens,
    fit_recnet,
    recnet_embedder,
    strong_attack_recipe,
)
from veil.attacks.simulation import Simulation, simulate
from veil.bench import Envelope, write_result
from veil.data.faceset import FaceSet
from veil.data.splits import Split, gallery_probe
from veil.demo import PRESETS, cached_extractor, resolve_data, run_key
from veil.errors import VeilError
from veil.evaluation import protections
from veil.io import write_text
from veil.keys import OwnerKey
from veil.metrics import bootstrap_ratio
from veil.models.extractor import Extractor, load_extnet, make_extnet
from veil.models.recnet import RecNet
from veil.obfuscation import registry
from veil.pipeline import load_group, prepare_split
from veil.train.progress import progress_bar

# Table 2's rows, labelled by the registry: Vanilla+PE, IH(k=2), IH(k=3), NC, XNN
METHODS = tuple(registry.get(name).display(**options) for name, options in (
    ("none", {}), ("instahide", {"k": 2}), ("instahide", {"k": 3}), ("neuracrypt", {}), ("xnn", {})))
VANILLA = registry.get("none").display()


@dataclass
class Table2Config:
    """Sizes of the run. ``owner_epochs`` defaults to the preset's cloud recipe (the same as bench/xnn.py)."""

    preset: str = "bench"
    methods: tuple[str, ...] = METHODS
    aux_groups: tuple[str, ...] = ("aux_a", "aux_b")
    owner_epochs: int | None = None
    attack: AttackRecNetConfig = field(default_factory=strong_attack_recipe)
    public_pool: int = 2000
    ih_cap: float = 0.65
    ih_encodings: int = 2
    nc_patch: int = 16
    nc_depth: int = 2
    matrix: str = "orthogonal"
    ablations: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for m in self.methods:  # any registered method, by name or table label (``IH(k=4)``), the owner can run
            spec, _ = registry.parse(m)
            if not spec.owner_side:
                raise VeilError(f"method {m!r} cannot be made by the owner here: its secret is {spec.secret}")
        if self.preset not in PRESETS:
            raise VeilError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")


def _owner_recipe(cfg: Table2Config) -> AttackRecNetConfig:
    cloud = asdict(PRESETS[cfg.preset].cloud)
    if cfg.owner_epochs is not None:
        cloud["epochs"] = cfg.owner_epochs
    return AttackRecNetConfig(**cloud)


def owner_target(protection: protections.Protection, faces: FaceSet, gallery_seed: int, device) -> Target:
    """The owner's test faces under ``protection`` (and their mirrors), as an adversary receives them."""
    features = protection.encode(faces.images, device=device)
    flipped = protection.encode(faces.images.flip(-1), device=device)
    return Target.from_features(features, faces.labels, gallery_seed, flipped)


def clean_tokens(ext: Extractor, faces: FaceSet, device) -> torch.Tensor:
    """Public ExtNet tokens of the images, then of their mirrors."""
    return torch.cat([extract_tokens(ext, faces.images, device=device),
                      extract_tokens(ext, faces.images, flip=True, device=device)])


def nc_patch_for(img_size: int, patch: int) -> int:
    """The largest NeuraCrypt patch <= ``patch`` that tiles the image (16 at 64 px, 15 at dlib's 150 px)."""
    return max(p for p in range(1, patch + 1) if img_size % p == 0)


def _options(cfg: Table2Config, img_size: int) -> dict:
    """Every method's settings from the run's config; each method takes the ones it has."""
    return {"matrix": cfg.matrix, "cap": cfg.ih_cap, "patch": nc_patch_for(img_size, cfg.nc_patch),
            "depth": cfg.nc_depth}


def simulation(name: str, ext: Extractor, aux: FaceSet, clean: torch.Tensor, public: torch.Tensor,
                cfg: Table2Config, device) -> Simulation:
    """The expectation attack's training set for ``name``; ``clean`` = :func:`clean_tokens` of ``aux``."""
    return simulate(name, ext, aux.images, aux.labels, clean, public, cfg.ih_encodings, cfg.seed, device,
                    **_options(cfg, ext.cfg.img_size))


def _protection(name: str, ext: Extractor, key: OwnerKey, public: torch.Tensor, cfg: Table2Config):
    return protections.protection(name, ext, key, public, **_options(cfg, ext.cfg.img_size))


def _public_pool(data, split: Split, img_size: int, size: int, seed: int) -> torch.Tensor:
    faces = load_group(data, split, "public", img_size)
    idx = torch.randperm(len(faces), generator=torch.Generator().manual_seed(seed))[:size]
    return faces.images[idx]


@dataclass
class _Context:
    """Everything the rows share: one split, one ExtNet, one key, the loaded face groups, one recipe."""

    cfg: Table2Config
    ext: Extractor
    key: OwnerKey
    split: Split
    train: FaceSet
    test: FaceSet
    aux: dict[str, FaceSet]
    clean: dict[str, torch.Tensor]
    public: torch.Tensor
    recipe: AttackRecNetConfig
    device: torch.device
    log: Callable[[str], None]
    advance: Callable[[str], None] = lambda _status: None

    def target(self, protection: protections.Protection) -> Target:
        return owner_target(protection, self.test, self.split.gallery_seed, self.device)

    def owner_utility(self, protection: protections.Protection):
        """Train the owner's RecNet on the method's training rows; its leakage result on the test persons."""
        rows = protection.training_rows(self.train.images, self.train.labels, self.device)
        recnet = fit_recnet(rows.tokens, rows.labels, self.recipe, device=self.device)
        return identity_leakage(self.target(protection), recnet_embedder(recnet)), rows


def run_table2(data: str | Path | None = None, out: str | Path = "runs/table2", cfg: Table2Config | None = None,
               device: str | torch.device = "cpu", log: Callable[[str], None] = print,
               show_progress: bool = True, command: str = "veil bench table2") -> dict:
    """Train and attack every method; write ``out/table2.json``. Returns the JSON payload (the common bench
    envelope of :mod:`veil.bench`, the rows and ablations at the top level where ``veil report`` reads them)."""
    cfg = cfg or Table2Config()
    data = resolve_data(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    envelope = Envelope("table2", seed=cfg.seed, device=device, command=command)
    preset = PRESETS[cfg.preset]
    split = prepare_split(data, out / "split.json", preset.split)
    ext_path, _ = cached_extractor(data, split, preset, device, show_progress, log)
    ext = load_extnet(ext_path)
    size = ext.cfg.img_size
    aux = {g: load_group(data, split, g, size) for g in cfg.aux_groups}
    ctx = _Context(cfg, ext, run_key(out), split, load_group(data, split, "owner_train", size),
                   load_group(data, split, "owner_test", size), aux,
                   {g: clean_tokens(ext, f, device) for g, f in aux.items()},
                   _public_pool(data, split, size, cfg.public_pool, cfg.seed), _owner_recipe(cfg), device, log)
    groups = ", ".join(f"{g} {len(f)}" for g, f in aux.items())
    log(f"owner: {len(ctx.train)} training images of {len(ctx.train.names)} persons; test {len(ctx.test)} images "
        f"of {len(ctx.test.names)} persons; aux {groups}; public pool {len(ctx.public)}")

    steps = len(cfg.methods) * (1 + len(aux)) + (3 if cfg.ablations else 0)
    with progress_bar(show_progress) as bar:
        task = bar.add_task("table 2", total=steps, status="")
        ctx.advance = lambda status: bar.update(task, advance=1, status=status)
        rows, hits = _methods(ctx)
        probe_labels = ctx.test.labels[gallery_probe(ctx.test, split.gallery_seed)[1]]
        for row in rows:
            if VANILLA in hits and row["method"] != VANILLA:
                row["utility_ratio_vs_vanilla"] = bootstrap_ratio(hits[row["method"]], hits[VANILLA],
                                                                  probe_labels, seed=cfg.seed)
        ablations = _ablations(ctx, rows) if cfg.ablations else []
    record = {
        "data": str(data), "synthetic": False,
        "split": {g: len(v) for g, v in split.groups.items()}, "extractor": str(ext_path),
        "rows": rows, "ablations": ablations,
        "config": {**{k: v for k, v in asdict(cfg).items() if k != "attack"}, "owner_recipe": asdict(ctx.recipe),
                   "attack_recipe": asdict(cfg.attack)},
        "protocol": {"utility": "owner's RecNet, owner_test persons, 1 gallery image each, rest probes, "
                                "image + mirror embeddings summed",
                     "leakage": "expectation attack: RecNet trained on the aux group under fresh public "
                                "randomness of the method, applied to the owner's encoded test persons",
                     "ratio": "utility / Vanilla+PE utility on the same probes, bootstrap over identities"},
    }
    payload = envelope.finish(headline(rows, ablations), **record)
    write_result(out / "table2.json", payload)
    return payload


def headline(rows: list[dict], ablations: list[dict]) -> dict:
    """The envelope's ``figures``: per method its utility, leakage per auxiliary group, chance and utility ratio
    to Vanilla+PE; per ablation its utility. The full rows (obfuscation, training rows, timings) stay in ``rows``."""
    return {"methods": {r["method"]: {k: r[k] for k in ("utility", "leakage", "chance", "utility_ratio_vs_vanilla")
                                      if k in r} for r in rows},
            "ablations": {a["name"]: a["utility"] for a in ablations}}


def _methods(ctx: _Context) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Utility and leakage of every method: one owner RecNet and one attacker RecNet per auxiliary group."""
    rows, hits = [], {}
    for name in ctx.cfg.methods:
        t = time.time()
        protection = _protection(name, ctx.ext, ctx.key, ctx.public, ctx.cfg)
        utility, train_rows = ctx.owner_utility(protection)
        hits[name] = utility.hits
        ctx.advance(f"{name} owner")
        target = ctx.target(protection)
        leakage = {}
        for group, faces in ctx.aux.items():
            sim = simulation(name, ctx.ext, faces, ctx.clean[group], ctx.public, ctx.cfg, ctx.device)
            leakage[group] = identity_leakage(target, recnet_embedder(sim.fit(ctx.cfg.attack, ctx.device))).as_dict()
            ctx.advance(f"{name} attack {group}")
        obf = protection.obfuscation
        rows.append({"method": name, "obfuscation": obf.public_info() if obf else {"method": "none"},
                     "utility": utility.as_dict(), "leakage": leakage, "chance": target.chance,
                     "training_rows": len(train_rows.tokens), "token_shape": list(train_rows.tokens.shape[1:]),
                     "seconds": time.time() - t})
        ctx.log(f"{name}: utility {utility.rate}; leakage " + "; ".join(
            f"{g} {100 * v['rate']:.2f}%" for g, v in leakage.items()) + f"; chance {100 * target.chance:.2f}%")
    return rows, hits


def _ablations(ctx: _Context, rows: list[dict]) -> list[dict]:
    """Table 5: which parts matter. Rows already measured above are copied, not re-trained."""
    out = []
    by_name = {r["method"]: r for r in rows}

    def record(name: str, pretrained: bool, obf: bool, frozen: bool, utility: dict) -> None:
        out.append({"name": name, "pretrained_extnet": pretrained, "obfnet": obf, "frozen_recnet": frozen,
                    "utility": utility})
        ctx.log(f"ablation {name}: utility {100 * utility['rate']:.2f}% (n={utility['n']})")

    torch.manual_seed(ctx.cfg.seed)
    random_ext = make_extnet(ctx.ext.cfg)
    record("Vanilla (random, untrained ExtNet)", False, False, False,
           ctx.owner_utility(protections.vanilla(random_ext))[0].as_dict())
    ctx.advance("ablation: random ExtNet")
    for name, obf in (("Vanilla+PE", False), ("XNN", True)):
        if name in by_name:
            record(name, True, obf, False, by_name[name]["utility"])

    # A RecNet pre-trained on public persons (the auxiliary groups) and frozen: the cloud trains nothing.
    offsets, labels = 0, []
    for faces in ctx.aux.values():
        labels += [faces.labels + offsets] * 2  # images, then mirrors, as in clean_tokens
        offsets += len(faces.names)
    frozen: RecNet = fit_recnet(torch.cat(list(ctx.clean.values())), torch.cat(labels), ctx.recipe,
                                device=ctx.device)
    ctx.advance("ablation: frozen RecNet")
    for name, protection, obf in (("Vanilla+PE, frozen pre-trained RecNet", protections.vanilla(ctx.ext), False),
                                  ("XNN, frozen pre-trained RecNet",
                                   protections.xnn(ctx.ext, ctx.key, ctx.cfg.matrix), True)):
        record(name, True, obf, True, identity_leakage(ctx.target(protection), recnet_embedder(frozen)).as_dict())
    ctx.advance("ablations done")
    return out


def markdown(payload: dict) -> str:
    """Table 2 and Table 5 as markdown, every rate with n and its 95% interval."""

    def pct(r: dict) -> str:
        lo, hi = r["ci95"]
        return f"{100 * r['rate']:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]"

    groups = list(payload["rows"][0]["leakage"]) if payload["rows"] else []
    lines = ["| Method | Utility % (n) | " + " | ".join(f"Leakage {g} %" for g in groups)
             + " | Chance % | Utility / Vanilla |",
             "|---|---|" + "---|" * len(groups) + "---|---|"]
    for r in payload["rows"]:
        ratio = r.get("utility_ratio_vs_vanilla")
        rtxt = (f"{100 * ratio['ratio']:.1f}% [{100 * ratio['ci95'][0]:.1f}, {100 * ratio['ci95'][1]:.1f}]"
                if ratio else "—")
        lines.append(f"| {r['method']} | {pct(r['utility'])} ({r['utility']['n']}) | "
                     + " | ".join(pct(r["leakage"][g]) for g in groups)
                     + f" | {100 * r['chance']:.2f} | {rtxt} |")
    if payload.get("ablations"):
        lines += ["", "| Ablation | Pre-trained ExtNet | ObfNet | Frozen RecNet | Utility % (n) |",
                  "|---|---|---|---|---|"]
        for a in payload["ablations"]:
            tick = {True: "yes", False: "no"}
            lines.append(f"| {a['name']} | {tick[a['pretrained_extnet']]} | {tick[a['obfnet']]} | "
                         f"{tick[a['frozen_recnet']]} | {pct(a['utility'])} ({a['utility']['n']}) |")
    return "\n".join(lines) + "\n"


def publish(payload: dict, results_dir: str | Path, name: str = "table2") -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.md`` into ``results_dir`` (the committed benchmark record)."""
    results_dir = Path(results_dir)
    js = write_result(results_dir / f"{name}.json", payload)
    md = results_dir / f"{name}.md"
    md = write_text(md, f"Command: `{payload['command']}` ({payload['device']}, seed {payload['seed']}, "
                    f"wall {payload['wall_seconds']:.0f} s)\n\n" + markdown(payload))
    return js, md
