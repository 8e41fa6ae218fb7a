"""XNN-d on cached tokens: the token noise encoder's bound, its FG file, stage 1's adversary pool,
the honest known-plaintext fit, and the verdict rule (all on tiny tensors)."""

from __future__ import annotations

import stat

import pytest
import torch

from tests.xnnd.test_generator import ext, images  # noqa: F401 - the same tiny ExtNet fixture
from veil.xnnd.config import AdversarialConfig
from veil.xnnd.generator import FeatureGenerator, load_generator, save_generator
from veil.xnnd.stage1 import train_token_noise_encoder
from veil.xnnd.sweep import apply_denoiser, fit_denoiser, layer_norm, noised, verdict
from veil.xnnd.token_noise import TokenEncoderConfig, TokenNoiseEncoder


@pytest.mark.parametrize("eps", [0.5, 4.0])
def test_token_encoder_noise_is_zero_mean_with_exact_rms_per_token(eps):
    enc = TokenNoiseEncoder(TokenEncoderConfig(5, 32), eps)
    noise = enc(layer_norm(torch.randn(3, 5, 32)))
    assert torch.allclose(noise.mean(-1), torch.zeros(3, 5), atol=1e-5)
    assert torch.allclose(noise.pow(2).mean(-1).sqrt(), torch.full((3, 5), eps), atol=1e-3)


def test_fg_with_token_encoder_matches_from_tokens_and_round_trips(ext, tmp_path):  # noqa: F811
    n_tok, dim = ext.token_shape
    torch.manual_seed(1)
    fg = FeatureGenerator(ext, TokenNoiseEncoder(TokenEncoderConfig(n_tok, dim), 2.0)).eval()
    x = images(4)
    feats = fg(x)
    assert torch.allclose(feats, fg.from_tokens(ext(x)), atol=1e-5)  # the cached-token path is FG itself
    assert torch.allclose(feats - fg.clean(x), fg.noise_from_tokens(fg.clean(x)), atol=1e-5)
    path = save_generator(fg, tmp_path / "fg.safetensors", {"eps": 2.0})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back, info = load_generator(path)
    assert back.token_level and info == {"eps": 2.0}
    assert torch.allclose(back(x), feats, atol=1e-5)


