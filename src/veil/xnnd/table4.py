"""Table 4 of the XNN paper on LFW with dlib's ExtNet: baseline vs XNN-d, and the privacy-utility curve.

``run_table4`` (``veil bench table4``, ``python bench/table4.py``):

- default: the baseline and one XNN-d setting (``--eps``, ``--adversary``), every attack, the
  black-box attack with both auxiliary groups (aux_a, aux_b: the paper's FaceScrub / IMDb columns);
- ``sweep=True``: every (eps, adversary) setting of :class:`~veil.xnnd.sweep.SweepConfig`, aux_a;
  the curve, a plot (utility vs strongest-attack ASR, baseline and paper marked) and the verdict.

Clean ExtNet tokens are extracted once per group into the owner's cache under ``runs/``
(``veil.xnnd.token_cache``); the noise encoder is the token-input one (``veil.xnnd.token_noise``).
The chosen setting's files (``fg.safetensors``, ``recnet_server.safetensors``,
``recnet_baseline.safetensors``) are written into the run directory, ready for ``veil serve``/``veil client``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from veil.bench import Envelope, write_result
from veil.errors import VeilError
from veil.io import save_figure, write_text
from veil.models.extractor import extnet_digest, load_extnet
from veil.models.recnet import save_recnet
from veil.models.registry import DEFAULT_EXTRACTOR
from veil.xnnd.generator import FeatureGenerator, save_generator
from veil.xnnd.sweep import Shared, SweepConfig, curve_row, measure, prepare_shared, run_setting, verdict
from veil.xnnd.token_cache import DEFAULT_ROOT, load_tokens

PAPER = {"CelebA": {"baseline": {"utility": 70.49, "aux_a": 39.58, "aux_b": 78.63},
                    "XNN-d": {"utility": 73.15, "aux_a": 19.07, "aux_b": 21.02}}}
GROUPS = ("owner_train", "owner_test", "aux_a", "aux_b")


def pct(r: dict | None) -> str:
    if not r or r.get("rate") is None:
        return "not determined" + (f" ({r['note']})" if r and r.get("note") else "")
    return f"{100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]"


def write_setting_files(out: Path, ext, encoder, server, teacher, info: dict) -> dict:
    """The chosen setting as the service's files: FG (client secret, 0600), server RecNet, baseline RecNet."""
    out.mkdir(parents=True, exist_ok=True)
    fg = FeatureGenerator(ext, encoder)
    common = {"extractor": {"digest": extnet_digest(ext), "img_size": ext.cfg.img_size}, "synthetic": False}
    files = {"fg": str(save_generator(fg, out / "fg.safetensors", info)),
             "server": str(save_recnet(server, out / "recnet_server.safetensors",
                                       {**common, "xnnd": {"role": "server", "eps": encoder.eps, **info}})),
             "baseline": str(save_recnet(teacher, out / "recnet_baseline.safetensors",
                                         {**common, "xnnd": {"role": "baseline", "eps": 0.0}}))}
    return files


def run_table4(data: Path, split, run: Path, cfg: SweepConfig, sweep: bool, eps: float, adversary: str,
               extractor: str = DEFAULT_EXTRACTOR, device: torch.device | str = "cpu", show_progress: bool = False,
               log=print, command: str = "", token_root: Path = DEFAULT_ROOT) -> dict:
    """The baseline and every setting, measured; the result in the common bench envelope (:mod:`veil.bench`)."""
    envelope = Envelope("table4", seed=cfg.seed, device=torch.device(device), command=command)
    start = envelope.started
    device = torch.device(device)
    ext = load_extnet(extractor)
    groups = {g: load_tokens(data, split, g, ext, token_root, device=device, log=log)
              for g in (GROUPS if not sweep else GROUPS[:3])}
    extract_s = time.time() - start
    log(f"tokens: {', '.join(f'{g} {len(t)}' for g, t in groups.items())} ({extract_s:.0f}s)")
    shared = prepare_shared(groups["owner_train"], groups["owner_test"], groups["aux_a"], cfg, split.gallery_seed,
                            device, show_progress, log)
    log("baseline (no noise):")
    base = measure(shared, None, shared.teacher, cfg, device, 0.0, log)
    base.update({"eps": 0.0, "adversary": "none"})
    settings = cfg.settings() if sweep else [(float(eps), adversary)]
    trained = []
    for e, a in settings:
        trained.append(run_setting(shared, e, a, cfg, device, show_progress, log))
        _write_partial(run, base, [t[0] for t in trained], cfg)
    points = [t[0] for t in trained]
    v = verdict(base, points)
    # the service gets the verdict's setting (met, or the closest) in a sweep, the requested one otherwise
    chosen = next(t for t in trained if (t[0]["eps"], t[0]["adversary"]) ==
                  (v["setting"]["eps"], v["setting"]["adversary"]))
    m, enc, server = chosen
    files = write_setting_files(run, ext, enc, server, shared.teacher,
                                {"eps": m["eps"], "adversary": m["adversary"], "encoder": "tokens"})
    if not sweep:
        _aux_b(shared, groups["aux_b"], base, m, enc, server, cfg, device, log)
    # the full record stays at the top level, where `veil report`, `--merge` and the README's readers look
    result = {"mode": "sweep" if sweep else "default", "data": str(data),
              "extractor": {"name": extractor, "digest": extnet_digest(ext), "token_shape": list(ext.token_shape)},
              "split": {g: len(v) for g, v in split.groups.items()}, "rows": {g: len(t) for g, t in groups.items()},
              "config": asdict(cfg), "baseline": base, "settings": points,
              "curve": [curve_row(p) for p in points], "baseline_row": curve_row(base), "verdict": v,
              "paper": PAPER, "files": files, "shared_seconds": shared.seconds, "extract_seconds": extract_s,
              "notes": _notes(cfg, sweep)}
    return envelope.finish(headline(result), **result)


