"""The Lightning module: batch-level augmentation on the device, loss, metrics, optimizers."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data.base import normalize
from ..errors import CnnlensError
from ..models.weights import nonfinite_tensors

log = logging.getLogger(__name__)


class NonFiniteTraining(CnnlensError):
    """Training met a non-finite loss or weights and stopped; nothing non-finite was saved.

    ``epoch`` (1-based) and ``step`` (1-based batch of that epoch; ``None`` for validation or a
    checkpoint) say where.
    """

    def __init__(self, message: str, epoch: int, step: int | None) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step


def finetune_factors(cfg: TrainConfig, epoch: int) -> tuple[float, float]:
    """Learning-rate multipliers ``(head, backbone)`` in epoch ``epoch`` (0-based) of fine-tuning.

    Epochs ``< F = freeze_epochs``: ``(1, 0)``, the head alone at ``lr`` (the backbone is frozen).
    Then both at the same multiplier ``f``: a linear warmup over ``W = warmup_epochs`` epochs,
    ``f = (j + 1) / (W + 1)`` in the ``j``-th epoch after the unfreeze, then with the cosine
    scheduler ``f = (1 + cos(pi * i / R)) / 2`` in the ``i``-th of the ``R`` remaining epochs (1
    with scheduler none). The group learning rates are ``lr * f`` and ``lr * backbone_lr_scale * f``.
    """
    if epoch < cfg.freeze_epochs:
        return 1.0, 0.0
    j = epoch - cfg.freeze_epochs
    if j < cfg.warmup_epochs:
        f = (j + 1) / (cfg.warmup_epochs + 1)
    elif cfg.scheduler == "cosine":
        rest = max(cfg.epochs - cfg.freeze_epochs - cfg.warmup_epochs, 1)
        f = 0.5 * (1.0 + math.cos(math.pi * min(j - cfg.warmup_epochs, rest) / rest))
    else:
        f = 1.0
    return f, f


def seed_for(*parts: int) -> int:
    """A reproducible 63-bit seed from integers (epoch, batch, ...), independent of process state."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


