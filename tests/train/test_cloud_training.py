"""Cloud-side training: one process and torchrun/DDP both give a trained RecNet (SYNTHETIC store)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from veil.data.loaders import stream_faces
from veil.data.synthetic import synthetic_faces
from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone
from veil.models.recnet import load_recnet
from veil.obfuscation.base import NoObfuscation
from veil.owner import obfuscate_to_store
from veil.store import open_store
from veil.train.cloud import CloudTrainConfig, train_recnet

TRAIN_ARGS = ["--epochs", "3", "--batch-size", "32", "--dim", "32", "--heads", "2", "--depth", "1", "--emb-dim",
              "16", "--lr", "0.05", "--head-init", "random", "--fit", "sgd"]  # random class weights: the loss must fall


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    torch.manual_seed(0)
    faces = synthetic_faces(identities=12, per_identity=8, image_size=32)
    cfg = ExtractorConfig(img_size=32, stem_stages=1, embed_dim=32, num_heads=2, depth=1, ext_depth=1)
    ext = ExtNet(build_backbone(cfg), cfg)
    out = tmp_path_factory.mktemp("cloud") / "store"
    obfuscate_to_store(ext, NoObfuscation(), stream_faces(faces, None, 32, 32), faces.names,
                       {n: i for i, n in enumerate(faces.names)}, out, synthetic=True, shard_size=64,
                       show_progress=False)
    return out


def test_training_lowers_the_loss(store):
    _, hist = train_recnet(store, CloudTrainConfig(epochs=6, batch_size=32, dim=32, num_heads=2, depth=1,
                                                   emb_dim=16, warmup_epochs=1), show_progress=False)
    assert hist["loss"][-1] < 0.8 * hist["loss"][0]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_single_process_and_ddp_both_train(store, tmp_path):
    single = _run([sys.executable, "-m", "veil", "train", "--store", str(store), "--out",
                   str(tmp_path / "one.safetensors"), *TRAIN_ARGS])
    assert single.returncode == 0, single.stderr
    ddp = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                "-m", "veil", "train", "--store", str(store), "--out", str(tmp_path / "ddp.safetensors"),
                *TRAIN_ARGS])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, one_info = load_recnet(tmp_path / "one.safetensors")
    two, two_info = load_recnet(tmp_path / "ddp.safetensors")
    assert one_info["world_size"] == 1 and two_info["world_size"] == 2
    assert open_store(store).manifest["rows"] == 192
    for info in (one_info, two_info):  # both trained: the loss fell over the run
        assert info["final_loss"] < 0.9 * info["first_epoch_loss"], info
    # DDP keeps replicas in sync, so the saved weights are a real trained model, different from init
    assert not torch.equal(one.proj.weight, two.proj.weight)
