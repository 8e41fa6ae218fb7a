"""Turn a collected run into the self-contained HTML page: figures, tables, provenance.

Rendering goes through Jinja2 with autoescaping on, so a string from a JSON file (a method name, a
command, a config value) can never inject markup or script into the page.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from veil.errors import VeilError
from veil.io import write_text
from veil.report.collect import RateView, RunData, SourceFile, collect, scrub
from veil.report.plots import TradeoffPoint, known_plaintext_plot, tradeoff_plot, xnnd_curve_plot
from veil.report.template import PAGE, RATE_CELLS

TSNE_CAP = 40


def _mapping(value: object) -> dict:
    """``value`` if a results file gave a JSON object there, else an empty one (a report never fails on it)."""
    return value if isinstance(value, dict) else {}


def _pct(x: Any, digits: int = 2) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "—"
    return f"{100 * x:.{digits}f}%"


def _ci(r: RateView | None) -> str:
    if r is None or r.lo is None or r.hi is None:
        return "—"
    return f"[{100 * r.lo:.2f}, {100 * r.hi:.2f}]"


def _hn(r: RateView | None) -> str:
    if r is None:
        return "—"
    hits = "?" if r.hits is None else str(r.hits)
    n = "n missing" if r.n is None else str(r.n)
    return f"{hits} / {n}"


def _secs(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "—"
    return f"{x:.1f} s" if x < 120 else f"{x:.0f} s ({x / 60:.1f} min)"


def _sig(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "—"
    return f"{x:.3g}"


def _tick(x: bool | None) -> str:
    return "✓" if x is True else ("✗" if x is False else "?")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    env.filters.update(pct=_pct, pct1=lambda x: _pct(x, 1), pct0=lambda x: _pct(x, 0), ci=_ci, hn=_hn, secs=_secs,
                       sig=_sig, tick=_tick)
    return env


def _plain(value: Any) -> str:
    """A JSON scalar or small structure as text for a provenance cell (escaped later by the template)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _tradeoff_points(data: RunData) -> list[TradeoffPoint]:
    points: list[TradeoffPoint] = []
    for row in data.table2 or []:
        for aux, leak in row.leakage.items():
            if row.utility is not None and leak is not None:
                points.append(TradeoffPoint(row.method, f"Table 2 · leakage, {aux}", row.utility, leak))
    for a in data.attacks:
        if a.utility is not None:
            label = f"{a.attack}" + (f": {a.variant}" if a.variant else "")
            points.append(TradeoffPoint(a.method, label, a.utility, a.leakage))
    return points


def _chance(data: RunData) -> float | None:
    views = [r for r in data.utility.values()] + [a.leakage for a in data.attacks]
    views += [r.utility for r in data.table2 or [] if r.utility is not None]
    return next((v.chance for v in views if v.chance is not None), None)


def _headline(data: RunData) -> str | None:
    """One sentence a reader can act on: the strongest attack on XNN against XNN's own utility."""
    xnn = [a for a in data.attacks if a.method == "XNN" and a.leakage.rate is not None]
    if not xnn:
        return None
    best = max(xnn, key=lambda a: a.leakage.rate or 0.0)
    util = data.utility.get("XNN") or best.utility
    text = (f"Strongest attack on XNN here: {best.attack}" + (f" ({best.variant})" if best.variant else "")
            + f", leakage {_pct(best.leakage.rate)} {_ci(best.leakage)}, n = {best.leakage.n}")
    if util is not None:
        text += f", against the owner's XNN utility {_pct(util.rate)} {_ci(util)}"
    if best.chance is not None:
        text += f"; chance {_pct(best.chance)}"
    return text + "."


def _seed_of(config: Any) -> Any:
    if not isinstance(config, dict):
        return None
    if "seed" in config:
        return config["seed"]
    for v in config.values():
        if isinstance(v, dict) and "seed" in v:
            return v["seed"]
    return None


def _provenance(data: RunData, command: str) -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        veil_version = version("veil")
    except PackageNotFoundError:
        veil_version = "unknown"
    rows = [("report command", command), ("run directory", str(data.run_dir)),
            ("report made with", f"veil {veil_version}, Python {platform.python_version()}")]
    res = data.results or {}
    for key in ("command", "preset", "data", "synthetic", "device", "wall_seconds"):
        if key in res:
            value = _secs(res[key]) if key == "wall_seconds" else _plain(res[key])
            rows.append((f"results.json {key.replace('_', ' ')}", value))
    cfg = _mapping(res.get("config"))
    seeds = {name: part.get("seed") for name, part in cfg.items() if isinstance(part, dict) and "seed" in part}
    if seeds:
        rows.append(("seeds (results.json config)", ", ".join(f"{k} {v}" for k, v in seeds.items())))
    if isinstance(res.get("split"), dict):
        rows.append(("split (persons per group)", ", ".join(f"{k} {v}" for k, v in res["split"].items())))
    return [(k, str(v)) for k, v in scrub(dict(rows)).items()]


