"""The isolated enclave is a real separate process, loads its own weights, and rejects a tampered message."""

from __future__ import annotations

import os

import pytest
import torch

from veil.errors import VeilError
from veil.partition import InProcessEnclave, IsolatedProcessEnclave
from veil.partition.channel import _CTR
from veil.partition.enclave import encode_tensor
from veil.partition.isolated import OP_INFER
from veil.partition.models import load_model, preprocess
from veil.partition.runner import SplitRunner


@pytest.fixture(scope="module")
def enclave(resnet_weights):
    torch.set_num_threads(1)
    with IsolatedProcessEnclave(resnet_weights, "layer1", threads=1) as e:
        yield e


def test_runs_in_another_process_and_matches_in_process(enclave, resnet_weights) -> None:
    assert enclave.info.pid != os.getpid()
    assert os.path.exists(f"/proc/{enclave.info.pid}")
    assert enclave.info.backend == "isolated-process"
    assert "simulated" in enclave.info.isolation
    x = torch.randn(2, 3, 32, 32)
    got = enclave.forward(x)
    ref = InProcessEnclave(resnet_weights, "layer1")
    assert torch.allclose(got.features, ref(x), atol=1e-5)
    assert got.compute_s > 0 and got.round_trip_s >= got.compute_s
    assert enclave.info.measurement == ref.info.measurement  # both loaded the same trusted weights


def test_split_runner_equals_unsplit_and_reports_breakdown(resnet_weights) -> None:
    model, spec = load_model(resnet_weights)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with SplitRunner(resnet_weights, "layer2", backend="in-process", device="cpu") as runner:
        res = runner.run(images)
        modelled = runner.modelled_enclave(images, res.timing["enclave_measured_s"])
    with torch.no_grad():
        want = model(preprocess(images, spec))
    assert torch.allclose(res.logits, want, atol=1e-5)
    for key in ("enclave_measured_s", "transfer_s", "accelerator_s", "total_s"):
        assert res.timing[key] >= 0
    assert modelled["fits_epc"] and modelled["modelled_total_s"] >= res.timing["enclave_measured_s"]


def test_bad_input_shape_rejected(enclave) -> None:
    with pytest.raises(VeilError, match=r"\(n, 3, H, W\)"):
        enclave.forward(torch.randn(2, 5, 32, 32))
    assert enclave.forward(torch.randn(1, 3, 32, 32)).features.ndim == 4  # the session survives a bad request


def test_missing_weights_fails_before_spawning(tmp_path) -> None:
    with pytest.raises(VeilError, match="not found"):
        IsolatedProcessEnclave(tmp_path / "missing.safetensors", 3)


def test_zz_tampered_message_is_rejected_by_the_enclave_process(enclave) -> None:
    """Runs last in this module: a forged message ends the enclave's session, by design (replay: test_channel)."""
    frame = bytearray(enclave.channel.seal(OP_INFER + encode_tensor(torch.randn(1, 3, 32, 32))))
    frame[_CTR.size + 5] ^= 0x80  # flip one ciphertext bit on the wire
    with pytest.raises(VeilError, match="failed authentication"):
        enclave.send_raw(bytes(frame))
    with pytest.raises(VeilError):
        enclave.forward(torch.randn(1, 3, 32, 32))  # and the session is over
