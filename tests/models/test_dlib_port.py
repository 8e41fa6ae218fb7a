"""The PyTorch port of dlib's face ResNet: descriptors equal dlib's own, reader refuses other layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import LFW, needs_lfw
from veil.errors import VeilError
from veil.models import dlib_resnet
from veil.models.dlib_format import DlibFormatError
from veil.models.dlib_resnet import (
    DlibFaceResNet,
    installed_dat,
    level_output_shape,
    normalize_rgb,
    read_dat,
    zero_padded_sum,
)


@pytest.fixture(scope="module")
def port() -> DlibFaceResNet:
    net = DlibFaceResNet()
    net.load_state_dict(read_dat(installed_dat()))
    return net.eval()


def _lfw_chips(count: int) -> np.ndarray:
    from PIL import Image

    files = sorted(LFW.glob("*/*.jpg"))[::97][:count]
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((150, 150), Image.Resampling.BICUBIC))
                     for f in files])


@needs_lfw
def test_port_matches_dlib_on_real_lfw_crops(port: DlibFaceResNet) -> None:
    dlib = pytest.importorskip("dlib", reason="dlib-bin is in the dev extras")
    chips = _lfw_chips(12)
    model = dlib.face_recognition_model_v1(str(installed_dat()))
    ref = np.array([np.array(model.compute_face_descriptor(c)) for c in chips])
    with torch.no_grad():
        ours = port(normalize_rgb(torch.from_numpy(chips).permute(0, 3, 1, 2).contiguous())).numpy()
    assert ref.shape == ours.shape == (12, 128)
    assert np.abs(ours - ref).max() < 1e-4
    assert np.abs(ref).max() > 0.05  # real descriptors, not zeros


def test_feature_shapes_follow_dlibs_padding_rules(port: DlibFaceResNet) -> None:
    x = normalize_rgb(torch.randint(0, 256, (2, 3, 150, 150), dtype=torch.uint8))
    with torch.no_grad():
        for cut in range(1, 6):
            fmap = port.features(x, cut)
            n, c = level_output_shape(cut)
            assert fmap.shape[1] == c and fmap.shape[2] * fmap.shape[3] == n
        assert level_output_shape(4) == (16, 256)  # 8x8 -> 3x3 conv vs 4x4 pool: the larger wins
        whole = port(x)
        assert torch.allclose(port.head(port.features(x, 3), 3), whole, atol=1e-5)


def test_residual_sum_zero_pads_the_smaller_tensor() -> None:
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 1, 4, 4), 2.0)
    s = zero_padded_sum(a, b)
    assert s.shape == (1, 2, 4, 4)
    assert s[0, 0, 0, 0] == 3 and s[0, 0, 3, 3] == 2 and s[0, 1, 0, 0] == 1 and s[0, 1, 3, 3] == 0


def test_reader_names_the_layer_where_a_file_diverges(tmp_path) -> None:
    raw = bytearray(installed_dat().read_bytes())
    at = raw.index(b"max_pool_2")
    raw[at + 10:at + 12] = bytes([0x01, 0x05])  # the pool's window: 3 -> 5 rows
    bad = tmp_path / "bad.dat"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DlibFormatError, match=r"stem\.pool \(max_pool\)"):
        read_dat(bad)


def test_reader_refuses_truncated_and_foreign_files(tmp_path) -> None:
    data = installed_dat().read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="file ends inside"):
        read_dat(cut)
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x01\x0bloss_mmod_2" + data[20:200])
    with pytest.raises(DlibFormatError, match="expected loss_metric"):
        read_dat(other)


def test_missing_package_gets_one_line_telling_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(dlib_resnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VeilError, match="pip install face-recognition-models"):
        installed_dat()


def test_conversion_records_sha256_and_is_stable(tmp_path) -> None:
    path, digest = dlib_resnet.converted_weights(tmp_path)
    assert path.exists() and len(digest) == 64
    assert dlib_resnet.converted_weights(tmp_path) == (path, digest)
    assert dlib_resnet.sha256_file(path) == digest
