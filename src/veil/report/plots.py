"""Figures for the report, drawn with matplotlib's Agg canvas and returned as PNG data URIs.

Why data URIs: the page must be one self-contained file (no external URLs), so it can be mailed or
archived with the run. Why ``Figure`` + ``FigureCanvasAgg`` instead of ``pyplot``: no global backend
or figure state is touched, so building a report inside another program (a notebook, a test) is safe.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from veil.report.collect import KPCurve, RateView

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h"]


def to_data_uri(fig: Figure, dpi: int = 110) -> str:
    """Render a figure to a base64 PNG data URI (the only form the page embeds images in)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class TradeoffPoint:
    """A (utility, leakage) pair measured on the same probes, for the utility-vs-leakage plot."""

    method: str
    label: str
    utility: RateView
    leakage: RateView


def _err(view: RateView) -> tuple[list[float], list[float]]:
    rate = view.rate or 0.0
    lo = view.lo if view.lo is not None else rate
    hi = view.hi if view.hi is not None else rate
    return [100 * max(0.0, rate - lo)], [100 * max(0.0, hi - rate)]


def tradeoff_plot(points: list[TradeoffPoint], chance: float | None) -> str | None:
    """Leakage (y) against utility (x), 95% CIs as error bars, chance and ``leakage = utility`` lines.

    Log-log axes: leakage spans chance (a fraction of a percent) to above utility, and a point a few
    times above chance must stay distinguishable from chance. Protection shows as points far below the
    diagonal, down towards the chance line, at a utility close to the unprotected method's.
    """
    points = [p for p in points if p.utility.rate and p.leakage.rate is not None]
    if not points:
        return None
    fig = Figure(figsize=(9.0, 7.0))
    ax = fig.add_subplot(1, 1, 1)
    methods = list(dict.fromkeys(p.method for p in points))
    labels = list(dict.fromkeys(p.label for p in points))
    values = [chance or 0.0]
    for p in points:
        values += [v for v in (p.utility.rate, p.leakage.rate, p.utility.lo, p.utility.hi, p.leakage.lo,
                               p.leakage.hi) if v]
    positive = [100 * v for v in values if v > 0]
    low, high = min(positive) / 1.6, min(100.0, max(positive) * 1.6)
    for p in points:
        colour = PALETTE[methods.index(p.method) % len(PALETTE)]
        marker = MARKERS[labels.index(p.label) % len(MARKERS)]
        y = max(100 * (p.leakage.rate or 0.0), low)  # a zero rate sits on the bottom edge
        ax.errorbar([100 * (p.utility.rate or 0.0)], [y], xerr=_err(p.utility), yerr=_err(p.leakage), fmt=marker,
                    color=colour, ms=7, mfc=colour if p.label.startswith("Table 2") else "white", capsize=3, lw=1,
                    label=f"{p.method} · {p.label}")
    ax.plot([low, high], [low, high], ls=":", color="#888", lw=1, label="leakage = utility")
    if chance is not None and chance > 0:
        ax.axhline(100 * chance, ls="--", color="#444", lw=1, label=f"chance ({100 * chance:.2f}%)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if low <= t <= high]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(_PercentFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("utility: owner's top-1 identification (%, log)")
    ax.set_ylabel("leakage: adversary's top-1 on the same probes (%, log)")
    ax.set_title("Utility vs identity leakage (95% CIs)")
    ax.grid(alpha=0.3, which="both")
    ax.set_aspect("equal")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, frameon=False, ncol=2)
    return to_data_uri(fig)


class _PercentFormatter(FuncFormatter):
    """Plain numbers (0.5, 2, 20) on log axes instead of powers of ten."""

    def __init__(self) -> None:
        super().__init__(lambda v, _pos: f"{v:g}")


def known_plaintext_plot(curves: list[KPCurve], utility: RateView | None) -> str | None:
    """Leakage over k leaked pairs (left) and how much of the key the pairs give away (right)."""
    if not curves:
        return None
    fig = Figure(figsize=(11.0, 4.2))
    ax, kx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, c in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        ks = [p.k for p in c.points]
        rates = [100 * (p.leakage.rate or 0.0) for p in c.points]
        lo = [100 * (p.leakage.lo if p.leakage.lo is not None else (p.leakage.rate or 0.0)) for p in c.points]
        hi = [100 * (p.leakage.hi if p.leakage.hi is not None else (p.leakage.rate or 0.0)) for p in c.points]
        ax.plot(ks, rates, marker=MARKERS[i % len(MARKERS)], color=colour,
                label=f"{c.method}, identifier {c.identifier}")
        ax.fill_between(ks, lo, hi, color=colour, alpha=0.18, lw=0)
    _key_panel(kx, next((c for c in curves if any(p.matrix_rel_error or p.permutation_accuracy for p in c.points)),
                        curves[0]))
    util = utility or next((c.utility for c in curves if c.utility is not None), None)
    if util is not None and util.rate is not None:
        ax.axhline(100 * util.rate, color="#9467bd", ls="-.", lw=1.2, label=f"owner's utility ({100 * util.rate:.2f}%)")
    chance = next((c.chance for c in curves if c.chance is not None), None)
    if chance is not None:
        ax.axhline(100 * chance, ls="--", color="#444", lw=1, label=f"chance ({100 * chance:.2f}%)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.3)
    ax.set_xlabel("k leaked (clean, obfuscated) pairs")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("leakage top-1 (%)")
    ax.set_title("Known-plaintext attack: leakage over k (95% CI bands)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)


def _key_panel(ax: Axes, curve: KPCurve) -> None:
    """Matrix error (log, left axis) and permutation accuracy (right axis) over k, where recorded."""
    err = [(p.k, p.matrix_rel_error) for p in curve.points if p.k > 0 and p.matrix_rel_error]
    acc = [(p.k, p.permutation_accuracy) for p in curve.points if p.k > 0 and p.permutation_accuracy is not None]
    if not err and not acc:
        ax.set_visible(False)
        return
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k leaked pairs (k > 0)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title("How much of the key the pairs give away (scored by the owner)", fontsize=10)
    handles = []
    if err:
        handles += ax.plot([e[0] for e in err], [e[1] for e in err], marker="o", color="#d62728",
                           label="relative matrix error ‖M̂ − M‖ / ‖M‖ (left, log)")
        ax.set_yscale("log")
        ax.set_ylabel("relative matrix error")
    if acc:
        right = ax.twinx()
        handles += right.plot([a[0] for a in acc], [100 * a[1] for a in acc], marker="s", color="#2ca02c",
                              label="token permutation recovered (right, %)")
        right.set_ylim(-5, 105)
        right.set_ylabel("permutation recovered (%)")
    ax.legend(handles=handles, fontsize=8, loc="center left")


def xnnd_curve_plot(table4: dict | None) -> str | None:
    """XNN-d's privacy-utility curve (utility vs strongest-attack ASR), drawn by ``veil.xnnd.table4``."""
    if not table4 or not table4.get("curve"):
        return None
    from veil.xnnd.table4 import draw_curve

    fig = Figure(figsize=(6.4, 4.6))
    draw_curve(fig.add_subplot(1, 1, 1), table4)
    return to_data_uri(fig)