def headline(res: dict) -> dict:
    """The envelope's ``figures``: the baseline's and each setting's curve row (utility, every attack's ASR)
    and the verdict; the measurements behind them (n, CI, chance, curves) are the result's ``baseline`` and
    ``settings``."""
    return {"baseline": res["baseline_row"], "curve": res["curve"], "verdict": res["verdict"]}


def _write_partial(run: Path, base: dict, points: list[dict], cfg: SweepConfig) -> None:
    """Progress on disk after every setting (run dir): the measured points so far, in the final file's shape."""
    from veil.pipeline import write_json

    write_json(run / "table4_partial.json", {"config": asdict(cfg), "baseline": base, "settings": points,
                                             "written": time.time(),
                                             "curve": [curve_row(p) for p in points]})


def _aux_b(shared: Shared, aux_b, base: dict, m: dict, enc, server, cfg: SweepConfig, device, log) -> None:
    """The default run's second auxiliary group: the black-box attack with aux_b for baseline and the setting."""
    other = Shared(shared.train, shared.test, aux_b, shared.gallery_seed, shared.teacher_logits, shared.teacher,
                   shared.transfer, shared.expectation, {})
    one = SweepConfig(**{**asdict(cfg), "budgets": (), "ks": ()})
    for res, e, s in ((base, None, shared.teacher), (m, enc, server)):
        r = measure_black_box_only(other, e, s, one, device)
        res["black_box_aux_b"] = r
        log(f"  black-box aux_b: {pct(r)}")


def measure_black_box_only(shared: Shared, encoder, server, cfg: SweepConfig, device) -> dict:
    from veil.attacks.black_box import BlackBoxAttack
    from veil.attacks.leakage import Target
    from veil.xnnd.sweep import layer_norm, noised

    target = Target.from_features(noised(encoder, layer_norm(shared.test.tokens)), shared.test.labels,
                                  shared.gallery_seed)
    feats = noised(encoder, layer_norm(shared.aux.tokens))
    attack = BlackBoxAttack(cfg.attack(), flip=False, seed=cfg.seed, device=device)
    return attack.point(feats, None, shared.aux.labels, target, len(feats)).as_dict()


def _notes(cfg: SweepConfig, sweep: bool) -> list[str]:
    return [
        "noise encoder: token-input (noise = g(LayerNorm(ExtNet(x))), per-token RMS eps), not the paper's image-input "
        "encoder, so stage 1 runs on cached tokens (docs/xnnd.md)",
        "no mirrored images: no flip augmentation and no flip test-time augmentation anywhere (baseline and "
        "settings alike); each query is one image",
        f"reduced epochs for CPU: stage 1 {cfg.stage1_epochs}, teacher {cfg.teacher_epochs}, student "
        f"{cfg.student_epochs}, attacker RecNets {cfg.attack_epochs}; "
        + (f"every RecNet (teacher, server, attackers, stage 1's adversaries) dim 128, depth {cfg.recnet_depth}; "
           if cfg.recnet_depth else
           "teacher, server and attacker RecNets on the cloud's strong recipe (linear, identity-initialised, "
           "class-mean CosFace head, lr 0.01), stage 1's adversaries dim 128, depth 1; ")
        + f"token encoder depth {cfg.encoder_depth} "
        "(0: per-token MLP with a position embedding)",
        "black-box attack with aux_a only in the sweep" if sweep else "black-box attack with aux_a and aux_b",
        "known-plaintext: ridge penalty chosen on 25% held-out leaked pairs; fewer than 4 pairs: not determined; "
        "the headline is the largest k",
    ]


# ---- publishing -------------------------------------------------------------------------------------------------

