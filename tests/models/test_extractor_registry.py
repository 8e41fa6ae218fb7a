"""Extractors are registered by their own modules; the registry knows them by name only (SYNTHETIC)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from veil.errors import VeilError
from veil.models import registry
from veil.models.extractor import Extractor, ExtractorConfig, make_extnet

REGISTRY = Path(registry.__file__)


class Pool(Extractor):
    """A toy extractor: 4x4 average-pooled pixels as 16 tokens of 3 channels."""

    def __init__(self, cfg: ExtractorConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def token_shape(self) -> tuple[int, int]:
        return 16, 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images.float(), 4).flatten(2).transpose(1, 2)


def test_registry_imports_no_model_code() -> None:
    tree = ast.parse(REGISTRY.read_text())
    runtime = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = [n.module for n in runtime if isinstance(n, ast.ImportFrom)] + \
        [a.name for n in runtime if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m and m.startswith("veil.models")], modules


def test_each_kind_is_registered_by_its_module() -> None:
    assert {"hybrid", "timm", "dlib-resnet"} <= set(registry.kinds())
    assert registry.kind("dlib-resnet").configure.__module__ == "veil.models.dlib_resnet"
    assert registry.kind("hybrid").configure.__module__ == "veil.models.extractor"
    with pytest.raises(VeilError, match="extractor kind must be one of .*'dlib-resnet'.*got 'vgg'"):
        ExtractorConfig(kind="vgg")


def test_a_kind_registered_at_run_time_is_built_by_its_name() -> None:
    def configure(cfg: ExtractorConfig) -> None:
        cfg.embed_dim = 3

    kind = registry.register_kind(registry.ExtractorKind("toy-pool", configure, Pool, lambda _p, cfg: Pool(cfg)))
    try:
        cfg = ExtractorConfig(kind="toy-pool", img_size=8)
        ext = make_extnet(cfg)
        assert isinstance(ext, Pool) and cfg.embed_dim == 3
        assert ext(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).shape == (2, 16, 3)
        assert not ext.train().training  # an Extractor stays frozen
    finally:
        registry.unregister_kind(kind.name)


def test_one_default_extractor_for_the_cli_the_demo_and_the_bench() -> None:
    """`veil obfuscate` without --extractor cuts where the demo and bench presets cut (issue 21: after level 5)."""
    import inspect

    from veil.cli.evaluate import evaluate
    from veil.cli.obfuscate import obfuscate
    from veil.models.dlib_resnet import DEFAULT_CUT
    from veil.presets import PRESETS

    entries = {e.name: e for e in registry.list_extractors()}
    cut_of = {name: getattr(e.materialise, "args", (None,))[0] for name, e in entries.items()}
    assert DEFAULT_CUT == 5 and cut_of[registry.DEFAULT_EXTRACTOR] == DEFAULT_CUT
    assert {cut_of[PRESETS[p].extractor_name] for p in ("demo", "bench")} == {DEFAULT_CUT}
    for command in (obfuscate, evaluate):
        assert inspect.signature(command).parameters["extractor"].default.default == registry.DEFAULT_EXTRACTOR
