"""README claim "torchrun/DDP trains the same model": replicas agree, and match one process on the same global batch.

Rank 0 runs in this test's own process (so a mutation tool sees which code it covers), rank 1 in a
subprocess (``tests/train/ddp_rank.py``), joined over gloo on localhost exactly as torchrun would join them.
The store is SYNTHETIC: 64 rows of random identity prototypes plus noise; one epoch is one global
batch of all 64 rows, so DDP and one process see exactly the same rows.

Tolerances, stated:
- replicas: parameters equal bit for bit (tolerance 0): DDP all-reduces the gradients, so both ranks
  apply the same update to the same initial weights.
- DDP against one process, exactly: RecNet has a BatchNorm, whose batch statistics each rank takes over
  its own half of the global batch. So DDP's first step is the mean of the two updates one process
  computes on each rank's half (the first SGD step is linear in the gradient); they agree to
  ``EXACT_TOL`` relative (float summation order), and the logged loss is the mean of the halves' losses.
- DDP against one process on the whole global batch: only BatchNorm's per-half statistics separate
  them; the relative difference of the weight update is under ``BATCH_TOL`` (measured 0.10 here),
  while a replica that trains alone on its half, as it would without DDP's gradient averaging, is
  0.33 away.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.utils.data import DistributedSampler

from veil.errors import VeilError
from veil.models.recnet import RecNet, RecNetConfig
from veil.store import StoreWriter, open_store
from veil.train.cloud import CloudTrainConfig, train_recnet, train_to_file

ROWS, TOKENS, DIM, CLASSES = 64, 8, 16, 8
CFG = CloudTrainConfig(epochs=1, batch_size=ROWS, lr=0.2, warmup_epochs=0.0, dim=32, depth=1, num_heads=2,
                       emb_dim=16, seed=3)
EXACT_TOL = 1e-4
BATCH_TOL = 0.2
RANK_SCRIPT = Path(__file__).with_name("ddp_rank.py")


def write_store(out: Path, labels: torch.Tensor, num_classes: int = CLASSES) -> Path:
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(CLASSES, TOKENS, DIM, generator=g)
    feats = protos[labels.clamp(0, CLASSES - 1)] + 0.5 * torch.randn(len(labels), TOKENS, DIM, generator=g)
    writer = StoreWriter(out, {"num_classes": num_classes, "synthetic": True}, shard_size=24)
    writer.add(feats, labels)
    writer.close()
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("ddp") / "store", torch.arange(ROWS) % CLASSES)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_env(monkeypatch: pytest.MonkeyPatch, world: int, rank: int) -> dict[str, str]:
    env = {"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@contextmanager
def second_rank(store: Path, cfg: CloudTrainConfig, out: Path, env: dict[str, str]) -> Iterator[None]:
    """Rank 1 of a world of 2 in a subprocess (writing its weights to ``out``) while the body runs rank 0;
    on exit, waits for it and requires it to have succeeded (its log is the failure message)."""
    proc = subprocess.Popen([sys.executable, str(RANK_SCRIPT), str(store), str(out), json.dumps(asdict(cfg))],
                            env={**os.environ, **env, "RANK": "1", "LOCAL_RANK": "1", "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log[-3000:]


def train_two_ranks(store: Path, cfg: CloudTrainConfig, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> tuple[RecNet, dict, dict[str, torch.Tensor]]:
    """Train with world size 2: rank 0 here, rank 1 in a subprocess. Returns rank 0's model and history, rank 1's
    state dict."""
    out = tmp_path / "rank1.safetensors"
    with second_rank(store, cfg, out, ddp_env(monkeypatch, 2, 0)):
        dist.init_process_group("gloo", timeout=timedelta(seconds=60))
        try:
            recnet, history = train_recnet(store, cfg, "cpu", show_progress=False)
        finally:
            dist.destroy_process_group()
    return recnet, history, load_file(str(out))


def train_single(store: Path, cfg: CloudTrainConfig, monkeypatch: pytest.MonkeyPatch) -> RecNet:
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    recnet, history = train_recnet(store, cfg, "cpu", show_progress=False)
    assert history["world_size"] == 1
    return recnet


def initial_weights(cfg: CloudTrainConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(cfg.seed)  # what train_recnet does before building RecNet
    model = RecNet(RecNetConfig(TOKENS, DIM, cfg.dim, cfg.depth, cfg.num_heads, cfg.emb_dim))
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def relative_update_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> float:
    da = torch.cat([(a[k] - init[k]).flatten() for k in init])
    db = torch.cat([(b[k] - init[k]).flatten() for k in init])
    return float((da - db).norm() / db.norm())


def rank_halves(cfg: CloudTrainConfig) -> list[list[int]]:
    """The store rows each rank trains on in epoch 0, as train_recnet's DistributedSampler draws them."""
    halves = []
    for rank in range(2):
        sampler = DistributedSampler(range(ROWS), 2, rank, shuffle=True, seed=cfg.seed, drop_last=True)
        sampler.set_epoch(0)
        halves.append(list(sampler))
    return halves