def markdown(res: dict) -> str:
    b, v = res["baseline"], res["verdict"]
    lines = [f"XNN-d on LFW, ExtNet {res['extractor']['name']} (tokens {res['extractor']['token_shape']}), "
             f"owner's {b['utility']['gallery']} unseen test persons, n = {b['utility']['n']} probes, chance "
             f"{100 * b['chance']:.2f}%. Every cell: top-1 [Wilson 95% CI].", "",
             "| eps | adversary | utility | black-box ASR (aux_a, all queries) | transfer ASR | expectation ASR | "
             "known-plaintext ASR (largest k) | strongest |", "|---|---|---|---|---|---|---|---|"]
    for m in [b] + res["settings"]:
        lines.append(f"| {m['eps']} | {m['adversary']} | {pct(m['utility'])} | {pct(m['black_box'])} | "
                     f"{pct(m['transfer'])} | {pct(m['expectation'])} | {pct(m['known_plaintext'])} | "
                     f"{m['strongest_attack']['attack']} {100 * m['strongest_attack']['rate']:.2f}% |")
    if "black_box_aux_b" in b:
        lines += ["", "| | black-box ASR aux_b |", "|---|---|",
                  *[f"| {m['eps']} / {m['adversary']} | {pct(m['black_box_aux_b'])} |" for m in [b] + res["settings"]
                    if "black_box_aux_b" in m]]
    p = PAPER["CelebA"]
    lines += ["", f"Paper (CelebA, ViT-B): baseline {p['baseline']['utility']} / {p['baseline']['aux_a']} / "
              f"{p['baseline']['aux_b']}; XNN-d {p['XNN-d']['utility']} / {p['XNN-d']['aux_a']} / "
              f"{p['XNN-d']['aux_b']} (utility / ASR FaceScrub / ASR IMDb, %).", "",
              f"**Verdict** (strongest-attack ASR <= {100 * v['asr_bound']:.2f}% = 0.5 x baseline's "
              f"{100 * v['baseline_strongest_asr']:.2f}%, at utility >= {100 * v['utility_bound']:.2f}% = 0.9 x "
              f"baseline's {100 * v['baseline_utility']:.2f}%): " + verdict_sentence(v), "",
              "Black-box query curve (aux_a):", "", "| eps | adversary | " + " | ".join(
                  f"{q['queries']} queries" for q in b["black_box"]["curve"]) + " |",
              "|---|---|" + "---|" * len(b["black_box"]["curve"])]
    for m in [b] + res["settings"]:
        lines.append(f"| {m['eps']} | {m['adversary']} | " + " | ".join(pct(q) for q in m["black_box"]["curve"]) + " |")
    lines += ["", "Known-plaintext curve (k leaked pairs; ridge lambda chosen on held-out pairs; OLS determined "
              "only when 16k >= 257):", "", "| eps | adversary | " + " | ".join(
                  f"k={q['k']}" for q in b["known_plaintext"]["curve"]) + " |",
              "|---|---|" + "---|" * len(b["known_plaintext"]["curve"])]
    for m in [b] + res["settings"]:
        lines.append(f"| {m['eps']} | {m['adversary']} | " + " | ".join(
            pct(q) for q in m["known_plaintext"]["curve"]) + " |")
    lines += ["", "Stage 1 (best adversary of the pool, last epoch): " + "; ".join(
        f"eps {m['eps']}/{m['adversary']}: CE {m['stage1']['adversary_ce'][-1]:.2f} (chance "
        f"{m['stage1']['chance_ce']:.2f}), acc {100 * m['stage1']['adversary_acc'][-1]:.1f}%" for m in res["settings"])]
    lines += ["", "Notes: " + "; ".join(res["notes"]) + ".",
              f"Wall time {res['wall_seconds'] / 60:.1f} min ({res['environment'].get('cpu_threads', '?')} threads, "
              f"device {res['environment'].get('device', '?')}); regenerate: `{res['command']}`."]
    return "\n".join(lines) + "\n"


def verdict_sentence(v: dict) -> str:
    s = v.get("setting", {})
    where = (f"eps {s.get('eps')} / {s.get('adversary')} adversary: utility {100 * v['utility']:.2f}%, strongest "
             f"attack ({v['strongest_attack']}) {100 * v['strongest_asr']:.2f}%") if s else "no settings"
    return ("**yes**, " + where) if v["met"] else ("**no**; closest point " + where)


