"""Both stages on SYNTHETIC faces, tiny: stage 1 moves the encoder against its adversary, stage 2 distils."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from veil.data.synthetic import synthetic_faces
from veil.errors import VeilError
from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone
from veil.xnnd.config import AdversarialConfig, DistillConfig
from veil.xnnd.distill import distill_server, teacher_logits, train_teacher
from veil.xnnd.features import generate
from veil.xnnd.generator import FeatureGenerator
from veil.xnnd.stage1 import train_noise_encoder

CFG = ExtractorConfig(img_size=32, stem_stages=2, embed_dim=64, num_heads=2, depth=1, ext_depth=1)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ext = ExtNet(build_backbone(CFG), CFG)
    faces = synthetic_faces(identities=8, per_identity=8, image_size=32, seed=2)  # SYNTHETIC
    return ext, faces


def test_stage1_trains_the_encoder_and_keeps_the_bound(setup):
    ext, faces = setup
    fg = FeatureGenerator(ext)
    cfg = AdversarialConfig(epochs=2, batch_size=16, eps=0.5, adversary_dim=32, adversary_depth=1, encoder_lr=1e-3)
    enc, hist = train_noise_encoder(fg, faces.images, faces.labels, cfg, show_progress=False)
    assert len(hist["adversary_ce"]) == 2 and all(torch.isfinite(torch.tensor(hist["adversary_ce"])))

    def moved(encoder) -> float:
        return max((a - b).abs().max().item() for a, b in zip(encoder.blocks.parameters(), ext.blocks.parameters(),
                                                               strict=True))

    assert moved(enc) > 1e-4, "the encoder's weights never moved"
    # the adversary's loss is what moves it: with adv_weight=0 (and no weight decay) the encoder stays put
    still, _ = train_noise_encoder(fg, faces.images, faces.labels, replace(cfg, adv_weight=0.0, weight_decay=0.0),
                                   show_progress=False)
    assert moved(still) == 0.0, "the encoder moved without the adversarial loss"
    noised = FeatureGenerator(ext, enc)
    x = faces.images[:4]
    rms = (noised(x) - noised.clean(x)).pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, 0.5), atol=1e-3)
    assert not any(p.requires_grad for p in enc.parameters())


def test_stage1_refuses_too_few_images(setup):
    ext, faces = setup
    with pytest.raises(VeilError, match="fewer than one batch"):
        train_noise_encoder(FeatureGenerator(ext), faces.images[:4], faces.labels[:4], AdversarialConfig(),
                            show_progress=False)


def test_distillation_pulls_the_student_towards_the_teacher(setup):
    ext, faces = setup
    fg = FeatureGenerator(ext)
    clean = generate(fg, faces.images, clean=True)
    small = dict(dim=32, depth=1, num_heads=2, emb_dim=16, batch_size=16, warmup_epochs=0.5)
    teacher, head, _ = train_teacher(clean, faces.labels, DistillConfig(epochs=4, kd_weight=0.0, **small),
                                     show_progress=False)
    logits = teacher_logits(teacher, head, clean)
    noised = clean + 0.5 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))

    def final_kl(kd: float) -> list[float]:
        cfg = DistillConfig(epochs=6, kd_weight=kd, ce_weight=1.0, **small)
        _, hist = distill_server(noised, faces.labels, logits, cfg, show_progress=False)
        assert len(hist["loss"]) == 6 and len(hist["kl"]) == 6
        return hist["kl"]

    with_kd, without = final_kl(3.0), final_kl(0.0)
    assert with_kd[-1] < with_kd[0], "distillation did not reduce KL(teacher || student)"
    assert with_kd[-1] < without[-1], "the KL term made no difference to how close the student is to the teacher"
    with pytest.raises(VeilError):
        DistillConfig(kd_weight=0.0, ce_weight=0.0)
    with pytest.raises(VeilError, match="teacher logit rows"):
        distill_server(noised, faces.labels, logits[:3], DistillConfig(**small), show_progress=False)
