"""``veil data align SRC --out DST``: a folder of photos aligned once into a folder of chips (PNG, lossless).

For users who want files (another tool, a look at what the detector did): DST keeps SRC's relative names
(identity sub-folders included) and gets :data:`~veil.faces.config.ALIGNED_MARKER` with the settings and
the images without a face, so Veil's loaders take DST as it is.
"""

from __future__ import annotations

import io as _bytes_io
import time
from pathlib import Path

from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from veil import io
from veil.data.faceset import IMAGE_SUFFIXES
from veil.errors import VeilError
from veil.faces.bulk import AlignReport, FaceAligner
from veil.faces.config import ALIGNED_MARKER, FaceConfig

CHUNK = 512


def folder_images(src: Path) -> list[Path]:
    """Images directly in ``src`` and one level down (identity sub-folders), sorted."""
    found = [f for f in sorted(src.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    for sub in sorted(d for d in src.iterdir() if d.is_dir()):
        found += [f for f in sorted(sub.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    return found


def _png(chip) -> bytes:
    buf = _bytes_io.BytesIO()
    Image.fromarray(chip).save(buf, format="PNG")
    return buf.getvalue()


def _check_out(src: Path, out: Path, targets: dict[Path, Path]) -> None:
    if out.resolve() == src.resolve():
        raise VeilError("--out must differ from the source folder")
    if out.exists() and any(out.iterdir()) and not (out / ALIGNED_MARKER).is_file():
        raise VeilError(f"{out} is not empty and was not written by `veil data align`; choose a new folder")
    if len(set(targets.values())) < len(targets):
        raise VeilError(f"two images under {src} differ only in their suffix: their chips would share a name")


def align_folder(src: str | Path, out: str | Path, config: FaceConfig, size: int = 150, workers: int | None = None,
                 show_progress: bool = True) -> dict:
    """Write the chip of every image's largest face under ``out``; returns (and writes) the folder's record."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise VeilError(f"folder not found: {src}")
    files = folder_images(src)
    if not files:
        raise VeilError(f"no images under {src} ({', '.join(sorted(IMAGE_SUFFIXES))}, or one folder down)")
    targets = {f: out / f.relative_to(src).with_suffix(".png") for f in files}
    _check_out(src, out, targets)
    t = time.time()
    report = AlignReport()
    written = 0
    with FaceAligner(config, size, workers) as aligner, Progress(
            TextColumn("align faces"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            disable=not show_progress) as bar:
        task = bar.add_task("align", total=len(files))
        for i in range(0, len(files), CHUNK):
            chunk = files[i:i + CHUNK]
            aligned = aligner.align(chunk)
            report.add(aligned.report)
            for k, chip in zip(aligned.kept, aligned.chips, strict=True):
                io.write_bytes(targets[chunk[k]], _png(chip))
                written += 1
            bar.update(task, advance=len(chunk))
    record = report.as_dict(config, size, src)
    record.update(source=str(src), written=written, seconds=round(time.time() - t, 3))
    io.write_json(out / ALIGNED_MARKER, record)
    return record
