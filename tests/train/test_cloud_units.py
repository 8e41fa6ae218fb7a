"""train_recnet's recipe, bookkeeping and DDP path, each checked on its own (SYNTHETIC stores from test_ddp.py).

What each test pins: the optimiser is the paper's SGD with Nesterov momentum, weight decay and the configured lr
(one step's update, computed by hand); the loss's margin and scale are the configured ones; the schedule spans
every step; the logged loss is the sample-weighted mean of the epoch's batches; every epoch reshuffles, in an
order set by the seed alone (not by how many random numbers the model's init drew); what the history and the
saved model record; the progress bar follows ``show_progress``; and under torchrun ``train_recnet`` joins the
process group itself (gloo on CPU) and each rank trains on its own rows, never padding with repeats.

Spies (a wrapper that records and calls the real method) watch ``_Trainee.forward`` and ``warmup_cosine``;
everything they watch runs for real. Written for the train/cloud.py mutation survivors (bench/mutation.py).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from veil.models.recnet import load_recnet
from veil.store import StoreWriter, open_store
from veil.train import cloud
from veil.train.cloud import CloudTrainConfig, train_recnet, train_to_file

from .test_ddp import CFG, CLASSES, DIM, ROWS, TOKENS, ddp_env, second_rank, write_store


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("cloud") / "store", torch.arange(ROWS) % CLASSES)


def cfg(**kw) -> CloudTrainConfig:
    return replace(CFG, **kw)


def spy_forward(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Record (x, y, loss) of every training step; the real forward still runs."""
    calls: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    real = cloud._Trainee.forward

    def forward(self, x, y):
        loss = real(self, x, y)
        calls.append((x.detach().clone(), y.detach().clone(), loss.item()))
        return loss

    monkeypatch.setattr(cloud._Trainee, "forward", forward)
    return calls


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def update(store: Path, **kw) -> torch.Tensor:
    """The first (only) step's parameter update, flattened: one epoch of one global batch of every row."""
    from .test_ddp import initial_weights

    c = cfg(**kw)
    model, history = train_recnet(store, c, "cpu", show_progress=False)
    after, before = params(model), initial_weights(c)
    assert history["world_size"] == 1
    return torch.cat([(after[k] - before[k]).flatten() for k in before])


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --- the recipe -----------------------------------------------------------------------------------------------
def test_one_step_is_sgd_with_nesterov_momentum_weight_decay_and_the_configured_lr(store: Path) -> None:
    # Nesterov's first step: the buffer is the gradient g (weight decay included), the step lr * (1 + m) * g;
    # classical momentum's first step is lr * g whatever m is
    base = update(store, momentum=0.1, weight_decay=0.0, lr=0.1)
    assert gap(update(store, momentum=0.9, weight_decay=0.0, lr=0.1), (1.9 / 1.1) * base) < 1e-3
    assert gap(update(store, momentum=0.1, weight_decay=0.0, lr=0.2), 2 * base) < 1e-3  # linear in lr
    # weight decay adds lr * (1 + m) * wd * p0 to the step of every parameter
    from .test_ddp import initial_weights

    p0 = torch.cat([v.flatten() for v in initial_weights(cfg()).values()])
    decayed = update(store, momentum=0.1, weight_decay=0.5, lr=0.1)
    assert gap(decayed - base, -0.1 * 1.1 * 0.5 * p0) < 1e-3


