"""Read a run directory into plain view objects the page and the plots can render.

Why a separate step: the JSON files are written by different tools (``bench/xnn.py``, ``veil attack``,
``bench/table2.py``) at different times, so any of them may be absent or lack a field. Everything that
is absent becomes a note in ``RunData.missing`` and the rest still renders; a file that exists but is
not valid JSON is an error (a ``VeilError`` naming it), because a half-written result must not be
silently dropped from a report.

An attack result is read through ``AttackResult.from_dict`` wherever it comes from: one file per result
(``veil attack --json``, ``bench/attacks.py``'s RUN/attacks/NAME.json, ``bench/leaked_pairs.py``'s
RUN/attacks/leaked_pairs_METHOD.json) or a bench result holding several (``bench/results/attacks.json``,
``leaked_pairs.json``) copied into a run's attacks/ folder. A result with a curve over k leaked pairs (the
known-plaintext ``points``, the leaked-pairs ``curve``) also becomes a curve on the page.

Only the summary files listed here are read. The owner's key file (``owner.key``) is never opened,
and fields whose name mentions a key (e.g. ``key_fingerprint``) are dropped from every dump.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.attacks import registry as attack_registry
from veil.attacks.base import AttackResult
from veil.errors import VeilError
from veil.metrics import wilson
from veil.obfuscation import registry

RESULTS = "results.json"
TABLE2 = "table2.json"
ATTACKS = "attacks"


def method_name(raw: Any) -> str:
    """A method's table label from the obfuscation registry (``xnn`` -> ``XNN``, ``vanilla`` -> ``Vanilla+PE``);
    a name the registry does not know is shown as written."""
    if raw is None:
        return "?"
    try:
        return registry.lookup(str(raw)).display()
    except VeilError:
        return str(raw)


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _int(x: Any) -> int | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return int(x)


@dataclass(frozen=True)
class RateView:
    """A top-1 rate with its n and 95% interval, tolerant of missing fields.

    When ``ci95`` is absent but hits and n are known, the Wilson interval is recomputed (the same one
    ``veil.metrics.Rate`` writes), so every rate on the page still carries an interval.
    """

    rate: float | None
    lo: float | None
    hi: float | None
    hits: int | None
    n: int | None
    chance: float | None = None
    gallery: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> RateView | None:
        if not isinstance(raw, dict):
            return None
        hits, n = _int(raw.get("hits")), _int(raw.get("n"))
        rate = _finite(raw.get("rate"))
        if rate is None and hits is not None and n:
            rate = hits / n
        lo = hi = None
        ci = raw.get("ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            lo, hi = _finite(ci[0]), _finite(ci[1])
        if (lo is None or hi is None) and hits is not None and n:
            lo, hi = wilson(hits, n)
        chance = _finite(raw.get("chance"))
        gallery = _int(raw.get("gallery"))
        if chance is None and gallery:
            chance = 1.0 / gallery
        if rate is None and hits is None and n is None:
            return None
        return cls(rate, lo, hi, hits, n, chance, gallery)


@dataclass(frozen=True)
class AttackRow:
    """One leakage figure: which attack, against which method, with which variant."""

    method: str
    attack: str
    variant: str
    leakage: RateView
    chance: float | None
    utility: RateView | None
    seconds: float | None
    source: str


@dataclass(frozen=True)
class KPPoint:
    k: int
    leakage: RateView
    permutation_accuracy: float | None
    matrix_rel_error: float | None


@dataclass(frozen=True)
class KPCurve:
    """A leakage curve over k leaked pairs: known-plaintext (its ``points``) or leaked pairs (the strongest
    estimator of its ``curve`` at each k); ``title`` is the attack's."""

    method: str
    identifier: str
    points: list[KPPoint]
    utility: RateView | None
    chance: float | None
    source: str
    title: str = "known plaintext"


