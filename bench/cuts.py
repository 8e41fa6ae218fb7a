"""Benchmark: where to cut dlib's face ResNet into ExtNet (owner) and what the cloud's RecNet learns.

    python bench/cuts.py [--cuts 2,3,4,5] [--epochs 20] [--data PATH]

For each cut, the real XNN flow (``veil.demo.run_xnn``: store, cloud training with the demo preset's recipe,
owner evaluation) on LFW,
Vanilla+PE and XNN, the ratio with its bootstrap interval, and N (tokens) beside every row: a cut with
few tokens leaves the permutation almost nothing to hide. Also the teacher whole (dlib end to end).
Writes bench/results/cuts.json (the common bench envelope, ``veil.bench``) and cuts.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from _common import HERE, Envelope, pct, publish, run_conditions  # also puts src/ on sys.path

from veil.attacks.leakage import Target, identity_leakage, pooled_embedder  # noqa: E402
from veil.data.splits import Split  # noqa: E402
from veil.demo import run_xnn  # noqa: E402
from veil.device import configure_threads, pick_device  # noqa: E402
from veil.evaluation.teacher import teacher_whole  # noqa: E402
from veil.models.dlib_resnet import DlibExtNet, tokens_to_map  # noqa: E402
from veil.models.extractor import load_extnet  # noqa: E402
from veil.models.memo import MemoExtNet  # noqa: E402
from veil.paths import default_data  # noqa: E402
from veil.pipeline import load_group  # noqa: E402
from veil.presets import PRESETS  # noqa: E402
from veil.train.cloud import CloudTrainConfig  # noqa: E402


class FromShallowerCut(torch.nn.Module):
    """The cut-c ExtNet computed from a (memoised) shallower cut's tokens: same weights, same digest, same output.

    Every cut shares the stem and first levels, most of the network's cost at 150 px, so the benchmark runs
    them once per image instead of once per cut.
    """

    def __init__(self, ext: DlibExtNet, shallow: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.cfg = ext, ext.cfg
        self._shallow = [shallow]  # not a submodule: the state (and digest) is the cut-c ExtNet's own

    @property
    def token_shape(self) -> tuple[int, int]:
        return self.inner.token_shape

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        shallow = self._shallow[0]
        x = tokens_to_map(shallow(images))
        for level in self.inner.levels[shallow.cfg.cut:]:  # type: ignore[union-attr,index]
            x = level(x)
        return x.flatten(2).transpose(1, 2).contiguous()


@torch.no_grad()
def pooled_cosine(ext: torch.nn.Module, data: Path, split: Split, image_size: int, batch: int = 128) -> dict:
    """The key-free floor: centred mean of the cut's tokens (image + mirror), cosine, on the owner's probes.

    Mean pooling ignores the permutation and cosine ignores the orthogonal map, so this is also what anyone
    holding XNN's obfuscated test features gets with no key and no training; the cloud's RecNet must beat it.
    """
    faces = load_group(data, split, "owner_test", image_size)
    views = [torch.cat([ext(imgs[i:i + batch]) for i in range(0, len(imgs), batch)])
             for imgs in (faces.images, faces.images.flip(-1))]
    target = Target.from_features(views[0], faces.labels, split.gallery_seed, views[1])
    result = identity_leakage(target, pooled_embedder(torch.cat(views).float().mean(dim=(0, 1))))
    return result.as_dict()


def dlib_extnet(cut: int) -> DlibExtNet:
    ext = load_extnet(f"dlib-resnet-cut{cut}")
    if not isinstance(ext, DlibExtNet):
        raise TypeError(f"dlib-resnet-cut{cut} is not a DlibExtNet")
    return ext


def markdown(result: dict) -> str:
    fig = result["figures"]
    t = fig["teacher_whole"]
    lines = [f"Teacher whole (dlib end to end, no cloud): {pct(t)}, n = {t['n']}, chance {100 * t['chance']:.2f}%",
             "", "| cut | tokens N x dim | Vanilla+PE | XNN | XNN / Vanilla+PE | key-free pooled cosine "
             "| XNN, wrong key | wall |", "|---|---|---|---|---|---|---|---|"]
    for row in fig["cuts"]:
        u, r = row["utility"], row["ratio_xnn_over_vanilla"]
        lines.append(f"| {row['cut']} | {row['tokens']} x {row['dim']} | {pct(u['Vanilla+PE'])} | {pct(u['XNN'])} | "
                     f"{100 * r['ratio']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] | "
                     f"{pct(row['pooled_cosine'])} | {pct(u['XNN, wrong key'])} | {row['wall_seconds'] / 60:.1f} min |")
    n = fig["cuts"][0]["utility"]["XNN"]["n"] if fig["cuts"] else 0
    cloud = fig.get("cloud") or {}
    recipe = ("closed form (shrinkage LDA chosen by cross-validation over store identities)"
              if cloud.get("fit") == "lda" else f"{fig['epochs']} epochs")
    lines += ["", f"n = {n} probes of 300 unseen persons, one gallery image each (chance 0.33%); cloud RecNet "
              f"{recipe}; seed {result['seed']}; {result['environment']['device']}, "
              f"{result['environment']['cpu_threads']} threads; wall {result['wall_seconds'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", default="2,3,4,5")
    parser.add_argument("--epochs", type=int, default=None, help="cloud epochs (default: the demo preset's)")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-cuts"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cuts.json")
    args = parser.parse_args()
    configure_threads()
    device = pick_device(args.device)
    data = args.data or default_data()
    base = PRESETS["demo"]
    envelope = Envelope("cuts", seed=base.split.seed, device=device)
    conditions = run_conditions(data)
    epochs = args.epochs or base.cloud.epochs
    cuts = [int(c) for c in args.cuts.split(",")]
    shallow = MemoExtNet(load_extnet(f"dlib-resnet-cut{min(cuts)}"))  # shared by every cut: computed once
    rows = []
    for cut in cuts:
        preset = replace(base, name=f"cut{cut}", extractor_name=f"dlib-resnet-cut{cut}",
                         cloud=CloudTrainConfig(**{**base.cloud.__dict__, "epochs": epochs}))
        ext = MemoExtNet(FromShallowerCut(dlib_extnet(cut), shallow))
        s = run_xnn(data, args.runs / f"cut{cut}", preset, device, show_progress=sys.stderr.isatty(), attacks=False,
                    ext=ext)
        tokens, dim = s["extractor_info"]["token_shape"]
        pooled = pooled_cosine(ext, data, Split.load(args.runs / f"cut{cut}" / "split.json"),
                               s["extractor_info"]["img_size"])
        rows.append({"cut": cut, "tokens": tokens, "dim": dim, "utility": s["utility"], "pooled_cosine": pooled,
                     "ratio_xnn_over_vanilla": s["ratio_xnn_over_vanilla"], "extractor": s["extractor_info"],
                     "timings": s["timings"], "wall_seconds": s["wall_seconds"]})
        print(f"cut {cut}: Vanilla+PE {pct(s['utility']['Vanilla+PE'])}, XNN {pct(s['utility']['XNN'])}, "
              f"pooled cosine {pct(pooled)}", flush=True)
    teacher = teacher_whole(data, Split.load(args.runs / f"cut{rows[0]['cut']}" / "split.json"), device)
    result = envelope.finish({"data": str(data), "epochs": epochs, "cloud": base.cloud.__dict__ | {"epochs": epochs},
                              "teacher_whole": teacher, "cuts": rows},
                             **conditions, load_average_end=list(os.getloadavg()))
    publish(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