def plot(res: dict, path: Path) -> Path:
    """Utility (x) vs strongest-attack ASR (y), one point per setting, baseline and the paper's points marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    draw_curve(ax, res)
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    return path


def draw_curve(ax, res: dict) -> None:
    b, v = res["baseline_row"], res["verdict"]
    markers = {"weak": "o", "strong": "s"}
    for adv in sorted({r["adversary"] for r in res["curve"]}):
        rows = sorted((r for r in res["curve"] if r["adversary"] == adv), key=lambda r: r["eps"])
        ax.plot([100 * r["utility"] for r in rows], [100 * r["asr_strongest"] for r in rows],
                marker=markers.get(adv, "^"), label=f"XNN-d, {adv} adversary (eps labelled)")
        for r in rows:
            ax.annotate(f"{r['eps']:g}", (100 * r["utility"], 100 * r["asr_strongest"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.scatter([100 * b["utility"]], [100 * b["asr_strongest"]], marker="*", s=160, color="black",
               label="baseline (no noise)", zorder=5)
    ax.axhline(100 * v["asr_bound"], color="grey", ls="--", lw=0.8, label="0.5 x baseline ASR")
    ax.axvline(100 * v["utility_bound"], color="grey", ls=":", lw=0.8, label="0.9 x baseline utility")
    ax.axhline(100 * b["chance"], color="red", ls="-.", lw=0.6, label="chance")
    p = PAPER["CelebA"]
    ax.scatter([p["baseline"]["utility"], p["XNN-d"]["utility"]], [p["baseline"]["aux_a"], p["XNN-d"]["aux_a"]],
               marker="x", color="purple", label="paper (CelebA, black-box FaceScrub)")
    ax.set_xlabel("utility: server RecNet top-1 (%)")
    ax.set_ylabel("strongest attack ASR (%)")
    ax.set_title("XNN-d privacy-utility curve (LFW, dlib ExtNet)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)


def publish(res: dict, out_json: Path) -> tuple[Path, Path, Path | None]:
    out_json.parent.mkdir(parents=True, exist_ok=True)
    write_result(out_json, res)
    md = out_json.with_suffix(".md")
    write_text(md, markdown(res))
    png: Path | None = out_json.with_suffix(".png")
    try:
        plot(res, out_json.with_suffix(".png"))
    except Exception as exc:  # noqa: BLE001 - the numbers are published even without a plot
        png = None
        print(f"plot failed: {exc}")
    return out_json, md, png


def load_result(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise VeilError(f"{path}: not a table4 result ({exc})") from None


def _config_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A result's JSON config as SweepConfig fields (JSON lists back to tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


def merge(parts: list[dict], command: str, shell: dict | None = None) -> dict:
    """One result from sweeps run in pieces (e.g. in parallel): same baseline required, settings joined, verdict anew.

    A piece may be a finished ``table4.json`` or a run's ``table4_partial.json`` (the settings measured before
    it was stopped); the first finished piece supplies the extractor, environment and files, or ``shell``
    when every piece was stopped (then no service files exist: re-run the chosen setting to write them).
    """
    if not parts:
        raise VeilError("nothing to merge")
    full = next((p for p in parts if "verdict" in p), None)
    if full is None:
        if shell is None:
            raise VeilError("merge needs a finished table4.json, or a shell (extractor, environment)")
        config = SweepConfig(**_config_fields(parts[0]["config"]))
        full = {**shell, **{k: parts[0][k] for k in ("config",)}, "files": {},
                "verdict": {"setting": None}, "paper": PAPER, "notes": _notes(config, True)}
    base = parts[0]["baseline"]
    for p in parts[1:]:
        b = p["baseline"]
        if (b["utility"]["hits"], b["strongest_attack"]["rate"]) != (base["utility"]["hits"],
                                                                     base["strongest_attack"]["rate"]):
            raise VeilError("the pieces have different baselines (another split, ExtNet, seed or recipe?)")
        if p["config"] | {"eps": (), "adversaries": (), "extra": ()} != \
                parts[0]["config"] | {"eps": (), "adversaries": (), "extra": ()}:
            raise VeilError("the pieces were run with different recipes (epochs, depths, budgets, ks or seed)")
    settings, seen = [], set()
    for p in parts:
        for m in p["settings"]:
            if (m["eps"], m["adversary"]) not in seen:
                seen.add((m["eps"], m["adversary"]))
                settings.append(m)
    out = {**full, "mode": "sweep (merged)", "settings": settings, "curve": [curve_row(m) for m in settings],
           "verdict": verdict(base, settings), "command": command,
           "pieces": [{"command": p.get("command", "(stopped run: table4_partial.json)"),
                       "settings": [[m["eps"], m["adversary"]] for m in p["settings"]],
                       "wall_seconds": p.get("wall_seconds")} for p in parts]}
    out["baseline_row"] = curve_row(base)
    out["wall_seconds"] = max((p.get("wall_seconds") or 0.0) for p in parts) if parts else 0.0
    out["figures"] = headline(out)
    out["files_note"] = (f"service files in {Path(full['files']['fg']).parent} are those of its piece's chosen "
                         f"setting ({full['verdict']['setting']}), not necessarily the merged verdict's"
                         if full["files"] else "every piece was stopped before writing service files")
    return out
