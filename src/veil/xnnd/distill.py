"""Stage 2 (paper 4.2): a teacher RecNet on clean features, distilled into the server's RecNet on noised ones.

The teacher (RecNet + cosine head) learns the owner's training identities from the baseline
features LayerNorm(ExtNet(x)); it is also Table 4's baseline server. The student, the RecNet the
trusted server will hold, sees only the noised features FG(x) of the same images and learns
``kd_weight * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + ce_weight * CosFace-CE``, so it
inherits the teacher's view of who is who even though its inputs carry the adversarial noise.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from veil.errors import VeilError
from veil.models.recnet import RecNet, build_recnet
from veil.train.imprint import imprint_class_weights
from veil.train.progress import progress_bar
from veil.train.schedule import warmup_cosine
from veil.xnnd.config import DistillConfig
from veil.xnnd.heads import CosineHead


def _fit(features: torch.Tensor, labels: torch.Tensor, cfg: DistillConfig, teacher_logits: torch.Tensor | None,
         device: torch.device, show_progress: bool, title: str) -> tuple[RecNet, CosineHead, dict]:
    if features.ndim != 3 or len(features) != len(labels):
        raise VeilError(f"features must be (n, N, D) with n labels, got {tuple(features.shape)}, {len(labels)}")
    torch.manual_seed(cfg.seed)
    labels = torch.as_tensor(labels, dtype=torch.long)
    classes = int(labels.max()) + 1
    _, n_tok, dim = features.shape
    recnet = build_recnet(n_tok, dim, cfg).to(device)
    head = CosineHead(recnet.cfg.emb_dim, classes, cfg.scale, cfg.margin).to(device)
    if cfg.head_init == "centroids":  # the cloud's recipe, the same way (veil.train.imprint)
        step = 512
        imprint_class_weights(recnet, head.weight.T, lambda: ((features[i:i + step].to(device).float(),
                                                               labels[i:i + step].to(device))
                                                              for i in range(0, len(features), step)), classes)
    tensors = [features, labels] + ([teacher_logits] if teacher_logits is not None else [])
    data = TensorDataset(*tensors)
    batch = min(cfg.batch_size, len(data))
    loader = DataLoader(data, batch_size=batch, drop_last=True,
                        sampler=RandomSampler(data, generator=torch.Generator().manual_seed(cfg.seed)))
    opt = torch.optim.SGD(list(recnet.parameters()) + list(head.parameters()), lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.epochs * len(loader), int(cfg.warmup_epochs * len(loader)))
    history: dict = {"config": asdict(cfg), "loss": [], "kl": [], "rows": len(data), "classes": classes}
    start = time.time()
    recnet.train()
    t = cfg.temperature
    with progress_bar(show_progress) as bar:
        task = bar.add_task(title, total=cfg.epochs * len(loader), status="")
        for epoch in range(cfg.epochs):
            total, kl_sum = 0.0, 0.0
            for row in loader:
                x, y = row[0].to(device).float(), row[1].to(device)
                emb = recnet(x)
                loss = cfg.ce_weight * head.margin_loss(emb, y) if cfg.ce_weight else torch.zeros((), device=device)
                if teacher_logits is not None:
                    student = F.log_softmax(head.logits(emb) / t, dim=1)
                    teacher = F.softmax(row[2].to(device).float() / t, dim=1)
                    kl = F.kl_div(student, teacher, reduction="batchmean")
                    kl_sum += kl.item()
                    if cfg.kd_weight:
                        loss = loss + cfg.kd_weight * t * t * kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
                bar.update(task, advance=1, status=f"epoch {epoch + 1} loss {loss.item():.3f}")
            history["loss"].append(total / len(loader))
            if teacher_logits is not None:
                history["kl"].append(kl_sum / len(loader))
    history["seconds"] = time.time() - start
    return recnet.cpu().eval(), head.cpu().eval(), history


def train_teacher(clean: torch.Tensor, labels: torch.Tensor, cfg: DistillConfig | None = None,
                  device: torch.device | str = "cpu", show_progress: bool = True) -> tuple[RecNet, CosineHead, dict]:
    """Teacher RecNet + head on clean (baseline) features with CosFace alone."""
    cfg = cfg or DistillConfig(kd_weight=0.0)
    return _fit(clean, labels, cfg, None, torch.device(device), show_progress, "xnnd teacher (clean features)")


@torch.no_grad()
def teacher_logits(recnet: RecNet, head: CosineHead, clean: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The teacher's scaled cosine logits for every row of ``clean``, computed once (the teacher is frozen)."""
    recnet.eval()
    return torch.cat([head.logits(recnet(clean[i:i + batch_size].float())) for i in range(0, len(clean), batch_size)])


def distill_server(noised: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, cfg: DistillConfig | None = None,
                   device: torch.device | str = "cpu", show_progress: bool = True) -> tuple[RecNet, dict]:
    """The server's RecNet on noised features, matching the teacher's ``logits`` of the same rows (KL + CE)."""
    cfg = cfg or DistillConfig()
    if len(logits) != len(noised):
        raise VeilError(f"{len(logits)} teacher logit rows for {len(noised)} noised features")
    recnet, _, history = _fit(noised, labels, cfg, logits, torch.device(device), show_progress,
                              "xnnd distil server RecNet (noised features)")
    return recnet, history