@dataclass(frozen=True)
class Table2Row:
    method: str
    utility: RateView | None
    leakage: dict[str, RateView | None]
    chance: float | None


@dataclass(frozen=True)
class Ablation:
    name: str
    pretrained_extnet: bool | None
    obfnet: bool | None
    frozen_recnet: bool | None
    utility: RateView | None


@dataclass(frozen=True)
class SourceFile:
    """A file the report read, with a checksum so a reader can tie the page to the exact inputs."""

    path: str
    bytes: int
    sha256: str


@dataclass
class RunData:
    """Everything the page shows, already parsed; ``missing`` lists what could not be shown and why."""

    run_dir: Path
    results: dict | None = None
    utility: dict[str, RateView] = field(default_factory=dict)
    ratio: dict | None = None
    key_binding: dict[str, RateView] = field(default_factory=dict)
    attacks: list[AttackRow] = field(default_factory=list)
    curves: list[KPCurve] = field(default_factory=list)
    table2: list[Table2Row] | None = None
    table2_aux: list[str] = field(default_factory=list)
    table2_meta: dict = field(default_factory=dict)
    ablations: list[Ablation] | None = None
    attack_meta: list[dict] = field(default_factory=list)
    sources: list[SourceFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    synthetic: bool = False
    xnnd_curve: dict | None = None  # table4.json of an XNN-d run (``veil bench table4 --sweep``)


def scrub(value: Any) -> Any:
    """Copy of a JSON value without any field whose name mentions a key, so no key material is shown."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if "key" not in str(k).lower()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def read_json(path: Path, data: RunData | None = None) -> dict:
    """Parse one JSON object; a corrupt or non-object file is a VeilError naming it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise VeilError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VeilError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise VeilError(f"{path} holds a JSON {type(value).__name__}, expected an object")
    if data is not None:
        rel = path.relative_to(data.run_dir).as_posix() if path.is_relative_to(data.run_dir) else str(path)
        data.sources.append(SourceFile(rel, len(raw), hashlib.sha256(raw).hexdigest()))
    return value


def _rate_or_note(raw: Any, what: str, data: RunData) -> RateView | None:
    view = RateView.parse(raw)
    if view is None:
        data.missing.append(f"{what}: no rate recorded")
    return view


def _load_results(data: RunData) -> None:
    path = data.run_dir / RESULTS
    if not path.is_file():
        data.missing.append(f"{RESULTS} is missing: no utility, ratio or pipeline provenance")
        return
    res = read_json(path, data)
    data.results = res
    data.synthetic = data.synthetic or bool(res.get("synthetic"))
    util = res.get("utility")
    if isinstance(util, dict) and util:
        for name, raw in util.items():
            view = _rate_or_note(raw, f"{RESULTS} utility[{name!r}]", data)
            if view is not None:
                data.utility[str(name)] = view
    else:
        data.missing.append(f"{RESULTS} has no 'utility'")
    ratio = res.get("ratio_xnn_over_vanilla")
    if isinstance(ratio, dict) and _finite(ratio.get("ratio")) is not None:
        data.ratio = ratio
    else:
        data.missing.append(f"{RESULTS} has no 'ratio_xnn_over_vanilla'")
    kb = res.get("key_binding")
    if isinstance(kb, dict):
        for name, raw in kb.items():
            view = RateView.parse(raw)
            if view is not None:
                data.key_binding[str(name)] = view


def _variant(d: dict) -> str:
    """Short description of what distinguishes one result from another of the same attack."""
    parts = []
    options = d.get("options")
    if isinstance(options, dict) and options:  # e.g. XNN-H's chaff, a one-token Vanilla+PE
        parts.append(", ".join(f"{k}={v}" for k, v in options.items()))
    if d.get("attack") == "alignment" and d.get("public"):
        rows = d.get("public_rows")
        parts.append(f"moments of {d['public']}" + (f" ({rows} rows)" if rows is not None else ""))
    elif d.get("aux"):
        parts.append(str(d["aux"]))
    if d.get("identifier"):
        parts.append(f"identifier {d['identifier']}")
    if d.get("gallery_kind") == "clean":
        parts.append("clean gallery (adversary's own photos)")
    return ", ".join(parts)


def bench_attack_results(payload: dict) -> list[AttackResult]:
    """The attack results a bench JSON holds (``methods`` of bench/leaked_pairs.py, one result each; ``methods``
    of bench/invariants.py, several results per method row; ``figures.results`` of bench/attacks.py), each read
    through ``AttackResult.from_dict`` (a ``ValueError`` names a bad one)."""
    figures = payload.get("figures")
    figures = figures if isinstance(figures, dict) else {}
    entries: list[Any] = []
    rows = payload.get("methods")
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and "attack" not in row:  # a method's row holding one result per attack
            entries += [v for v in row.values() if isinstance(v, dict) and "attack" in v]
        else:
            entries.append(row)
    if isinstance(figures.get("results"), dict):
        entries += list(figures["results"].values())
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(AttackResult.from_dict(entry))
        except ValueError as exc:
            raise ValueError(f"{payload.get('benchmark', 'bench')} result {i}: {exc}") from None
    return out


def _attack_file(path: Path, data: RunData) -> None:
    raw = read_json(path, data)
    name = path.name
    if "benchmark" in raw and "attack" not in raw:  # a bench result holding several attack results
        try:
            results = bench_attack_results(raw)
        except ValueError as exc:
            data.missing.append(f"attacks/{name}: {exc}; skipped")
            return
        if not results:
            data.missing.append(f"attacks/{name}: a {raw['benchmark']} bench result without attack results")
        for result in results:
            _attack_result(result, name, data)
        return
    try:  # the one on-disk format (AttackResult.to_dict); a file without a name is named by its file
        result = AttackResult.from_dict({"attack": path.stem.split("_")[0], **raw})
    except ValueError as exc:
        data.missing.append(f"attacks/{name}: {exc}; skipped")
        return
    _attack_result(result, name, data)


def _curve_points(d: dict, name: str, data: RunData) -> list[KPPoint]:
    """Known-plaintext ``points``, or the strongest estimator at each k of a leaked-pairs ``curve`` (a k where no
    estimator was determined has no point)."""
    if isinstance(d.get("curve"), list) and not isinstance(d.get("points"), list):
        raw = [p for p in d["curve"] if isinstance(p, dict) and str(p.get("attack", "")).startswith("strongest")]
    else:
        raw = d.get("points") or []
    points = []
    for p in raw:
        view = RateView.parse(p) if isinstance(p, dict) else None
        k = _int(p.get("k")) if isinstance(p, dict) else None
        if view is None or k is None:
            data.missing.append(f"attacks/{name}: a point without k or rate was skipped")
            continue
        points.append(KPPoint(k, view, _finite(p.get("permutation_accuracy")), _finite(p.get("matrix_rel_error"))))
    return sorted(points, key=lambda p: p.k)


def _attack_result(result: AttackResult, name: str, data: RunData) -> None:
    d = result.to_dict()
    attack = result.attack
    method = method_name(result.method)
    utility = RateView.parse(d.get("utility"))
    seconds = _finite(d.get("seconds"))
    data.attack_meta.append({"file": name, "attack": attack, "method": method, "seconds": seconds,
                             "config": scrub(d.get("config")), "command": d.get("command")})
    label = attack_registry.title(attack)
    if attack == "known_plaintext" or isinstance(d.get("points"), list) or isinstance(d.get("curve"), list):
        points = _curve_points(d, name, data)
        if not points:
            data.missing.append(f"attacks/{name}: no points")
            return
        chance = next((p.leakage.chance for p in points if p.leakage.chance is not None), None)
        identifier = str(d.get("identifier") or ("strongest estimator" if "curve" in d else "?"))
        curve = KPCurve(method, identifier, points, utility, chance, name, label)
        data.curves.append(curve)
        last = points[-1]
        data.attacks.append(AttackRow(method, label, f"{_variant(d)}, k = {last.k} (largest)".lstrip(", "),
                                      last.leakage, last.leakage.chance, utility, seconds, name))
        return
    view = RateView.parse(d)
    if view is None:
        data.missing.append(f"attacks/{name}: no leakage rate recorded")
        return
    variant = _variant(d)
    if attack == "alignment":
        variant = f"{variant}; inverted with estimated P, M".lstrip("; ")
    data.attacks.append(AttackRow(method, label, variant, view, view.chance, utility, seconds, name))
    whitened = RateView.parse(d.get("whitened_pooled"))
    if whitened is not None:
        data.attacks.append(AttackRow(method, label, f"{_variant(d)}; whitened pooled, no inversion".lstrip("; "),
                                      whitened, whitened.chance, utility, seconds, name))


def _load_attacks(data: RunData) -> None:
    folder = data.run_dir / ATTACKS
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        data.missing.append(f"{ATTACKS}/*.json is missing: no attack results (run `veil attack ... --json`)")
        return
    for path in files:
        _attack_file(path, data)
    data.attacks.sort(key=lambda r: (r.attack, r.method, r.variant))


def _bool(x: Any) -> bool | None:
    return x if isinstance(x, bool) else None


def _load_table2(data: RunData) -> None:
    path = data.run_dir / TABLE2
    if not path.is_file():
        data.missing.append(f"{TABLE2} is missing: Table 2 and Table 5 are omitted (made by bench/table2.py)")
        return
    t2 = read_json(path, data)
    rows = t2.get("rows")
    if isinstance(rows, list):
        data.table2 = []
        aux: list[str] = []
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                data.missing.append(f"{TABLE2} rows[{i}] is not an object; skipped")
                continue
            leak_raw = r.get("leakage")
            leak_raw = leak_raw if isinstance(leak_raw, dict) else {}
            leakage = {str(g): RateView.parse(v) for g, v in leak_raw.items()}
            aux += [g for g in leakage if g not in aux]
            utility = RateView.parse(r.get("utility"))
            chance = _finite(r.get("chance"))
            if chance is None and utility is not None:
                chance = utility.chance
            data.table2.append(Table2Row(str(r.get("method", "?")), utility, leakage, chance))
        data.table2_aux = sorted(aux, key=lambda g: (g not in ("aux_a", "aux_b"), g))
    else:
        data.missing.append(f"{TABLE2} has no 'rows': Table 2 omitted")
    abl = t2.get("ablations")
    if isinstance(abl, list):
        data.ablations = [Ablation(str(a.get("name", "?")), _bool(a.get("pretrained_extnet")), _bool(a.get("obfnet")),
                                   _bool(a.get("frozen_recnet")), RateView.parse(a.get("utility")))
                          for a in abl if isinstance(a, dict)]
    else:
        data.missing.append(f"{TABLE2} has no 'ablations': Table 5 omitted")
    data.table2_meta = {k: scrub(t2.get(k)) for k in ("environment", "seed", "wall_seconds", "command")
                        if t2.get(k) is not None}
    data.synthetic = data.synthetic or bool(t2.get("synthetic"))


def collect(run_dir: str | Path) -> RunData:
    """Read every summary file of ``run_dir``; absent ones become notes, corrupt ones errors."""
    run = Path(run_dir)
    if not run.is_dir():
        raise VeilError(f"run directory {run} does not exist or is not a directory")
    data = RunData(run_dir=run.resolve())
    _load_results(data)
    _load_table2(data)
    _load_attacks(data)
    if (run / "table4.json").is_file():
        table4 = read_json(run / "table4.json", data)
        if isinstance(table4.get("curve"), list) and isinstance(table4.get("verdict"), dict):
            data.xnnd_curve = table4
    return data
