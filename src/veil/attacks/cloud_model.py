"""The cloud's own model as an attack: the RecNet it trained on the owner's store, used as an identifier."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.leakage import LeakageResult, Target, identity_leakage
from veil.metrics import Rate


@dataclass
class CloudModelResult:
    rate: Rate
    chance: float
    leakage: LeakageResult


class CloudModelAttack(Attack):
    """The cloud's own RecNet on the owner's obfuscated gallery and probes: no attack effort at all.

    The cloud trained RecNet on the owner's obfuscated store, so RecNet already reads features made
    under the owner's key. Under the paper's protocol (gallery = owner's test set under the owner's
    key) this is the owner's utility, which bounds what "leakage" can mean against the cloud itself.
    """

    name = "cloud_model"
    title = "cloud model (its own RecNet)"
    label = "cloud's own RecNet"
    holdings = ("the RecNet the cloud trained on the store (recnet)", "the owner's obfuscated test features (target)")

    def on(self, view: View, command: str | None = None) -> AttackResult:
        recnet, target = view.need("recnet", "target")
        r = self.run(recnet, target)
        return self.result(r.leakage, command, r)

    def run(self, recnet: torch.nn.Module, target: Target, batch_size: int = 512) -> CloudModelResult:
        recnet.eval()

        @torch.no_grad()
        def embed(tokens: torch.Tensor) -> torch.Tensor:
            return torch.cat([recnet(tokens[i:i + batch_size].float()) for i in range(0, len(tokens), batch_size)])

        leak = identity_leakage(target, embed)
        return CloudModelResult(leak.rate, leak.chance, leak)
