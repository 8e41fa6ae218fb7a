"""ExtNet from a user's own timm checkpoint (safetensors), tested on a checkpoint Veil saved itself."""

from __future__ import annotations

import timm
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from veil.cli.app import app
from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone, load_extnet, save_backbone


def test_timm_checkpoint_becomes_extnet(tmp_path):
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=0).eval()
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "mine.safetensors"))
    result = CliRunner().invoke(app, ["extractor", "import", str(tmp_path / "mine.safetensors"), "--timm-name",
                                      "vit_tiny_patch16_224", "--img-size", "32", "--ext-depth", "3", "--out",
                                      str(tmp_path / "ext.safetensors")])
    assert result.exit_code == 0, result.output
    ext = load_extnet(tmp_path / "ext.safetensors")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = vit.patch_embed((x - ext.mean) / ext.std)
        ref = vit.blocks[:3](vit._pos_embed(ref))
    assert torch.allclose(ext(x), ref, atol=1e-5)
    assert ext.token_shape == (5, 192)


def test_wrong_architecture_checkpoint_is_refused(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=0)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    result = CliRunner().invoke(app, ["extractor", "import", str(tmp_path / "tiny.safetensors"), "--timm-name",
                                      "vit_small_patch16_224", "--img-size", "32", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "does not fit" in result.output


def test_veil_extractor_round_trip(tmp_path):
    cfg = ExtractorConfig(img_size=32, stem_stages=1, embed_dim=32, num_heads=2, depth=2, ext_depth=1)
    bb = build_backbone(cfg).eval()
    save_backbone(bb, cfg, tmp_path / "e.safetensors")
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(load_extnet(tmp_path / "e.safetensors")(x), ExtNet(bb, cfg)(x))