@pytest.mark.parametrize("field, values", [("scale", (8.0, 64.0)), ("margin", (0.1, 0.6))])
def test_the_loss_uses_the_configured_margin_and_scale(store: Path, field: str, values: tuple) -> None:
    losses = [train_recnet(store, cfg(**{field: v}), "cpu", show_progress=False)[1]["loss"][0] for v in values]
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_the_schedule_spans_every_step_of_every_epoch(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = cloud.warmup_cosine

    def warmup_cosine(opt, total, warmup):
        seen.append((total, warmup))
        return real(opt, total, warmup)

    monkeypatch.setattr(cloud, "warmup_cosine", warmup_cosine)
    train_recnet(store, cfg(epochs=3, batch_size=16, warmup_epochs=0.5), "cpu", show_progress=False)
    assert seen == [(3 * ROWS // 16, int(0.5 * ROWS // 16))]  # 12 steps, 2 of warm-up


# --- bookkeeping ----------------------------------------------------------------------------------------------
def test_the_logged_loss_is_the_sample_weighted_mean_of_each_epochs_batches(store: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_forward(monkeypatch)
    _, history = train_recnet(store, cfg(epochs=3, batch_size=20), "cpu", show_progress=False)
    per_epoch = ROWS // 20  # 3 batches of 20 (the last 4 rows are dropped)
    assert len(calls) == 3 * per_epoch and [len(y) for _, y, _ in calls] == [20] * 9
    want = []
    for e in range(3):
        total, seen = 0.0, 0
        for _, y, loss in calls[e * per_epoch:(e + 1) * per_epoch]:
            total += loss * len(y)
            seen += len(y)
        want.append(total / seen)
    assert history["loss"] == want  # exactly: accumulated and divided in float64 (float32 would round these)
    single = [float(torch.tensor(w * 60, dtype=torch.float32) / 60) for w in want]
    assert single != want  # so the equality above can tell the two apart


def rows_of(calls, feats: torch.Tensor) -> list[int]:
    index = {feats[i].float().numpy().tobytes(): i for i in range(len(feats))}
    return [index[row.numpy().tobytes()] for x, _, _ in calls for row in x]


def test_every_epoch_reshuffles_in_an_order_set_by_the_seed_alone(store: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    feats, _ = open_store(store).load_all()
    orders = []
    for dim in (32, 16):  # another model width draws another amount of random numbers at init
        calls = spy_forward(monkeypatch)
        train_recnet(store, cfg(epochs=2, batch_size=16, dim=dim), "cpu", show_progress=False)
        orders.append(rows_of(calls, feats))
        monkeypatch.undo()
    first, second = orders[0][:ROWS], orders[0][ROWS:]
    assert sorted(first) == sorted(second) == list(range(ROWS))  # each epoch: every row once
    assert first != second  # a new order each epoch
    assert orders[0] == orders[1]  # the seed, not the model's init, sets the order


def test_history_and_the_model_record_the_run(store: Path) -> None:
    model, history = train_recnet(store, CFG, "cpu", show_progress=False)
    assert history["config"] == asdict(CFG) and history["classes"] == CLASSES and history["rows"] == ROWS
    assert (model.cfg.in_tokens, model.cfg.in_dim) == (TOKENS, DIM)


def test_the_progress_bar_follows_show_progress(store: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    train_recnet(store, CFG, "cpu")  # shown by default
    assert "cloud: train RecNet" in capsys.readouterr().out
    train_recnet(store, CFG, "cpu", show_progress=False)
    assert capsys.readouterr().out == ""
    train_to_file(store, tmp_path / "a.safetensors", CFG, "cpu")
    assert "cloud: train RecNet" in capsys.readouterr().out
    train_to_file(store, tmp_path / "b.safetensors", CFG, "cpu", show_progress=True)
    assert "cloud: train RecNet" in capsys.readouterr().out
    train_to_file(store, tmp_path / "c.safetensors", CFG, "cpu", show_progress=False)
    assert capsys.readouterr().out == ""


def test_the_saved_model_records_the_stores_provenance(tmp_path: Path) -> None:
    # a SYNTHETIC store (tmp only) whose manifest carries provenance and, here, no 'synthetic' flag: the reader's
    # default for the flag is what is checked
    g = torch.Generator().manual_seed(0)
    info = {"num_classes": CLASSES, "key_fingerprint": "fp-1234", "extractor": {"name": "tiny", "digest": "d1"},
            "obfuscation": {"method": "xnn", "matrix": "orthogonal"}}
    writer = StoreWriter(tmp_path / "store", info)
    writer.add(torch.randn(ROWS, TOKENS, DIM, generator=g), torch.arange(ROWS) % CLASSES)
    writer.close()
    train_to_file(tmp_path / "store", tmp_path / "r.safetensors", CFG, "cpu", show_progress=False)
    _, saved = load_recnet(tmp_path / "r.safetensors")
    assert {k: saved[k] for k in ("key_fingerprint", "extractor", "obfuscation", "num_classes", "synthetic")} == {
        "key_fingerprint": "fp-1234", "extractor": {"name": "tiny", "digest": "d1"},
        "obfuscation": {"method": "xnn", "matrix": "orthogonal"}, "num_classes": CLASSES, "synthetic": False}


# --- the DDP path ---------------------------------------------------------------------------------------------
def test_under_torchrun_each_rank_joins_the_group_and_trains_on_its_own_rows(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 here, rank 1 a subprocess (as test_ddp.py), but rank 0 leaves joining the group to train_recnet.

    67 rows over 2 ranks: a rank's share is 33 rows (the odd one is dropped, never padded with a repeat), so at 2
    rows per rank and step each rank takes 16 steps, on exactly the rows DistributedSampler assigns it."""
    rows, per_rank_batch = 67, 2
    store = write_store(tmp_path / "store67", torch.arange(rows) % CLASSES)
    c = cfg(batch_size=2 * per_rank_batch)
    env = ddp_env(monkeypatch, 2, 0)
    calls = spy_forward(monkeypatch)
    out = tmp_path / "rank1.safetensors"
    with second_rank(store, c, out, env):
        assert not dist.is_initialized()
        _, history = train_recnet(store, c, "cpu", show_progress=False)
        try:
            assert dist.is_initialized() and dist.get_backend() == "gloo" and dist.get_world_size() == 2
        finally:
            dist.destroy_process_group()
    assert history["world_size"] == 2
    sampler = DistributedSampler(range(rows), 2, 0, shuffle=True, seed=c.seed, drop_last=True)
    sampler.set_epoch(0)
    mine = list(sampler)[: 16 * per_rank_batch]
    feats, _ = open_store(store).load_all()
    assert len(calls) == 16 and rows_of(calls, feats) == mine


@pytest.fixture(autouse=True, scope="module")
def _no_group_left_behind():
    yield
    if dist.is_initialized():  # pragma: no cover - a failed DDP test must not leave the group to the next file
        dist.destroy_process_group()
