"""Aligning many files: every core (a process pool, dlib's models loaded once per worker), the owner's cache.

Workers read the file, hash it, look its geometry up in the cache (read-only), detect only on a miss, and
return the chip; the parent writes new geometries to the cache and counts what happened to every image
(:class:`AlignReport`: images, faces found, images without a face - listed, used whole, several faces).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from veil.faces.cache import AlignmentCache, image_digest
from veil.faces.config import FaceConfig
from veil.faces.geometry import Geometry
from veil.faces.image import decode_rgb, read_bytes
from veil.faces.pipeline import FacePipeline

POOL_MIN_FILES = 48  # fewer files are aligned in-process: starting workers would cost more than it saves


@dataclass
class AlignReport:
    """What alignment did to a set of images: the one summary line and the run JSON's ``preprocess`` entry."""

    images: int = 0
    no_face: list[str] = field(default_factory=list)
    whole_image: list[str] = field(default_factory=list)
    several_faces: int = 0
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0

    @property
    def faces_found(self) -> int:
        return self.images - len(self.no_face) - len(self.whole_image)

    def add(self, other: AlignReport) -> None:
        self.images += other.images
        self.no_face += other.no_face
        self.whole_image += other.whole_image
        self.several_faces += other.several_faces
        self.computed += other.computed
        self.cached += other.cached
        self.seconds += other.seconds

    def as_dict(self, config: FaceConfig, chip_size: int, root: str | Path | None = None) -> dict:
        """The record; file names relative to ``root`` when given (a dataset's names, not this machine's)."""
        def names(paths: list[str]) -> list[str]:
            return sorted(_relative(p, root) for p in paths)

        return {"align": config.describe(chip_size), "images": self.images, "faces_found": self.faces_found,
                "without_face": len(self.no_face), "skipped": names(self.no_face),
                "whole_image": names(self.whole_image), "several_faces": self.several_faces,
                "geometry_computed": self.computed, "geometry_cached": self.cached,
                "seconds": round(self.seconds, 3)}


def summary_line(record: dict) -> str:
    """The one line a bulk command prints from a record (:meth:`AlignReport.as_dict` or a no-alignment note)."""
    if "images" not in record:
        return f"alignment {record.get('align', 'none')}"
    line = f"{record['images']} images, {record['without_face']} without a face"
    if record["whole_image"]:
        line += f" (the whole image used as the face for {len(record['whole_image'])})"
    return line + f"; {record['several_faces']} with several faces (largest kept)"


def _relative(path: str, root: str | Path | None) -> str:
    if root is None:
        return path
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


@dataclass
class Aligned:
    """Chips (k, size, size, 3) uint8 of the images kept, ``kept`` their indices in the input list."""

    chips: np.ndarray
    kept: list[int]
    report: AlignReport


WorkerState = tuple[FacePipeline, AlignmentCache, int]
_worker: WorkerState | None = None  # a pool worker's models, read-only cache connection and chip size


def _init_worker(config: FaceConfig, cache_path: str, size: int) -> None:
    global _worker
    _worker = (FacePipeline(config), AlignmentCache(cache_path, readonly=True), size)


def _align_one(path: str) -> tuple[str, Geometry, bool, list[np.ndarray]]:
    assert _worker is not None
    return _align_with(_worker, path)