def test_stage1_token_encoder_with_a_reinitialised_pool():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(8)
    centres = torch.randn(8, 4, 16, generator=g)
    clean = layer_norm(centres[labels] + 0.1 * torch.randn(64, 4, 16, generator=g))
    cfg = AdversarialConfig(epochs=2, batch_size=16, eps=1.0, encoder="tokens", adversary_pool=2,
                            adversary_steps=2, reinit_every=3, adversary_dim=16, adversary_depth=1)
    enc, hist = train_token_noise_encoder(clean, labels, cfg, show_progress=False)
    assert hist["reinits"] == (2 * 64 // 16) // 3 and len(hist["adversary_ce"]) == 2
    out = noised(enc, clean)
    assert torch.allclose((out - clean).pow(2).mean(-1).sqrt(), torch.ones(64, 4), atol=1e-3)
    assert not any(p.requires_grad for p in enc.parameters())


def test_denoiser_is_not_determined_below_four_pairs_and_exact_when_the_map_is_affine():
    g = torch.Generator().manual_seed(0)
    fit = fit_denoiser(torch.randn(3, 4, 8, generator=g), torch.randn(3, 4, 8, generator=g))
    assert fit.weight is None and fit.lam is None and "too few" in fit.note
    a, b = torch.randn(8, 8, generator=g), torch.randn(8, generator=g)
    clean = torch.randn(40, 4, 8, generator=g)
    fit = fit_denoiser(clean, clean @ a + b)
    assert fit.ols_determined and fit.heldout_residual < 1e-2
    test = torch.randn(5, 4, 8, generator=g)
    assert torch.allclose(apply_denoiser(fit.weight, test @ a + b), test, atol=2e-2)


def test_denoiser_reports_under_determination_of_plain_least_squares():
    clean = torch.randn(4, 4, 64)  # 16 rows for 65 unknowns per column: OLS is not determined, ridge still fits
    fit = fit_denoiser(clean, clean + 0.1)
    assert not fit.ols_determined and fit.weight is not None and fit.lam is not None


def _point(eps, adv, util, asr):
    return {"eps": eps, "adversary": adv, "utility": {"rate": util},
            "strongest_attack": {"rate": asr, "attack": "black_box"}}


def test_verdict_needs_both_halved_asr_and_ninety_percent_utility():
    base = _point(0.0, "none", 0.60, 0.40)
    points = [_point(1.0, "weak", 0.59, 0.30), _point(8.0, "weak", 0.40, 0.05), _point(4.0, "strong", 0.55, 0.19)]
    v = verdict(base, points)
    assert v["met"] and v["setting"] == {"eps": 4.0, "adversary": "strong"}
    v = verdict(base, points[:2])
    # scores max(ASR / 0.20, 0.54 / utility): 1.5 for eps 1, 1.35 for eps 8: the closest point is eps 8
    assert not v["met"] and v["setting"] == {"eps": 8.0, "adversary": "weak"} and v["score"] == pytest.approx(1.35)


def test_the_chosen_settings_files_load_into_the_service(ext, tmp_path):  # noqa: F811
    """Issue 15 item 5: what ``veil bench table4`` writes is what ``veil serve`` / ``veil client`` load today."""
    from fastapi.testclient import TestClient

    from veil.models.recnet import RecNet, RecNetConfig
    from veil.serve.app import create_app
    from veil.serve.protocol import encode
    from veil.xnnd.features import generate
    from veil.xnnd.table4 import write_setting_files

    n_tok, dim = ext.token_shape
    torch.manual_seed(0)
    enc = TokenNoiseEncoder(TokenEncoderConfig(n_tok, dim), 8.0)
    server = RecNet(RecNetConfig(n_tok, dim, 32, 1, 2, 16)).eval()
    files = write_setting_files(tmp_path, ext, enc, server, server, {"eps": 8.0, "adversary": "weak"})
    fg, info = load_generator(files["fg"])  # what `veil client` does
    assert fg.token_level and info["eps"] == 8.0
    x = images(3)
    feats, flipped = generate(fg, x), generate(fg, x, flip=True)
    with TestClient(create_app(files["server"], tmp_path / "gallery.safetensors")) as client:
        assert client.get("/health").json()["tokens"] == n_tok
        assert client.post("/v1/enrol?name=alice", content=encode(feats[:1], flipped[:1])).status_code == 200
        out = client.post("/v1/identify", content=encode(feats, flipped)).json()
    assert out["results"][0]["name"] == "alice"


def _measured(eps, adv, util, asr):
    r = {"rate": asr, "ci95": [asr, asr], "n": 10, "hits": 1}
    return {"eps": eps, "adversary": adv, "utility": {"rate": util, "hits": int(10 * util), "n": 10},
            "black_box": r, "transfer": r, "expectation": r, "known_plaintext": r, "chance": 0.1,
            "strongest_attack": {"attack": "black_box", **r}}


def test_merge_joins_pieces_with_the_same_baseline_and_refuses_others():
    from veil.errors import VeilError
    from veil.xnnd.table4 import merge

    cfg = {"eps": (1.0,), "adversaries": ("weak",), "extra": (), "student_epochs": 3}
    base = _measured(0.0, "none", 0.6, 0.4)
    a = {"config": cfg, "baseline": base, "settings": [_measured(1.0, "weak", 0.55, 0.35)]}
    b = {"config": {**cfg, "adversaries": ("strong",)}, "baseline": base, "verdict": {"setting": {}},
         "settings": [_measured(1.0, "strong", 0.58, 0.15)], "files": {"fg": "run/fg.safetensors"}, "command": "b"}
    out = merge([a, b], "merged")
    assert [(c["eps"], c["adversary"]) for c in out["curve"]] == [(1.0, "weak"), (1.0, "strong")]
    assert out["verdict"]["met"] and out["verdict"]["setting"] == {"eps": 1.0, "adversary": "strong"}
    with pytest.raises(VeilError, match="baselines"):
        merge([a, {**b, "baseline": _measured(0.0, "none", 0.5, 0.4)}], "x")
    with pytest.raises(VeilError, match="recipes"):
        merge([a, {**b, "config": {**cfg, "student_epochs": 9}}], "x")
