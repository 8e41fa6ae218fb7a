import time

import pytest
import torch

from veil.errors import VeilError
from veil.keys import OwnerKey
from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone
from veil.obfuscation import XNN
from veil.obfuscation.keyed import xnn_from_key


def test_xnn_is_permutation_then_matrix():
    obf = xnn_from_key(OwnerKey.generate(), 5, 8, "gaussian")
    x = torch.randn(3, 5, 8)
    expected = torch.stack([x[b][obf.perm] @ obf.matrix for b in range(3)])
    assert torch.allclose(obf(x), expected, atol=1e-6)
    assert torch.allclose(obf.invert(obf(x)), x, atol=1e-4)


def test_orthogonal_matrix_preserves_norms():
    obf = xnn_from_key(OwnerKey.generate(), 5, 32, "orthogonal")
    x = torch.randn(4, 5, 32)
    assert torch.allclose(obf(x).norm(dim=-1).sort(dim=1).values, x.norm(dim=-1).sort(dim=1).values, atol=1e-4)


def test_wrong_shape_names_the_problem():
    obf = xnn_from_key(OwnerKey.generate(), 5, 8)
    with pytest.raises(VeilError, match=r"tokens \(batch, 5, 8\)"):
        obf(torch.randn(2, 6, 8))


def test_public_info_reveals_no_parameter():
    obf = xnn_from_key(OwnerKey.generate(), 5, 8)
    assert obf.public_info() == {"method": "xnn", "matrix": "orthogonal"}


def test_random_parameters_differ_per_draw():
    g = torch.Generator().manual_seed(0)
    a, b = XNN.random(5, 8, generator=g), XNN.random(5, 8, generator=g)
    assert not torch.equal(a.matrix, b.matrix)


def test_obfuscation_costs_a_few_percent_of_extnet():
    torch.manual_seed(0)
    cfg = ExtractorConfig()  # the default CPU-sized ExtNet
    ext = ExtNet(build_backbone(cfg), cfg)
    obf = xnn_from_key(OwnerKey.generate(), *ext.token_shape)
    images = torch.randint(0, 256, (64, 3, cfg.img_size, cfg.img_size), dtype=torch.uint8)
    tokens = ext(images)
    t0 = time.perf_counter()
    for _ in range(3):
        ext(images)
    t_ext = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(3):
        obf(tokens)
    t_obf = time.perf_counter() - t0
    assert t_obf < 0.05 * t_ext, (t_obf, t_ext)