def _align_with(state: WorkerState, path: str) -> tuple[str, Geometry, bool, list[np.ndarray]]:
    """(digest, geometry, computed now?, chips by policy) of one file, in a worker or in-process."""
    pipeline, cache, size = state
    data = read_bytes(path)
    digest = image_digest(data)
    image = decode_rgb(data, path)
    geometry = cache.get(digest, pipeline.version)
    computed = geometry is None
    if geometry is None:
        geometry = pipeline.geometry(image)
    return digest, geometry, computed, [a.chip for a in pipeline.chips(image, geometry, size)]


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a clean server process that has imported this module only (dlib, numpy, PIL: never
    torch, never the caller's script), started once per process: a fresh pool costs a fork, not an interpreter.
    Where there is no forkserver (not POSIX), spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


class FaceAligner:
    """Aligns lists of files with a pool kept across calls (one ``with`` block per command)."""

    def __init__(self, config: FaceConfig, size: int, workers: int | None = None,
                 cache_path: str | Path | None = None) -> None:
        self.config = config
        self.size = size
        self.workers = workers or len(os.sched_getaffinity(0))
        self.cache = AlignmentCache(cache_path)
        self._pool: ProcessPoolExecutor | None = None
        self._local: WorkerState | None = None
        self.report = AlignReport()

    def _run(self, paths: list[str]):
        if len(paths) >= POOL_MIN_FILES and self.workers > 1:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, _worker_context(),
                                                 initializer=_init_worker,
                                                 initargs=(self.config, str(self.cache.path), self.size))
            return self._pool.map(_align_one, paths, chunksize=max(1, min(32, len(paths) // (4 * self.workers))))
        if self._local is None:
            self._local = (FacePipeline(self.config), self.cache, self.size)
        return map(functools.partial(_align_with, self._local), paths)

    def align(self, paths: Sequence[str | Path]) -> Aligned:
        """Chips of ``paths`` under the policy; images without a face are counted, listed and left out."""
        t = time.time()
        report = AlignReport(images=len(paths))
        chips: list[np.ndarray] = []
        kept: list[int] = []
        new: list[tuple[str, str, Geometry]] = []
        version = self.config.version
        for i, (path, (digest, geometry, computed, found)) in enumerate(
                zip(paths, self._run([str(p) for p in paths]), strict=True)):
            if computed:
                new.append((digest, version, geometry))
                report.computed += 1
            else:
                report.cached += 1
            report.several_faces += len(geometry.faces) > 1
            if not found:
                report.no_face.append(str(path))
                continue
            if not geometry.faces:
                report.whole_image.append(str(path))
            chips.append(found[0])
            kept.append(i)
        if new:
            self.cache.put_many(new)
        report.seconds = time.time() - t
        self.report.add(report)
        stacked = np.stack(chips) if chips else np.zeros((0, self.size, self.size, 3), np.uint8)
        return Aligned(stacked, kept, report)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.cache.close()

    def __enter__(self) -> FaceAligner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def align_arrays(images: np.ndarray, config: FaceConfig, size: int, names: Sequence[str] | None = None) -> Aligned:
    """Chips of in-memory RGB images (n, H, W, 3) uint8, e.g. an ``.npz`` dataset's, under the same policy as
    files: one process and no geometry cache (the cache is keyed by a file's digest), ``names`` (default ``#i``)
    in the report."""
    t = time.time()
    pipeline = FacePipeline(config)
    names = list(names) if names is not None else [f"#{i}" for i in range(len(images))]
    report = AlignReport(images=len(images))
    chips: list[np.ndarray] = []
    kept: list[int] = []
    for i, array in enumerate(images):
        image = np.ascontiguousarray(array, dtype=np.uint8)  # dlib takes only C-contiguous uint8 arrays
        geometry = pipeline.geometry(image)
        report.computed += 1
        report.several_faces += len(geometry.faces) > 1
        found = pipeline.chips(image, geometry, size)
        if not found:
            report.no_face.append(names[i])
            continue
        if not geometry.faces:
            report.whole_image.append(names[i])
        chips.append(found[0].chip)
        kept.append(i)
    report.seconds = time.time() - t
    stacked = np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8)
    return Aligned(stacked, kept, report)


def align_files(paths: Sequence[str | Path], config: FaceConfig, size: int, workers: int | None = None) -> Aligned:
    """One-shot :meth:`FaceAligner.align`."""
    with FaceAligner(config, size, workers) as aligner:
        return aligner.align(paths)