class Classifier(L.LightningModule):
    """Wraps any classifier ``nn.Module``. Batches arrive as ``(uint8 [B,C,H,W], int64 [B])``.

    Augmentation and normalization happen here, on the whole batch, on the training device. All
    randomness is derived from ``(seed, epoch, batch)`` so a resumed run repeats an uninterrupted one.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, mean: tuple[float, ...], std: tuple[float, ...],
                 num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.mean, self.std = tuple(mean), tuple(std)
        self.num_classes = num_classes
        self.nonfinite_skipped = 0  # batches skipped in this epoch (cfg.skip_nonfinite)
        from torchmetrics import MeanMetric

        # weighted means kept as (sum, count) and reduced across ranks by torchmetrics: exact under DDP
        self.metrics = nn.ModuleDict({f"{s}_{m}": MeanMetric() for s in ("train", "val") for m in ("loss", "acc")})
        self._augment = None
        self._backbone: list[nn.Parameter] = []  # fine-tuning: the parameters frozen at first
        if cfg.augment:
            from ..data.augment import AugmentConfig, augment_batch

            acfg = AugmentConfig(**cfg.augment)
            self._augment = lambda x, g: augment_batch(x, acfg, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _prepare(self, images: torch.Tensor, batch_idx: int, train: bool) -> torch.Tensor:
        if train and self._augment is not None:
            g = torch.Generator(device=images.device)
            g.manual_seed(seed_for(self.cfg.seed, self.current_epoch, batch_idx, self.global_rank))
            x = self._augment(images.float() / 255.0, g) * 255.0
            return normalize(x, self.mean, self.std)
        return normalize(images, self.mean, self.std)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str
              ) -> torch.Tensor | None:
        images, labels = batch
        x = self._prepare(images, batch_idx, stage == "train")
        logits = self.model(x)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.cfg.label_smoothing if stage == "train" else 0.0)
        if not self._all_finite(loss):
            return self._nonfinite(loss, batch_idx, stage)
        n = labels.shape[0]
        lm, am = self.metrics[f"{stage}_loss"], self.metrics[f"{stage}_acc"]
        lm.update(loss.detach(), weight=n)
        am.update((logits.argmax(1) == labels).float())
        self.log(f"{stage}_loss", lm, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{stage}_acc", am, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every process (data-parallel processes decide together, so
        that they skip or stop at the same batch instead of waiting for each other)."""
        finite = bool(torch.isfinite(loss.detach()))
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            finite = bool(trainer.strategy.reduce_boolean_decision(finite, all=True))
        return finite

    def _nonfinite(self, loss: torch.Tensor, batch_idx: int, stage: str) -> None:
        """A non-finite loss: skip the batch (``skip_nonfinite``, training only) or stop training."""
        epoch, step = self.current_epoch + 1, batch_idx + 1
        mine = loss.detach()
        value = str(float(mine)) if not bool(torch.isfinite(mine)) else "not finite (on another process)"
        if stage == "train" and self.cfg.skip_nonfinite:
            if self.nonfinite_skipped == 0:
                log.warning("epoch %d, step %d: the loss is %s; skipping the batch (skip_nonfinite); every "
                            "skipped batch is counted in history.csv (skipped_nonfinite)", epoch, step, value)
            self.nonfinite_skipped += 1
            return None  # Lightning skips the backward pass and the optimizer step
        if stage == "train":
            where = f"the training loss became {value} at epoch {epoch}, step {step} (global step " \
                    f"{self.global_step + 1})"
        else:
            where = f"the validation loss became {value} after epoch {epoch} (validation batch {step}): " \
                    "the weights diverged during that epoch"
        raise NonFiniteTraining(where, epoch, step if stage == "train" else None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = [k.removeprefix("model.") for k in nonfinite_tensors(checkpoint.get("state_dict", {}))]
        if bad:  # never replace a good checkpoint with non-finite weights
            raise NonFiniteTraining(f"after epoch {self.current_epoch + 1} the weights hold NaN or infinite "
                                    f"values ({', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''})",
                                    self.current_epoch + 1, None)

    def on_train_epoch_start(self) -> None:
        self.nonfinite_skipped = 0
        # dropout etc. draw from the global generator: reseed per epoch so resume is exact
        torch.manual_seed(seed_for(self.cfg.seed, self.current_epoch, 7919, self.global_rank))
        if self._backbone:  # fine-tuning: the backbone is frozen for the first freeze_epochs epochs
            frozen = self.current_epoch < self.cfg.freeze_epochs
            for p in self._backbone:
                p.requires_grad_(not frozen)

    def on_fit_end(self) -> None:
        for p in self._backbone:  # the model leaves training as trainable as it came
            p.requires_grad_(True)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, batch_idx, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, batch_idx, "val")

    def configure_optimizers(self) -> Any:
        c = self.cfg
        params: Any = [p for p in self.model.parameters() if p.requires_grad]
        if c.finetuning:  # two parameter groups: [head at lr, backbone at lr * backbone_lr_scale]
            from ..models.heads import split_parameters

            _, head, backbone = split_parameters(self.model, self.num_classes)
            self._backbone = [p for p in backbone if p.requires_grad]
            params = [{"params": [p for p in head if p.requires_grad], "lr": c.lr, "name": "head"},
                      {"params": self._backbone, "lr": c.lr * c.backbone_lr_scale, "name": "backbone"}]
        if c.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        elif c.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                                  weight_decay=c.weight_decay)
        if c.finetuning:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda e: finetune_factors(c, e)[0],
                                                            lambda e: finetune_factors(c, e)[1]])
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if c.scheduler == "none":
            return opt
        if c.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
        elif c.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma)
        else:
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=c.gamma, patience=2)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_acc"}}
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