def render(data: RunData, command: str, tsne: Any = None, tsne_note: str = "", seed: int = 0) -> str:
    """The page as a string; ``tsne`` is a ``TsneFigure`` or None (then ``tsne_note`` says why)."""
    res = data.results or {}
    curves_util = data.utility.get("XNN")
    env_raw = _mapping(scrub(res.get("environment"))) if isinstance(res.get("environment"), dict) else {}
    timings = _mapping(res.get("timings"))
    attack_meta = [{**m, "seed": _seed_of(m.get("config"))} for m in data.attack_meta]
    dumps = []
    if isinstance(res.get("config"), dict):
        dumps.append(("results.json config", json.dumps(scrub(res["config"]), indent=1, default=str)))
    for m in data.attack_meta:
        if m.get("config"):
            dumps.append((f"attacks/{m['file']} config", json.dumps(m["config"], indent=1, default=str)))
    ratio = None
    if data.ratio is not None:
        r = data.ratio
        ci = r.get("ci95") if isinstance(r.get("ci95"), list) and len(r["ci95"]) == 2 else None
        how = (f"bootstrap over {r.get('identities', '?')} {r.get('bootstrap', 'identities')}, "
               f"{r.get('samples', '?')} samples") if ci else "no CI recorded"
        ratio = {"ratio": r.get("ratio"), "ci": f"[{_pct(ci[0], 1)}, {_pct(ci[1], 1)}]" if ci else "—", "how": how}
    env = _env()
    template = env.from_string(RATE_CELLS + PAGE)
    return template.render(
        run_name=data.run_dir.name, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=command, synthetic=data.synthetic, headline=_headline(data), missing=data.missing,
        utility=list(data.utility.items()), ratio=ratio, key_binding=list(data.key_binding.items()),
        table2=data.table2, table2_aux=data.table2_aux, ablations=data.ablations, attacks=data.attacks,
        tradeoff=tradeoff_plot(_tradeoff_points(data), _chance(data)), curves=data.curves,
        kp_plot=known_plaintext_plot(data.curves, curves_util), tsne=tsne, tsne_note=tsne_note, tsne_cap=TSNE_CAP,
        seed=seed, provenance=_provenance(data, command), environment=[(k, _plain(v)) for k, v in env_raw.items()],
        timings=list(timings.items()), attack_meta=attack_meta,
        table2_meta=[(k, _plain(v)) for k, v in data.table2_meta.items()], dumps=dumps, sources=data.sources,
        xnnd_plot=xnnd_curve_plot(data.xnnd_curve), xnnd_verdict=_xnnd_verdict(data.xnnd_curve),
    )


def _xnnd_verdict(table4: dict | None) -> str:
    if not table4:
        return ""
    from veil.xnnd.table4 import verdict_sentence

    return verdict_sentence(table4["verdict"]).replace("**", "")


def build_report(run_dir: str | Path, out: str | Path | None = None, tsne: bool = True, persons: int = 8,
                 seed: int = 0, command: str | None = None) -> Path:
    """Read ``run_dir``, draw the figures, write one self-contained HTML file; returns its path."""
    data = collect(run_dir)
    figure, note = None, ""
    stores = [data.run_dir / s for s in ("store_vanilla", "store_xnn")]
    if not tsne:
        note = "t-SNE skipped (--no-tsne)."
    elif not all((s / "manifest.json").is_file() for s in stores):
        absent = ", ".join(s.name for s in stores if not (s / "manifest.json").is_file())
        note = f"t-SNE omitted: {absent} missing (no store manifest)."
        data.missing.append(f"{absent}: no t-SNE of clean vs obfuscated features")
    else:
        from veil.report.tsne import tsne_figure

        figure = tsne_figure(data.run_dir, persons=persons, per_person=TSNE_CAP, seed=seed)
        if figure is None:
            note = "t-SNE omitted: the stores hold too few rows."
        for store in stores:  # the shards themselves were checked against these manifests' SHA-256
            raw = (store / "manifest.json").read_bytes()
            data.sources.append(SourceFile(f"{store.name}/manifest.json", len(raw), hashlib.sha256(raw).hexdigest()))
    page = render(data, command or f"veil report {run_dir}", figure, note, seed)
    path = Path(out) if out is not None else data.run_dir / "report.html"
    if path.exists() and path.is_dir():
        raise VeilError(f"--out {path} is a directory; give a file name")
    return write_text(path, page)


__all__ = ["build_report", "render"]
