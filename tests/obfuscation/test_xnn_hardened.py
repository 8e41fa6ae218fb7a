"""XNN-hardened (``xnnh``): secrets from the key, fresh chaff, an invertible orthogonal core, no secret in the store."""

from __future__ import annotations

import pytest
import torch

from tests.secret_scan import _float_forms, _int_forms, find_secrets, shard_problems
from veil.data.loaders import stream_faces
from veil.data.synthetic import synthetic_faces
from veil.keys import OwnerKey
from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone
from veil.obfuscation import registry
from veil.obfuscation.keyed import label_map
from veil.obfuscation.randomness import TorchRandomness
from veil.obfuscation.xnn_hardened import Butterfly
from veil.owner import obfuscate_to_store
from veil.store import open_store

GEOM = registry.Geometry(4, 16, 32)  # 64 values: small enough for exact checks
KEY = OwnerKey(bytes(range(1, 33)))


def make(key=KEY, **options):
    return registry.get("xnnh").from_key(key, GEOM, block=8, **options)


def test_same_key_same_maps_bit_for_bit():
    a, b = make(curve=1.0), make(curve=1.0)
    for q in ("q1", "q2"):
        assert torch.equal(getattr(a, q).blocks, getattr(b, q).blocks)
        assert torch.equal(getattr(a, q).perms, getattr(b, q).perms)
    x = torch.rand(3, 4, 16)
    assert torch.equal(a(x), b(x))  # no chaff: deterministic given the key


def test_maps_change_with_the_key():
    other = OwnerKey(bytes(range(2, 34)))
    a, b = make(), make(other)
    assert not torch.allclose(a.q1.blocks, b.q1.blocks)
    assert not torch.equal(a.q1.perms, b.q1.perms)
    assert a.key_fingerprint == KEY.fingerprint != b.key_fingerprint


def test_core_is_orthogonal_and_mixes_every_input_into_every_output():
    obf = make()
    x = torch.randn(5, 4, 16)
    y = obf(x).reshape(5, -1)
    assert torch.allclose(y.norm(dim=1), x.reshape(5, -1).norm(dim=1), rtol=1e-5)
    assert torch.allclose(obf.q1.inverse(y), x.reshape(5, -1), atol=1e-5)
    jac = obf.q1(torch.eye(64))  # row i: the image of basis vector i
    assert (jac.abs() > 1e-9).all()  # three butterfly stages: no output ignores an input


def test_chaff_is_fresh_per_call_and_recnet_shape_is_public():
    obf = make(chaff=16, tokens=4)
    x = torch.rand(2, 4, 16)
    a, b = obf(x), obf(x)
    assert a.shape == (2, 4, 20) and not torch.allclose(a, b)
    assert obf.public_info() == {"method": "xnnh", "chaff": 16, "noise": 1.0, "curve": 0.0, "tokens": 4,
                                 "block": 8, "stages": 3}


def test_curve_is_not_linear():
    obf = make(curve=1.0)
    x, y = torch.randn(2, 4, 16), torch.randn(2, 4, 16)
    assert not torch.allclose(obf(x + y), obf(x) + obf(y), atol=1e-3)  # (scale-equivariant by design, not additive)


def test_random_is_public_and_bad_options_are_errors():
    a = registry.get("xnnh").random(GEOM, torch.Generator().manual_seed(0), TorchRandomness(0), block=8)
    b = registry.get("xnnh").random(GEOM, torch.Generator().manual_seed(0), TorchRandomness(0), block=8)
    assert torch.equal(a.q1.blocks, b.q1.blocks) and a.key_fingerprint is None
    with pytest.raises(Exception, match="multiple of block"):
        make(chaff=3)
    with pytest.raises(Exception, match="no option"):
        registry.get("xnnh").from_key(KEY, GEOM, colour=1)
    assert registry.parse("XNN-H(chaff=1024,curve=1)")[1] == {"chaff": 1024, "curve": 1.0}


def test_store_holds_no_map_stage_and_no_seed(tmp_path):
    torch.manual_seed(0)
    cfg = ExtractorConfig(img_size=32, stem_stages=2, embed_dim=64, num_heads=2, depth=1, ext_depth=1)
    ext = ExtNet(build_backbone(cfg), cfg).eval()
    faces = synthetic_faces(identities=6, per_identity=3, image_size=32, seed=4)  # SYNTHETIC
    tokens, dim = ext.token_shape
    geometry = registry.Geometry(tokens, dim, 32)
    obf = registry.get("xnnh").from_key(KEY, geometry, chaff=64, curve=1.0, tokens=2)
    store = obfuscate_to_store(ext, obf, stream_faces(faces, None, 32, 16), faces.names, label_map(KEY, faces.names),
                               tmp_path / "store", synthetic=True, shard_size=8, show_progress=False)
    store = tmp_path / "store"
    patterns = {"seed": KEY.seed, "seed hex": KEY.seed.hex().encode()}
    for name, q in (("q1", obf.q1), ("q2", obf.q2)):
        for s in range(q.perms.shape[0]):
            patterns.update(_int_forms(f"{name} perm{s}", q.perms[s].tolist()))
            for g in range(0, q.blocks.shape[1], 7):  # every 7th block, both axes
                for i in range(q.blocks.shape[-1]):
                    patterns.update(_float_forms(f"{name} B{s}[{g}] row {i}", q.blocks[s, g, i]))
                    patterns.update(_float_forms(f"{name} B{s}[{g}] col {i}", q.blocks[s, g, :, i]))
    assert find_secrets(store, patterns) == []
    assert all(shard_problems(p) == [] for p in store.glob("shard-*.safetensors"))
    manifest = open_store(store).manifest
    assert manifest["obfuscation"] == obf.public_info()
    # the scan is not vacuous: a planted block row is found
    planted = tmp_path / "store" / "planted.bin"
    planted.write_bytes(obf.q1.blocks[0, 0, 3].numpy().tobytes())
    assert find_secrets(store, patterns) != []


def test_butterfly_from_key_and_random_have_the_same_shape():
    a = Butterfly.from_key(KEY, "t", 64, 8)
    b = Butterfly.random(64, 8, torch.Generator().manual_seed(1))
    assert a.blocks.shape == b.blocks.shape == (3, 8, 8, 8)
