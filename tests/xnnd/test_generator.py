"""The feature generator: the noise bound holds, features do not depend on the batch, the secret file round-trips."""

from __future__ import annotations

import stat

import pytest
import torch

from veil.errors import VeilError
from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone
from veil.models.recnet import RecNet, RecNetConfig, save_recnet
from veil.xnnd.generator import FeatureGenerator, NoiseEncoder, load_generator, save_generator

CFG = ExtractorConfig(img_size=32, stem_stages=2, embed_dim=64, num_heads=2, depth=1, ext_depth=1)


@pytest.fixture(scope="module")
def ext() -> ExtNet:
    torch.manual_seed(0)
    return ExtNet(build_backbone(CFG), CFG)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("eps", [0.25, 1.0, 2.0])
def test_noise_has_exactly_the_bounded_rms_per_token(ext, eps):
    fg = FeatureGenerator(ext, NoiseEncoder(ext, eps)).eval()
    x = images(4)
    noise = fg(x) - fg.clean(x)
    rms = noise.pow(2).mean(dim=-1).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, eps), atol=1e-3)
    clean_rms = fg.clean(x).pow(2).mean(dim=-1).sqrt()
    assert torch.allclose(clean_rms, torch.ones_like(clean_rms), atol=1e-2)  # LayerNorm eps on a tiny CLS token


def test_a_feature_depends_on_its_image_only_even_in_training_mode(ext):
    enc = NoiseEncoder(ext, 1.0).train()
    x = images(6)
    together = enc(x)
    alone = torch.cat([enc(x[i:i + 1]) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-4)


def test_baseline_fg_has_no_noise(ext):
    fg = FeatureGenerator(ext)
    x = images(2)
    assert torch.equal(fg(x), fg.clean(x)) and fg.eps == 0.0


def test_secret_file_round_trips_with_mode_0600(ext, tmp_path):
    enc = NoiseEncoder(ext, 0.7)
    with torch.no_grad():
        enc.blocks[0].mlp.fc1.weight.add_(0.1)  # trained weights differ from ExtNet's
    fg = FeatureGenerator(ext, enc).eval()
    path = save_generator(fg, tmp_path / "fg.safetensors", {"synthetic": True})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back, info = load_generator(path)
    x = images(3, 5)
    assert info == {"synthetic": True} and back.eps == pytest.approx(0.7)
    assert torch.allclose(back(x), fg(x), atol=1e-5)
    w = back.encoder.blocks[0].mlp.fc1.weight
    assert torch.equal(w, enc.blocks[0].mlp.fc1.weight) and not torch.equal(w, back.ext.blocks[0].mlp.fc1.weight)


def test_load_refuses_other_files(ext, tmp_path):
    rec = save_recnet(RecNet(RecNetConfig(17, 64, 32, 1, 2, 16)), tmp_path / "r.safetensors", {})
    with pytest.raises(VeilError, match="not a Veil XNN-d feature-generator"):
        load_generator(rec)
    (tmp_path / "junk").write_bytes(b"\x80\x04pickle?")
    with pytest.raises(VeilError):
        load_generator(tmp_path / "junk")
    with pytest.raises(VeilError, match="nothing secret"):
        save_generator(FeatureGenerator(ext), tmp_path / "x.safetensors")
