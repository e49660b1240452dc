"""Explain raw dataset images: what ``cnnlens explain RUN`` computes.

``explain_images`` normalizes ``uint8`` images and runs :func:`explain_many`; it returns the
explanations and writes nothing. The run directory's files (``explain/<method>.npy``,
``explanations.json``) are the record :class:`cnnlens.rundir.ExplainMaps`, saved by
:func:`cnnlens.pipeline.explain_run`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .core import Explanation, TargetSpec
from .many import explain_many
from .notes import map_notes
from ..errors import CnnlensError

log = logging.getLogger(__name__)


def normalize_images(images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``uint8 [N,C,H,W]`` -> normalized ``float32``, ``(x/255 - mean) / std`` per channel."""
    if (not isinstance(images_uint8, torch.Tensor) or images_uint8.dtype != torch.uint8
            or images_uint8.ndim != 4):
        got = (f"{images_uint8.dtype} {tuple(images_uint8.shape)}" if isinstance(images_uint8, torch.Tensor)
               else type(images_uint8).__name__)
        raise CnnlensError(f"images_uint8 must be uint8 [N,C,H,W]; got {got}")
    c = images_uint8.shape[1]
    if len(mean) != c or len(std) != c:
        raise CnnlensError(f"mean and std need one value per channel ({c}); got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise CnnlensError(f"std must be positive; got {tuple(std)}")
    from ..data.base import normalize

    return normalize(images_uint8, tuple(mean), tuple(std))


def select_per_class(labels: torch.Tensor | Sequence[int], per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` images of each class (in label order), ``int64 [M]``."""
    if per_class < 1:
        raise CnnlensError(f"per_class must be >= 1; got {per_class}")
    lab = torch.as_tensor(labels).view(-1)
    out = [(lab == c).nonzero().view(-1)[:per_class] for c in sorted(set(lab[lab >= 0].tolist()))]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _scalars(extras: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of extras: per-image 1-D tensors and plain values."""
    out: dict[str, Any] = {}
    for k, v in extras.items():
        if isinstance(v, torch.Tensor):
            if v.ndim <= 1:
                out[k] = v.detach().cpu().tolist()
        elif isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif isinstance(v, dict) and all(isinstance(x, str | int | float) for x in v.values()):
            out[k] = dict(v)
    return out


def explain_images(model: nn.Module, images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                   methods: Sequence[str], targets: TargetSpec = None,
                   labels: torch.Tensor | Sequence[int] | None = None, *,
                   layer: str | nn.Module | None = None, device: str | torch.device | None = None,
                   chunk_size: int | None = None, progress: Callable[[int, int], None] | None = None,
                   method_options: dict[str, dict[str, Any]] | None = None,
                   indices: Sequence[int] | None = None, notes_out: list[str] | None = None,
                   **options: Any) -> dict[str, Explanation]:
    """Explain raw images with several methods (shared passes), on the CPU afterwards.

    Args:
        model: the classifier (returned untouched).
        images_uint8: ``uint8 [N, C, H, W]`` raw pixels; ``mean``/``std`` the model's normalization.
        methods: method names (shared passes via :func:`explain_many`).
        targets: ``None``/``"pred"`` (predicted), ``"label"`` (needs ``labels``), an int or one per image.
        device: where to compute (default: the model's device).
        indices: the images' names in the notes (:func:`cnnlens.explain.notes.map_notes`, logged as
            warnings); ``notes_out``: a list the notes are appended to (the pipeline records them).

    Returns:
        ``{method: Explanation}`` with maps ``float32 [N, H, W]`` on the CPU.
    """
    x = normalize_images(images_uint8, mean, std)
    if device is not None:
        x = x.to(device)
    lab = None if labels is None else torch.as_tensor(labels).long().view(-1)
    results = explain_many(model, x, list(methods), target=targets, layer=layer, labels=lab,
                           chunk_size=chunk_size, progress=progress, method_options=method_options, **options)
    results = {m: _to_cpu(e) for m, e in results.items()}
    # zero maps, a coarse CAM layer: logged here; the pipeline keeps them in the ExplainMaps record
    notes = map_notes(model, x, results, indices)
    if notes_out is not None:
        notes_out.extend(notes)
    return results


def explain_confused_pairs(model: nn.Module, images_uint8: torch.Tensor, mean: Sequence[float],
                           std: Sequence[float], labels: torch.Tensor | Sequence[int],
                           predicted: torch.Tensor | Sequence[int], pairs: Sequence[tuple[int, int]],
                           method: str = "gradcam", per_pair: int = 3, **options: Any
                           ) -> tuple[list[int], Explanation, Explanation] | None:
    """For each pair (A, B): up to ``per_pair`` images of A predicted as B, explained for A and for B.

    Returns ``(chosen, explanation for A, explanation for B)``, ``chosen`` being the positions in
    ``images_uint8`` of the explained images (pair by pair), or ``None`` when no image matches any
    pair. :func:`cnnlens.report.fig_explain.confused_pairs_figure` draws them.
    """
    lab = torch.as_tensor(labels).view(-1).cpu()
    pred = torch.as_tensor(predicted).view(-1).cpu()
    if lab.shape != pred.shape or lab.numel() != images_uint8.shape[0]:
        raise CnnlensError(f"labels ({lab.numel()}) and predicted ({pred.numel()}) need one entry per image "
                         f"({images_uint8.shape[0]})")
    chosen: list[int] = []
    for a, b in pairs:
        chosen += ((lab == a) & (pred == b)).nonzero().view(-1)[:per_pair].tolist()
    if not chosen:
        log.info("no images for the confused pairs %s", list(pairs))
        return None
    sel = torch.tensor(chosen)
    imgs = images_uint8[sel]
    x = normalize_images(imgs, mean, std)
    from .core import explain

    ea = _to_cpu(explain(model, x, method, target=lab[sel], **options))
    eb = _to_cpu(explain(model, x, method, target=pred[sel], **options))
    return chosen, ea, eb


def _to_cpu(e: Explanation) -> Explanation:
    from dataclasses import replace

    probs = None if e.probs is None else e.probs.cpu()
    return replace(e, maps=e.maps.cpu(), targets=e.targets.cpu(), probs=probs,
                   extras={k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in e.extras.items()})


def _file_name(method: str) -> str:
    return method.replace(":", "_").replace("/", "_")
