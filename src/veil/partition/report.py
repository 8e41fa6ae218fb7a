"""Pictures of a plan: SSIM and enclave cost against split depth, and a grid of reconstructed victim images."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from veil.io import save_figure  # noqa: E402
from veil.partition.planner import Plan  # noqa: E402


def plot_plan(plan: Plan, path: str | Path) -> Path:
    """SSIM (mean with 95% CI, per attack) and enclave FLOP/parameter share against the split's depth."""
    path = Path(path)
    labels = [s.point.label for s in plan.splits]
    xs = list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(7, 4))
    kinds = list(plan.splits[0].attacks) if plan.splits else []
    for kind, marker in zip(kinds, "os^", strict=False):
        means = [s.attacks[kind].summary()["ssim"]["mean"] for s in plan.splits]
        cis = [s.attacks[kind].summary()["ssim"]["ci95"] for s in plan.splits]
        err = [[m - c[0] for m, c in zip(means, cis, strict=True)], [c[1] - m for m, c in zip(means, cis, strict=True)]]
        ax.errorbar(xs, means, yerr=err, marker=marker, capsize=3, label=f"SSIM, {kind} attack")
    ax.axhline(plan.max_ssim, color="red", ls="--", lw=1, label=f"bound {plan.max_ssim}")
    prior = plan.extra.get("prior_baseline")
    if prior:
        ax.axhline(prior["ssim_mean"], color="purple", ls=":", lw=1,
                   label=f"prior: mean aux image ({prior['ssim_mean']:.2f})")
    ax.set_ylabel("SSIM of reconstruction (victim images)")
    ax.set_ylim(0, 1)
    ax.set_xticks(xs, labels, rotation=30)
    ax.set_xlabel("split point (units before it run in the enclave)")
    ax2 = ax.twinx()
    ax2.plot(xs, [100 * s.flop_share for s in plan.splits], "k:", marker="d", label="enclave FLOP share %")
    ax2.plot(xs, [100 * s.param_share for s in plan.splits], color="gray", ls="-.", marker="x",
             label="enclave param share %")
    ax2.set_ylabel("enclave share of the model (%)")
    ax2.set_ylim(0, 100)
    if plan.choice is not None:
        ax.axvline(labels.index(plan.choice.point.label), color="green", lw=6, alpha=0.2)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
    ax.set_title(f"{plan.arch}: reconstruction vs enclave cost "
                 f"(choice: {plan.choice.point.label if plan.choice else 'all in enclave'})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=130)
    plt.close(fig)
    return path


def reconstruction_grid(plan: Plan, originals: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Row 0: the victim's real images; then one row per (split, attack) with its mean SSIM."""
    path = Path(path)
    k = min(len(originals), min(len(r.samples) for s in plan.splits for r in s.attacks.values()))
    rows: list[tuple[str, torch.Tensor]] = [("original (victim)", originals[:k].float() / 255.0
                                             if originals.dtype == torch.uint8 else originals[:k])]
    for s in plan.splits:
        for kind, r in s.attacks.items():
            rows.append((f"{s.point.label} {kind}\nSSIM {r.summary()['ssim']['mean']:.2f}", r.samples[:k]))
    fig, axes = plt.subplots(len(rows), k, figsize=(1.1 * k + 1.4, 1.1 * len(rows)), squeeze=False)
    for i, (label, imgs) in enumerate(rows):
        for j in range(k):
            ax = axes[i][j]
            ax.imshow(imgs[j].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title or f"{plan.arch}: victim images reconstructed from the exposed feature map", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
