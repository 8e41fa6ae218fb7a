"""Concurrent calls fused into one batch call (veil.serve.coalesce), the RecNet forward and the gallery product on it.

SYNTHETIC inputs throughout (random tensors, a one-layer model).
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from veil.serve.coalesce import Coalescer
from veil.serve.embedder import Embedder
from veil.serve.gallery import Gallery
from veil.serve.protocol import BadRequest


def concurrently(n: int, call) -> list:  # noqa: ANN001
    """``call(i)`` from ``n`` threads released together; results (or exceptions) in order of ``i``."""
    barrier, out = threading.Barrier(n), [None] * n

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def slow_double(batches: list[list[int]]):  # noqa: ANN201
    def run(items: list[int]) -> list[int | BaseException]:
        batches.append(list(items))
        time.sleep(0.05)  # long enough for the other threads to queue behind the first call
        return [ValueError(f"odd {i}") if i % 7 == 3 else 2 * i for i in items]
    return run


def test_concurrent_calls_share_batch_calls_and_each_gets_its_own_result() -> None:
    batches: list[list[int]] = []
    c = Coalescer(slow_double(batches), max_size=64)
    out = concurrently(16, c)
    for i, r in enumerate(out):
        if i % 7 == 3:  # a per-item failure reaches that caller only
            assert isinstance(r, ValueError) and str(r) == f"odd {i}"
        else:
            assert r == 2 * i
    assert sorted(i for b in batches for i in b) == list(range(16))
    assert c.calls == len(batches) < 16  # without coalescing: 16 calls


def test_a_lone_call_runs_at_once() -> None:
    c = Coalescer(lambda items: [x + 1 for x in items])
    t = time.perf_counter()
    assert c(1) == 2 and c(5) == 6
    assert c.calls == 2 and time.perf_counter() - t < 0.5


def test_batches_respect_max_size_and_a_failing_batch_fails_every_caller() -> None:
    batches: list[list[int]] = []
    c = Coalescer(slow_double(batches), max_size=10, size=lambda i: 3)
    concurrently(12, c)
    assert all(len(b) * 3 <= 10 for b in batches) and sum(map(len, batches)) == 12

    def broken(items: list[int]) -> list[int]:
        time.sleep(0.02)
        raise OSError("disk gone")

    out = concurrently(8, Coalescer(broken))
    assert all(isinstance(r, OSError) for r in out)  # none hangs, none gets a result


def test_the_embedder_shares_forwards_and_matches_a_lone_forward() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 5, 4))
    calls = []
    real = model.forward

    def slow(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        time.sleep(0.03)
        return real(x)

    model.forward = slow  # type: ignore[method-assign]
    emb = Embedder(model)
    feats = [torch.randn(1 + i % 3, 3, 5) for i in range(12)]
    flips = [torch.randn_like(f) if i % 2 else None for i, f in enumerate(feats)]
    feats[5][0, 0, 0] = float("inf")  # a non-finite embedding: a 422 for that request only
    out = concurrently(12, lambda i: emb(feats[i], flips[i]))
    with torch.no_grad():
        for i, r in enumerate(out):
            if i == 5:
                assert isinstance(r, BadRequest) and r.status == 422
                continue
            alone = real(feats[i]) + (real(flips[i]) if flips[i] is not None else 0)
            assert r.shape == alone.shape and torch.allclose(r, alone, atol=1e-6)
    assert emb.forwards == len(calls) < 12


def test_concurrent_identifies_share_one_product_and_each_gets_its_names(tmp_path) -> None:
    g = Gallery(tmp_path / "g.db", 4, "digest")
    for k in range(4):
        g.enrol(f"p{k}", torch.eye(4)[k:k + 1])
    real = g._match

    def slow(batch):  # noqa: ANN001, ANN202
        time.sleep(0.03)
        return real(batch)

    g._matcher._run = slow  # type: ignore[assignment]
    probes = [torch.eye(4)[[i % 4, (i + 1) % 4]] + 0.01 for i in range(12)]
    out = concurrently(12, lambda i: g.identify(probes[i]))
    for i, r in enumerate(out):
        assert [x["name"] for x in r] == [f"p{i % 4}", f"p{(i + 1) % 4}"]
    assert g._matcher.calls < 12
    g.close()


@pytest.mark.parametrize("n", [1, 2])
def test_an_empty_gallery_answers_none_for_every_probe(tmp_path, n: int) -> None:
    g = Gallery(tmp_path / "g.db", 4, "digest")
    assert g.identify(torch.randn(n, 4)) == [{"name": None, "score": None}] * n
    g.close()
