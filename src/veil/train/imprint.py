"""Class weights that start where the classes are: "imprinting" a CosFace head from the untrained embedding.

Why: with a strong pre-trained ExtNet and the identity-initialised linear RecNet, the untrained network is
already a good face embedding (mean pooling of the tokens). A CosFace head with random class weights makes the
first steps tear that embedding apart to fit random directions; on aligned LFW chips that cost 1.5 to 3 points
of top-1 on unseen persons (issue 21). Starting each class weight at its class's mean embedding, with RecNet's
BatchNorm statistics taken from the same data first, turns training into fine-tuning of a working classifier.
The cloud (``veil.train.cloud``) and every RecNet an attack or a benchmark trains
(``veil.attacks.recnet_fit``) use this one function, so they train the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from veil.errors import VeilError
from veil.models.recnet import RecNet

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


@torch.no_grad()
def imprint_class_weights(recnet: RecNet, weights: torch.Tensor | nn.Module, batches: Batches,
                          classes: int) -> None:
    """Set RecNet's BatchNorm statistics to those of all the data, then ``weights`` (emb_dim, classes) to the
    normalised mean of each class's normalised embeddings.

    ``batches()`` yields (inputs, labels) over all the data, each call the same rows; labels are class indices
    (B,) or soft targets (B, classes), whose weights then weigh each row's share of a class mean. ``weights``
    is typed loosely because loss modules expose their parameter as a module attribute. RecNet is
    left in training mode. Deterministic for deterministic batches, so every DDP rank gets the same weights.
    """
    assert isinstance(weights, torch.Tensor), "class weights must be a tensor (emb_dim, classes)"
    if not isinstance(recnet.bn, nn.BatchNorm1d):
        raise VeilError("imprinting sets RecNet's BatchNorm statistics; this RecNet has no normalisation layers")
    recnet.eval()
    seen: list[torch.Tensor] = []
    hook = recnet.bn.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    try:
        for x, _ in batches():
            recnet(x)
    finally:
        hook.remove()
    before_bn = torch.cat(seen)
    mean, var = recnet.bn.running_mean, recnet.bn.running_var
    assert mean is not None and var is not None  # RecNet's BatchNorm tracks running statistics
    mean.copy_(before_bn.mean(0))
    var.copy_(before_bn.var(0))
    sums = torch.zeros(classes, weights.shape[0], device=weights.device)
    for x, y in batches():
        emb = nn.functional.normalize(recnet(x), dim=1)
        targets = nn.functional.one_hot(y, classes).float() if y.ndim == 1 else y.float()
        sums += targets.to(emb.device).T @ emb
    weights.copy_(nn.functional.normalize(sums, dim=1).T)
    recnet.train()
