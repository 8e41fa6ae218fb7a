"""The face pipeline measured: alignment cost, the cache, and what aligned chips do for dlib's network.

Figures (bench/results/faces.json, docs/faces.md):
- ms per image on ONE core for the HOG path (decode, detect on the crop upsampled once, 5 landmarks, chip),
  and for the CNN detector on a few images;
- all of the dataset (LFW: 10,821 images) aligned with every core from an EMPTY cache, then again from the
  cache (the owner's geometry cache, VEIL_CACHE/faces);
- dlib's face ResNet used whole (the teacher) on the owner-test persons of the default split, on aligned
  chips (no-face policy skip, and whole-image) and on whole crops resized to 150 px (--align none), each a
  top-1 with n, 95% interval and chance.

Run: OMP_NUM_THREADS=1 python bench/faces.py   (about 6 minutes on 2 idle cores)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch  # noqa: E402
from _common import HERE, Envelope, pct, publish

from veil.data.faceset import count_images, list_identity_files  # noqa: E402
from veil.data.splits import SplitSpec, make_split  # noqa: E402
from veil.device import configure_threads  # noqa: E402
from veil.evaluation.teacher import teacher_whole  # noqa: E402
from veil.faces.bulk import FaceAligner  # noqa: E402
from veil.faces.config import FaceConfig, face_config  # noqa: E402
from veil.faces.image import decode_rgb, read_bytes  # noqa: E402
from veil.faces.pipeline import FacePipeline  # noqa: E402
from veil.paths import resolve_data  # noqa: E402

CHUNK = 1024


def per_core(files: list[Path], config: FaceConfig) -> dict:
    """One process, no cache: decode + detect + 5 landmarks + 150 px chip, per image."""
    pipeline = FacePipeline(config)
    pipeline.geometry(decode_rgb(read_bytes(files[0])))  # models loaded outside the clock
    t = time.perf_counter()
    found = 0
    for f in files:
        image = decode_rgb(read_bytes(f))
        found += bool(pipeline.chips(image, pipeline.geometry(image), 150))
    seconds = time.perf_counter() - t
    return {"images": len(files), "faces_found": found, "ms_per_image": round(1000 * seconds / len(files), 2),
            "loadavg_after": os.getloadavg()}


def align_all(files: list[Path], config: FaceConfig, workers: int | None) -> dict:
    """Every file aligned with a pool over every core (chunks keep memory flat); the cache fills as it goes."""
    t = time.perf_counter()
    with FaceAligner(config, 150, workers) as aligner:
        for i in range(0, len(files), CHUNK):
            aligner.align(files[i:i + CHUNK])
        report, used = aligner.report, aligner.workers
    return {"images": report.images, "faces_found": report.faces_found, "without_face": len(report.no_face),
            "several_faces": report.several_faces, "geometry_computed": report.computed,
            "geometry_cached": report.cached, "workers": used, "seconds": round(time.perf_counter() - t, 2),
            "loadavg_after": os.getloadavg()}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="Dataset folder (default: ../shared/data/lfw112).")
    ap.add_argument("--workers", type=int, default=None, help="Alignment processes (default: every core).")
    ap.add_argument("--per-core-images", type=int, default=300, help="Images timed in one process.")
    ap.add_argument("--cnn-images", type=int, default=20, help="Images timed with the CNN detector.")
    ap.add_argument("--no-teacher", action="store_true", help="Skip the teacher-whole accuracy figures.")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "faces.json")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    # An empty cache, as on a fresh machine (veil.paths.cache_dir reads it at each call, so setting it here works).
    os.environ["VEIL_CACHE"] = tempfile.mkdtemp(prefix="veil-faces-bench-")
    configure_threads()
    data = resolve_data(args.data)
    env = Envelope("faces", seed=0, device="cpu")
    counts = count_images(data)
    files, _ = list_identity_files(data, sorted(counts))
    sample = files[::max(1, len(files) // args.per_core_images)][:args.per_core_images]
    figures: dict = {"data": str(data), "images": len(files), "identities": len(counts),
                     "loadavg_start": os.getloadavg(), "cpu_count": len(os.sched_getaffinity(0))}
    print(f"{len(files)} images; per-core timing on {len(sample)}", file=sys.stderr)
    figures["per_core_hog"] = per_core(sample, FaceConfig())
    figures["per_core_cnn"] = per_core(sample[:args.cnn_images], FaceConfig(detector="cnn"))
    print(f"per core: hog {figures['per_core_hog']['ms_per_image']} ms, cnn "
          f"{figures['per_core_cnn']['ms_per_image']} ms", file=sys.stderr)
    figures["align_all_empty_cache"] = align_all(files, FaceConfig(), args.workers)
    figures["align_all_cached"] = align_all(files, FaceConfig(), args.workers)
    print(f"all: {figures['align_all_empty_cache']['seconds']}s empty cache, "
          f"{figures['align_all_cached']['seconds']}s cached", file=sys.stderr)
    if not args.no_teacher:
        split = make_split(counts, SplitSpec(), dataset=str(data))
        teacher = {}
        for name, align, policy in (("aligned, no-face skip", "hog", "skip"),
                                    ("aligned, no-face whole-image", "hog", "whole-image"),
                                    ("resized whole crop (--align none)", "none", "skip")):
            t = time.perf_counter()
            r = teacher_whole(data, split, torch.device("cpu"), align=face_config(align, policy))
            r["seconds"] = round(time.perf_counter() - t, 1)
            r["preprocess"] = {k: v for k, v in r["preprocess"].items() if k not in ("skipped", "whole_image")}
            teacher[name] = r
            print(f"teacher whole, {name}: {pct(r)} n={r['n']}", file=sys.stderr)
        figures["teacher_whole_owner_test"] = teacher
    figures["loadavg_end"] = os.getloadavg()
    publish(args.out, env.finish(figures), markdown(figures))


def load(figure: dict) -> str:
    """The 1-minute load average when a timing ended (the machine is shared: timings scale with it)."""
    return f"{figure['loadavg_after'][0]:.1f}"


def markdown(f: dict) -> str:
    h, c = f["per_core_hog"], f["per_core_cnn"]
    e, k = f["align_all_empty_cache"], f["align_all_cached"]
    lines = ["# Face pipeline (bench/faces.py)", "",
             f"{f['images']} images of {f['identities']} identities ({f['data']}); {f['cpu_count']} cores; "
             f"load average at start {f['loadavg_start'][0]:.1f}.", "",
             "| what | figure |", "|---|---|",
             f"| HOG path, one core (decode, detect upsampled once, 5 landmarks, 150 px chip) | "
             f"{h['ms_per_image']} ms/image ({h['faces_found']}/{h['images']} faces; load {load(h)}) |",
             f"| CNN detector path, one core | {c['ms_per_image']} ms/image ({c['faces_found']}/{c['images']}; "
             f"load {load(c)}) |",
             f"| all images, {e['workers']} processes, empty cache | {e['seconds']} s "
             f"({e['faces_found']} faces, {e['without_face']} without; load {load(e)}) |",
             f"| all images, {k['workers']} processes, from the cache | {k['seconds']} s (load {load(k)}) |"]
    for name, r in (f.get("teacher_whole_owner_test") or {}).items():
        lines.append(f"| dlib's network whole, owner-test persons, {name} | {pct(r)} (n = {r['n']}, "
                     f"gallery {r['gallery']}, chance {100 * r['chance']:.2f}%) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
