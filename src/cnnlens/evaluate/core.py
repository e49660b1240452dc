"""Where the model fails: predictions, confusion matrix, most-confused pairs, top losses,
per-class precision/recall/F1, calibration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import ImageDataset, normalize
from ..nn import forward_logits, model_device
from ..errors import CnnlensError


@dataclass(frozen=True)
class EvalResult:
    """Evaluation of a model on one split.

    Attributes:
        split: split name; ``indices`` index the dataset's images.
        labels, preds: ``int64 [n]``; probs ``float32 [n, K]``.
        confusion: ``int64 [K, K]``, rows = true class, columns = predicted.
    """

    split: str
    indices: torch.Tensor
    labels: torch.Tensor
    preds: torch.Tensor
    probs: torch.Tensor
    confusion: torch.Tensor
    classes: list[str]

    @property
    def accuracy(self) -> float:
        return int((self.preds == self.labels).sum()) / max(len(self.labels), 1)

    @property
    def confusion_normalized(self) -> torch.Tensor:
        """Row-normalized confusion (each true class sums to 1; an empty class row stays 0)."""
        c = self.confusion.double()
        return (c / c.sum(1, keepdim=True).clamp_min(1)).float()

    def per_class(self) -> list[dict[str, Any]]:
        """precision, recall, F1 and support per class (0 where undefined, as scikit-learn's zero_division=0)."""
        c = self.confusion.double()
        tp = c.diag()
        pred_n, true_n = c.sum(0), c.sum(1)
        prec = torch.where(pred_n > 0, tp / pred_n.clamp_min(1), torch.zeros_like(tp))
        rec = torch.where(true_n > 0, tp / true_n.clamp_min(1), torch.zeros_like(tp))
        f1 = torch.where(prec + rec > 0, 2 * prec * rec / (prec + rec).clamp_min(1e-300), torch.zeros_like(tp))
        return [{"class": name, "precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                 "support": int(true_n[i])} for i, name in enumerate(self.classes)]

    def confused_pairs(self, k: int = 10) -> list[dict[str, Any]]:
        """Off-diagonal cells, most frequent first: true class, predicted class, count, rate of the true class."""
        norm = self.confusion_normalized
        cells = [(int(self.confusion[i, j]), i, j) for i in range(len(self.classes))
                 for j in range(len(self.classes)) if i != j and self.confusion[i, j] > 0]
        cells.sort(key=lambda t: (-t[0], -float(norm[t[1], t[2]]), t[1], t[2]))
        return [{"true": self.classes[i], "pred": self.classes[j], "true_index": i, "pred_index": j,
                 "count": n, "rate": float(norm[i, j])} for n, i, j in cells[:k]]

    def top_losses(self, k: int = 10) -> list[dict[str, Any]]:
        """The images with the highest cross-entropy loss: index, true, predicted, p(true), p(pred), loss."""
        p_true = self.probs.gather(1, self.labels.view(-1, 1)).squeeze(1)
        loss = -torch.log(p_true.clamp_min(1e-12))
        order = torch.argsort(loss, descending=True)[:k]
        return [{"index": int(self.indices[i]), "true": self.classes[int(self.labels[i])],
                 "pred": self.classes[int(self.preds[i])], "p_true": float(p_true[i]),
                 "p_pred": float(self.probs[i, self.preds[i]]), "loss": float(loss[i])} for i in order]

    def calibration(self, bins: int = 15) -> dict[str, Any]:
        """Reliability diagram data and the expected calibration error (equal-width confidence bins)."""
        conf, pred = self.probs.max(1)
        correct = (pred == self.labels).float()
        edges = torch.linspace(0, 1, bins + 1)
        rows, ece = [], 0.0
        n = len(conf)
        for b in range(bins):
            lo, hi = float(edges[b]), float(edges[b + 1])
            m = (conf > lo) & (conf <= hi) if b > 0 else (conf >= lo) & (conf <= hi)
            cnt = int(m.sum())
            acc = float(correct[m].mean()) if cnt else 0.0
            cf = float(conf[m].mean()) if cnt else 0.0
            ece += cnt / max(n, 1) * abs(acc - cf)
            rows.append({"lo": lo, "hi": hi, "count": cnt, "accuracy": acc, "confidence": cf})
        return {"bins": rows, "ece": ece}

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "n": int(len(self.labels)),
            "accuracy": self.accuracy,
            "classes": self.classes,
            "per_class": self.per_class(),
            "macro_f1": float(sum(r["f1"] for r in self.per_class()) / max(len(self.classes), 1)),
            "confusion": self.confusion.tolist(),
            "confusion_normalized": [[round(v, 6) for v in row] for row in self.confusion_normalized.tolist()],
            "most_confused": self.confused_pairs(),
            "top_losses": self.top_losses(),
            "calibration": self.calibration(),
        }


@torch.no_grad()
def predict_probs(model: nn.Module, images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                  batch_size: int = 256, progress: Callable[[int, int], None] | None = None,
                  tta: str | None = None) -> torch.Tensor:
    """Softmax probabilities ``float32 [N, K]`` for uint8 images ``[N,C,H,W]``, in batches, averaged over
    the test-time augmentation views ``tta`` (none, flip, tencrop); the model's training flags are restored."""
    from .tta import tta_views

    was = [m.training for m in model.modules()]
    model.eval()
    dev = model_device(model)
    out = []
    try:
        for i in range(0, len(images), batch_size):
            views = tta_views(images[i:i + batch_size].to(dev), tta)
            p = sum(F.softmax(forward_logits(model, normalize(v, mean, std)).float(), 1) for v in views) / len(views)
            out.append(p.cpu())
            if progress:
                progress(min(i + batch_size, len(images)), len(images))
    finally:
        for m, t in zip(model.modules(), was):
            m.training = t
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(model: nn.Module, dataset: ImageDataset, split: str = "test", batch_size: int = 256,
             mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
             progress: Callable[[int, int], None] | None = None, tta: str | None = None) -> EvalResult:
    """Evaluate ``model`` on a labeled split of ``dataset`` (normalized with the training statistics
    ``mean``/``std``, by default the dataset's)."""
    idx = dataset.indices(split)
    labels = dataset.labels[idx]
    if len(idx) == 0:
        raise CnnlensError(f"split {split!r} of {dataset.name!r} is empty")
    if (labels < 0).any():
        raise CnnlensError(f"split {split!r} of {dataset.name!r} is unlabeled; use `cnnlens predict` for it")
    probs = predict_probs(model, dataset.images[idx], mean or dataset.mean, std or dataset.std,
                          batch_size, progress, tta)
    k = dataset.num_classes
    if probs.shape[1] != k:
        raise CnnlensError(f"the model outputs {probs.shape[1]} classes but the dataset has {k}")
    preds = probs.argmax(1)
    confusion = torch.bincount(labels * k + preds, minlength=k * k).view(k, k)
    return EvalResult(split=split, indices=idx, labels=labels, preds=preds, probs=probs,
                      confusion=confusion, classes=list(dataset.classes))
