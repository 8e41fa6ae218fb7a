"""``veil attack ...``: run an attack against a run directory's stores and print leakage beside chance.

The owner-side harness (``veil.evaluation.leakage_harness``) builds what the adversary would hold;
the attack itself (``veil.attacks``) never sees the key. ``veil attack list`` prints every attack of
the suite (``veil.attacks.registry``), including those other commands run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from veil.attacks import AttackParameterError, AttackRecNetConfig
from veil.cli.common import console, friendly
from veil.device import configure_threads, pick_device
from veil.errors import VeilError

app = typer.Typer(help="Privacy attacks: what an adversary learns of the owner's test persons.",
                  no_args_is_help=True)

RUN = typer.Option(..., "--run", help="Run directory made by `veil demo` (split.json, owner.key, stores).")
METHOD = typer.Option("xnn", help="Store to attack, by its obfuscation method (`veil methods`): xnn, xnnh, ... or "
                                   "none (Vanilla+PE, the sanity check; also 'vanilla').")
DATA = typer.Option(None, help="Face dataset (default: the one recorded in results.json).")
DEVICE = typer.Option(None, help="cpu, cuda (default: auto).")
JSON_OUT = typer.Option(None, "--json", help="Also write the result as JSON here.")
GALLERY = typer.Option("owner", help="owner: gallery = the owner's obfuscated test images (paper 5.2); clean: the "
                                     "adversary's own clean photos of the persons (paper 5.1).")


def _bad_value_is_user_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An attack's declared parameter error is the user's input at fault: report it like a VeilError.

    Only :class:`~veil.attacks.base.AttackParameterError`: any other ValueError is a bug in Veil and keeps
    its traceback, rather than being shown to the user as if they had mistyped an option.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AttackParameterError as exc:
            raise VeilError(str(exc)) from None

    return wrapper


def _harness(run: Path, data: Path | None, device: str | None):
    from veil.evaluation.leakage_harness import LeakageHarness

    configure_threads()
    return LeakageHarness(run, data, pick_device(device), log=lambda m: console.print(f"[dim]{m}[/]"))


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _row(table: Table, label: str, r: dict) -> None:
    table.add_row(label, _pct(r["rate"]), f"[{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}]", str(r["n"]),
                  _pct(r["chance"]))


IDENTIFIER_HELP = "pooled (no training, centred on the target set), pooled-uncentred, or recnet (trained on aux)."


def _table(title: str, first: str = "attack") -> Table:
    table = Table(title=title)
    for col in (first, "top-1 leakage", "95% CI", "n probes", "chance"):
        table.add_column(col, justify="left" if col == first else "right")
    return table


def _finish(table: Table, result: dict, json_out: Path | None) -> None:
    u = result.get("utility")
    if u:
        table.caption = f"owner's utility on the same probes: {_pct(u['rate'])} (n={u['n']})"
    console.print(table)
    if json_out:
        from veil.pipeline import write_json

        write_json(json_out, result)
        console.print(f"wrote {json_out}")


# Attacks whose runs live under another command (they need a partition, a client's generator, ...).
RUN_ELSEWHERE = {"reconstruction": "veil partition plan (--attacks cgan,regression)",
                 "tabular_decoder": "veil partition tabular",
                 "black_box": "veil xnnd attack", "noise_expectation": "library (veil.xnnd.harness)"}


@app.command("list")
@friendly
def list_attacks() -> None:
    """Every attack of the suite (one module each under veil/attacks/): what it holds, reports and takes."""
    import inspect

    from veil.attacks import registry

    table = Table(title="attacks (veil.attacks.registry)")
    for col in ("name", "title", "run with", "the adversary holds", "reports", "parameters"):
        table.add_column(col)
    commands = {c.name.replace("-", "_") for c in app.registered_commands if c.name and c.name != "list"}
    for name, cls in registry.attacks().items():
        declared = ", ".join(k if v is inspect.Parameter.empty else f"{k}={v!r}"
                             for k, v in registry.parameters(cls).items()) or "—"
        run_with = f"veil attack {name.replace('_', '-')}" if name in commands else RUN_ELSEWHERE.get(name, "library")
        table.add_row(name, cls.title, run_with, "; ".join(cls.holdings), cls.reports, declared)
    console.print(table)


def _recnet_cfg(epochs: int, seed: int) -> AttackRecNetConfig:
    return AttackRecNetConfig(epochs=epochs, seed=seed)


def _ks(k: str) -> list[int]:
    """``--k``: numbers of leaked pairs, comma-separated."""
    try:
        return [int(v) for v in k.split(",") if v.strip()]
    except ValueError:
        raise VeilError(f"--k must be comma-separated integers, got {k!r}") from None


@app.command("expectation")
@friendly
@_bad_value_is_user_error
def expectation(run: Path = RUN, method: str = METHOD,
                aux: str = typer.Option("aux_a", help="Adversary's auxiliary identity group: aux_a or aux_b."),
                epochs: int = typer.Option(20, help="Expectation-RecNet training epochs."),
                seed: int = typer.Option(0, help="Seed of the public random obfuscations and of training."),
                gallery: str = GALLERY, data: Path = DATA, device: str = DEVICE, json_out: Path = JSON_OUT) -> None:
    """Expectation attack (paper 5.2): RecNet trained under fresh random XNN parameters every batch."""
    r = _harness(run, data, device).expectation(method, aux, _recnet_cfg(epochs, seed), seed, gallery).to_dict()
    table = _table(f"expectation attack on {method} ({aux}, {r['aux_identities']} identities, {gallery} gallery)")
    _row(table, "expectation", r)
    _finish(table, r, json_out)


@app.command("known-plaintext")
@friendly
@_bad_value_is_user_error
def known_plaintext(run: Path = RUN, method: str = METHOD,
                    k: str = typer.Option("0,1,2,4,8,16,32,64", help="Numbers of leaked pairs, comma-separated."),
                    identifier: str = typer.Option("pooled", help=IDENTIFIER_HELP),
                    aux: str = typer.Option("aux_a", help="Auxiliary group for the recnet identifier."),
                    epochs: int = typer.Option(20, help="Identifier RecNet epochs (recnet only)."),
                    seed: int = typer.Option(0, help="Which owner images leak, and training seed."),
                    data: Path = DATA, device: str = DEVICE, json_out: Path = JSON_OUT) -> None:
    """Known-plaintext: estimate P and M from k leaked pairs, invert, identify; one row per k."""
    ks = _ks(k)
    harness = _harness(run, data, device)
    r = harness.known_plaintext(method, ks, identifier, aux, _recnet_cfg(epochs, seed), seed).to_dict()
    table = _table(f"known-plaintext attack on {method} ({identifier} identifier)", "k pairs")
    for p in r["points"]:
        estimate = (f" (P {100 * p['permutation_accuracy']:.0f}%, M err {p['matrix_rel_error']:.2f})"
                    if "permutation_accuracy" in p else "")
        _row(table, f"{p['k']}{estimate}", p)
    _finish(table, r, json_out)


@app.command("leaked-pairs")
@friendly
@_bad_value_is_user_error
def leaked_pairs(run: Path = RUN, method: str = METHOD,
                 k: str = typer.Option("0,1,4,16,64,256,1024", help="Numbers of leaked pairs, comma-separated."),
                 seed: int = typer.Option(0, help="Which owner images leak."),
                 data: Path = DATA, device: str = DEVICE, json_out: Path = JSON_OUT) -> None:
    """Leaked pairs vs a clean gallery (issue 16): structured, ridge, learned and cloud-RecNet-bridge estimators."""
    ks = _ks(k)
    r = _harness(run, data, device).leaked_pairs_attack(method, ks, seed=seed).to_dict()
    table = _table(f"leaked pairs vs clean gallery on {method}", "k pairs / estimator")
    for p in r["curve"]:
        if p["rate"] is None:
            table.add_row(f"{p['k']} {p['attack']}", "n.d.", p["note"], "", _pct(p["chance"]))
        else:
            _row(table, f"{p['k']} {p['attack']}", p)
    _finish(table, r, json_out)


@app.command("alignment")
@friendly
@_bad_value_is_user_error
def alignment(run: Path = RUN, method: str = METHOD,
              aux: str = typer.Option("aux_a", help="Adversary's public images: an aux group."),
              identifier: str = typer.Option("pooled", help=IDENTIFIER_HELP),
              axes: int = typer.Option(4, help="Principal axes per position used as rotation anchors."),
              max_store_rows: int = typer.Option(0, help="Use at most this many store rows (0: all)."),
              public: str = typer.Option(None, help="Split group of the adversary's unlabelled public images for "
                                                    "the moments (default: the --aux group), e.g. public."),
              max_public: int = typer.Option(0, help="At most this many persons of --public (0: all)."),
              epochs: int = typer.Option(20, help="Identifier RecNet epochs (recnet only)."),
              seed: int = typer.Option(0), data: Path = DATA, device: str = DEVICE,
              json_out: Path = JSON_OUT) -> None:
    """Distribution alignment, no pairs: moments of the store vs public ExtNet tokens, invert, identify."""
    r = _harness(run, data, device).alignment(method, aux, identifier, axes, max_store_rows or None,
                                              _recnet_cfg(epochs, seed), public, max_public or None).to_dict()
    estimate = (f" (P {100 * r['permutation_accuracy']:.0f}% right, M rel. error {r['matrix_rel_error']:.2f})"
                if "permutation_accuracy" in r else "")
    table = _table(f"alignment attack on {method}, moments of {r['public_rows']} public rows{estimate}")
    _row(table, f"invert + {identifier}", r)
    _row(table, "whitened, pooled (no inversion)", {**r["whitened_pooled"]})
    _finish(table, r, json_out)


@app.command("cloud-model")
@friendly
@_bad_value_is_user_error
def cloud_model(run: Path = RUN, method: str = METHOD, gallery: str = GALLERY, data: Path = DATA,
                device: str = DEVICE, json_out: Path = JSON_OUT) -> None:
    """The cloud's own RecNet on the owner's obfuscated probes, against the chosen gallery (no attack effort)."""
    r = _harness(run, data, device).cloud_model(method, gallery).to_dict()
    table = _table(f"cloud's own RecNet on {method} features, {gallery} gallery")
    _row(table, "cloud RecNet", r)
    _finish(table, r, json_out)
