"""Recovery as a policy over the narrow run protocol, driven by a fake run: no servers, no network (SYNTHETIC).

The fake run is a counter: each step adds one to the state; ``crash_at`` steps raise CrashDetected once;
``bad_servers`` make the test phase fail. What recovery must do: replace the cascade, resume from the right
checkpoint, redo the lost steps, and give up after the policy's number of replacements.
"""

from __future__ import annotations

import pytest
import torch

from veil.cascade.checkpoint import Checkpoint
from veil.cascade.data import Dataset, batch_at
from veil.cascade.inbox import CrashDetected
from veil.cascade.recovery import RecoveryPolicy, train
from veil.errors import VeilError

DATA = Dataset("synthetic", torch.zeros(8, 2), torch.zeros(8, dtype=torch.long), torch.zeros(2, 2),
               torch.zeros(2, dtype=torch.long))  # 4 steps per epoch at batch 2


class FakeRun:
    def __init__(self, crash_at: set[int] | None = None, bad_servers: int = 0) -> None:
        self.initial = Checkpoint(step=0, verified=True)
        self.crash_at, self.bad_servers = set(crash_at or ()), bad_servers
        self.cascades, self.done, self.resumed_from = 0, 0, []
        self.released: list[str] = []
        self.upcoming: list[torch.Tensor | None] = []

    def servers(self) -> list[str]:
        return [f"server-{self.cascades}"] if self.cascades else []

    def setup(self, ckpt: Checkpoint | None = None) -> None:
        self.cascades += 1
        self.done = (ckpt or self.initial).step
        self.resumed_from.append(self.done)

    def step(self, x: torch.Tensor, y: torch.Tensor, upcoming: torch.Tensor | None = None) -> float:
        self.upcoming.append(upcoming)
        if self.done + 1 in self.crash_at:
            self.crash_at.discard(self.done + 1)
            raise CrashDetected(f"no answer at step {self.done + 1}")
        self.done += 1
        return 1.0 / self.done

    def test(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return 0.1 if self.cascades <= self.bad_servers else 0.9

    def fetch_state(self, step: int) -> Checkpoint:
        assert step == self.done
        return Checkpoint(step=step)

    def release(self) -> list[str]:
        old = self.servers()
        self.released += old
        return old


def test_a_crash_replaces_the_cascade_and_resumes_from_the_last_checkpoint() -> None:
    run, events = FakeRun(crash_at={6}), []
    res = train(run, RecoveryPolicy(checkpoint_every=2), DATA, epochs=2, batch=2, seed=0, events=events)
    assert run.resumed_from == [0, 4] and run.released == ["server-1"]
    assert [e["event"] for e in events] == ["crash", "replaced"] and events[1]["resume_step"] == 4
    assert res.final.step == 8 and len(res.losses) == 8 and len(res.epoch_seconds) == 2


def test_a_failed_test_phase_resumes_from_the_last_verified_checkpoint() -> None:
    run, events = FakeRun(bad_servers=1), []
    res = train(run, RecoveryPolicy(min_accuracy=0.5), DATA, epochs=2, batch=2, seed=0, events=events)
    assert [e["event"] for e in events] == ["byzantine", "replaced"]
    assert events[0]["servers"] == ["server-1"] and run.resumed_from == [0, 0]
    assert res.epoch_accuracy == [0.9, 0.9] and res.accuracy == 0.9


def test_each_step_is_given_the_next_step_s_labels() -> None:
    """SYNTHETIC: the trainer builds the next step's headers during a step, from the labels recovery passes."""
    ds = Dataset("synthetic", torch.zeros(8, 2), torch.arange(8), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    run = FakeRun()
    train(run, RecoveryPolicy(), ds, 2, 2, 0, [])
    assert len(run.upcoming) == 8 and run.upcoming[-1] is None
    for step, up in enumerate(run.upcoming[:-1]):
        assert up is not None and torch.equal(up, batch_at(ds, 2, 0, step + 1)[1])


def test_recovery_gives_up_after_the_policy_s_replacements() -> None:
    run = FakeRun(bad_servers=10)
    with pytest.raises(VeilError, match="gave up after 2 cascade replacements"):
        train(run, RecoveryPolicy(min_accuracy=0.5, max_replacements=2), DATA, epochs=1, batch=2, seed=0, events=[])
    assert run.cascades == 3


def test_the_byzantine_hook_lives_in_the_testing_module() -> None:
    from veil.cascade import node, testing

    out = torch.ones(3, 4)
    bad = testing.misbehaviour("corrupt")(out)
    assert bad.shape == out.shape and not torch.equal(bad, out)
    with pytest.raises(VeilError, match="unknown misbehaviour 'lazy' \\(one of corrupt\\)"):
        testing.misbehaviour("lazy")
    assert not hasattr(node, "MISBEHAVIOURS")  # the node only takes a hook
