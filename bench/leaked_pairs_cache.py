"""Owner side: ExtNet tokens of the groups ``bench/leaked_pairs.py`` needs, extracted once into a private cache.

    python bench/leaked_pairs_cache.py [--run runs/leaked-pairs] [--data ../shared/data/lfw112]

Why a cache: ExtNet at 150 px costs 25-100 ms an image on a shared 2-core machine, and every attack and
RecNet of the leaked-pairs benchmark runs on tensors. The file holds the owner's *private* features, so it
lives in the run directory under ``runs/`` (git-ignored, mode 0600), never in ``~/.cache``. Mirror images
are not extracted (the benchmark trains and scores without them, the same for every method).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch  # noqa: E402
from _common import HERE  # noqa: F401  (puts src/ on sys.path)
from safetensors.torch import load_file, save_file  # noqa: E402

from veil.attacks.recnet_fit import extract_tokens  # noqa: E402
from veil.data.splits import Split, SplitSpec  # noqa: E402
from veil.keys import OwnerKey  # noqa: E402
from veil.models.dlib_resnet import LEVELS, level_output_shape, public_identifier  # noqa: E402
from veil.models.extractor import load_extnet  # noqa: E402
from veil.models.registry import DEFAULT_EXTRACTOR, resolve_extractor  # noqa: E402
from veil.pipeline import load_group, prepare_split  # noqa: E402

GROUPS = ("owner_train", "owner_test")
CACHE = "tokens.safetensors"


def ensure_split(run: Path, data: Path, seed: int = 0) -> Split:
    path = run / "split.json"
    if path.is_file():
        return Split.load(path)
    run.mkdir(parents=True, exist_ok=True)
    return prepare_split(data, path, SplitSpec(seed=seed))


def owner_key(run: Path) -> OwnerKey:
    """The run's owner key (made once with a CSPRNG, file 0600 by ``OwnerKey.save``): the owner side's only secret."""
    path = run / "owner.key"
    if not path.is_file():
        OwnerKey.generate().save(path)
    return OwnerKey.load(path)


def token_cache(run: Path, data: Path, extractor: str = DEFAULT_EXTRACTOR, log=print) -> dict[str, torch.Tensor]:
    """``{group}/tokens`` (float32) and ``{group}/labels`` for every group in GROUPS, extracted at most once."""
    out = run / CACHE
    if out.is_file():
        return load_file(str(out))
    split = ensure_split(run, data)
    ext = load_extnet(resolve_extractor(extractor))
    tensors: dict[str, torch.Tensor] = {}
    for group in GROUPS:
        faces = load_group(data, split, group, ext.cfg.img_size)
        t = time.time()
        tensors[f"{group}/tokens"] = extract_tokens(ext, faces.images, batch_size=64)
        tensors[f"{group}/labels"] = faces.labels.clone()
        log(f"{group}: {len(faces)} images, {len(faces.names)} persons, ExtNet {time.time() - t:.0f} s")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    save_file(tensors, str(tmp), metadata={"extractor": extractor, "private": "owner features, never commit"})
    tmp.replace(out)
    return tensors


def cut_of(tokens: torch.Tensor) -> int:
    """The dlib cut the cached tokens came from, read off their shape (a cache made before the default moved from
    cut 4 to cut 5 says only ``dlib-resnet`` in its metadata)."""
    shape = tuple(tokens.shape[1:])
    cuts = [c for c in range(1, len(LEVELS) + 1) if level_output_shape(c) == shape]
    if len(cuts) != 1:
        raise SystemExit(f"cached tokens {shape} are not the output of exactly one dlib cut: delete {CACHE}")
    return cuts[0]


def dlib_identifier(tokens: torch.Tensor) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
    """(cut, the rest of dlib's public network after it): the adversary's identifier for these clean tokens."""
    cut = cut_of(tokens)
    return cut, public_identifier(cut)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=HERE.parent / "runs" / "leaked-pairs")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "lfw112")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    token_cache(args.run, args.data, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