def sub_store(store: Path, rows: list[int], out: Path) -> Path:
    feats, labels = open_store(store).load_all()
    writer = StoreWriter(out, {"num_classes": CLASSES, "synthetic": True})
    writer.add(feats[rows], labels[rows])
    writer.close()
    return out


def params_of(model: RecNet) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters()}


@pytest.fixture(scope="module")
def one_process_halves(store, tmp_path_factory) -> list[tuple[dict[str, torch.Tensor], float]]:
    """One process trained one step on each rank's half: (parameters, loss)."""
    out = []
    half_cfg = CloudTrainConfig(**{**asdict(CFG), "batch_size": ROWS // 2})
    with pytest.MonkeyPatch.context() as mp:
        for rank, rows in enumerate(rank_halves(CFG)):
            half = sub_store(store, rows, tmp_path_factory.mktemp("half") / f"rank{rank}")
            for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
                mp.delenv(k, raising=False)
            recnet, history = train_recnet(half, half_cfg, "cpu", show_progress=False)
            out.append((params_of(recnet), history["loss"][0]))
    return out


def test_ddp_replicas_are_identical_and_match_one_process(store, one_process_halves, tmp_path, monkeypatch):
    epochs_seen: list[int] = []
    set_epoch = DistributedSampler.set_epoch
    monkeypatch.setattr(DistributedSampler, "set_epoch", lambda self, e: (epochs_seen.append(e), set_epoch(self, e)))
    rank0, history, rank1 = train_two_ranks(store, CFG, tmp_path, monkeypatch)
    assert history["world_size"] == 2 and history["rows"] == ROWS and epochs_seen == [0]
    params = params_of(rank0)
    assert set(params) <= set(rank1)
    unequal = [k for k, v in params.items() if not torch.equal(v, rank1[k])]
    assert unequal == [], f"replicas diverged in {unequal}"
    init = initial_weights(CFG)
    assert not torch.equal(params["proj.weight"], init["proj.weight"]), "DDP did not train"
    # exactly the mean of one process's updates on each rank's half, and the mean of their losses
    (half_a, loss_a), (half_b, loss_b) = one_process_halves
    mean_of_halves = {k: (half_a[k] + half_b[k]) / 2 for k in init}
    gap = relative_update_gap(params, mean_of_halves, init)
    assert gap < EXACT_TOL, f"DDP's step is not the mean of the ranks' steps: relative gap {gap:.2e}"
    assert history["loss"] == [pytest.approx((loss_a + loss_b) / 2, rel=1e-5)]
    # and close to one process on the whole global batch: only BatchNorm's per-half statistics differ
    whole = params_of(train_single(store, CFG, monkeypatch))
    gap = relative_update_gap(params, whole, init)
    assert gap < BATCH_TOL, f"DDP's update differs from one process's on the same global batch by {gap:.3f}"


def test_a_replica_training_alone_is_outside_the_tolerance(store, one_process_halves, monkeypatch):
    """Without gradient averaging a replica applies its half's update: outside BATCH_TOL, so the check can fail."""
    whole = params_of(train_single(store, CFG, monkeypatch))
    gap = relative_update_gap(one_process_halves[0][0], whole, initial_weights(CFG))
    assert gap > 1.5 * BATCH_TOL, gap


def test_batch_not_divisible_by_the_world_size_is_refused(store, monkeypatch, tmp_path):
    ddp_env(monkeypatch, 2, 0)
    # a one-member group stands in for the second rank: the guard must fire before any collective is needed
    dist.init_process_group("gloo", store=dist.HashStore(), world_size=1, rank=0)
    try:
        with pytest.raises(VeilError, match="batch size 33 is not divisible by 2 processes"):
            train_recnet(store, CloudTrainConfig(**{**asdict(CFG), "batch_size": 33}), "cpu", show_progress=False)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("bad", [-1, CLASSES])
def test_labels_out_of_range_are_refused(tmp_path, bad):
    labels = torch.arange(ROWS) % CLASSES
    labels[7] = bad
    path = write_store(tmp_path / "store", labels)
    # the store reader refuses them first now (issue 12); train_recnet's own check stays as a second line
    with pytest.raises(VeilError, match=rf"labels (fall )?outside 0\.\.{CLASSES - 1}"):
        train_recnet(path, CFG, "cpu", show_progress=False)


def test_store_smaller_than_one_batch_is_refused(tmp_path):
    path = write_store(tmp_path / "store", torch.arange(ROWS // 2) % CLASSES)
    with pytest.raises(VeilError, match=f"store has {ROWS // 2} rows, fewer than one batch of {ROWS}"):
        train_recnet(path, CFG, "cpu", show_progress=False)


def test_train_to_file_records_provenance(store, tmp_path, monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    from veil.models.recnet import load_recnet

    history = train_to_file(store, tmp_path / "r.safetensors", CFG, "cpu", show_progress=False)
    _, info = load_recnet(tmp_path / "r.safetensors")
    assert info["world_size"] == 1 and info["num_classes"] == CLASSES and info["synthetic"] is True
    assert info["first_epoch_loss"] == history["loss"][0] and info["final_loss"] == history["loss"][-1]
