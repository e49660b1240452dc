"""Dataset examples: the real images (and image patches) that activate each filter most.

Shown beside a synthetic feature visualization they tell the reader what the filter responds to in
real data (Olah et al., "Feature Visualization", Distill 2017, "dataset examples").

The patch of an example is the part of the input that can influence the filter's strongest unit:
the bounding box of the non-zero input gradient of that unit (its receptive field on this image).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..nn import model_device, model_guard
from .render import capture, filter_layer
from ..errors import CnnlensError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    """Top-``k`` dataset examples per filter.

    Attributes:
        layer: dotted name of the module read.
        channels: ``int64 [n]`` filters.
        indices: ``int64 [n, k]`` indices into the images given, strongest first.
        values: ``float [n, k]`` the ranking score (mean activation of the filter over positions,
            or its maximum with ``score="max"``).
        positions: ``int64 [n, k, 2]`` ``(y, x)`` of the filter's strongest unit in the layer's map.
        boxes: ``int64 [n, k, 4]`` ``(top, left, bottom, right)`` (exclusive) of that unit's
            receptive field in input pixels.
    """

    layer: str
    channels: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor
    boxes: torch.Tensor

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """Crop the receptive-field patches from ``images`` (the same images, typically the raw uint8
        ``[N, C, H, W]``): ``[n, k, C, ph, pw]``, one window size for all (the largest box), centred on
        each box and kept inside the image."""
        n, k = self.indices.shape
        hh = self.boxes[..., 2] - self.boxes[..., 0]
        ww = self.boxes[..., 3] - self.boxes[..., 1]
        H, W = images.shape[-2:]
        ph, pw = min(int(hh.max()), H), min(int(ww.max()), W)
        out = images.new_zeros((n, k, images.shape[1], ph, pw))
        for i in range(n):
            for j in range(k):
                t, l_, b, r = self.boxes[i, j].tolist()
                cy, cx = (t + b) // 2, (l_ + r) // 2
                top = min(max(cy - ph // 2, 0), H - ph)
                left = min(max(cx - pw // 2, 0), W - pw)
                out[i, j] = images[self.indices[i, j], :, top : top + ph, left : left + pw]
        return out


def dataset_examples(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | int | nn.Module,
    channels: Sequence[int] | None = None,
    *,
    k: int = 4,
    score: str = "mean",
    batch_size: int = 256,
    bn: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Examples:
    """For each filter in ``channels`` (default all) of ``layer``, the ``k`` images of ``x``
    (normalized ``[N, C, H, W]``) with the highest ``score``, with their receptive-field boxes.

    ``score="mean"`` ranks by the mean activation over positions (what :func:`channel` maximizes),
    ``"max"`` by the strongest single unit.
    """
    if score not in ("mean", "max"):
        raise CnnlensError(f"score must be 'mean' or 'max'; got {score!r}")
    if x.ndim != 4 or not x.is_floating_point():
        raise CnnlensError(f"x must be normalized float images [N, C, H, W]; got {x.dtype} {tuple(x.shape)}")
    if k < 1:
        raise CnnlensError(f"k must be >= 1; got {k}")
    n_img = x.shape[0]
    if k > n_img:
        raise CnnlensError(f"k={k} is larger than the number of images ({n_img}); lower k")
    name, _ = filter_layer(model, layer, bn)
    dev = model_device(model)
    scores, argmax = [], []
    with model_guard(model) as handles, capture(model, [name], handles) as run:
        with torch.no_grad():
            for i in range(0, n_img, batch_size):
                a = run(x[i : i + batch_size].to(dev, torch.float32))[name]
                if a.ndim != 4:
                    raise CnnlensError(
                        f"layer {name!r} outputs shape {tuple(a.shape)}; dataset examples need "
                        "a conv layer [B, K, h, w]"
                    )
                flat = a.flatten(2)
                scores.append((flat.mean(2) if score == "mean" else flat.amax(2)).float().cpu())
                argmax.append(flat.argmax(2).cpu())
                if progress is not None:
                    progress(min(i + batch_size, n_img), n_img)
        s = torch.cat(scores)  # [N, K]
        am = torch.cat(argmax)  # [N, K]
        h, w = a.shape[-2:]
        n_ch = s.shape[1]
        chans = torch.arange(n_ch) if channels is None else torch.as_tensor(list(channels)).long().view(-1)
        bad = (chans < 0) | (chans >= n_ch)
        if bad.any():
            raise CnnlensError(
                f"channel {int(chans[bad][0])} is out of range for layer {name!r} (0..{n_ch - 1})"
            )
        vals, idx = s[:, chans].topk(k, dim=0)  # [k, n]
        vals, idx = vals.T.contiguous(), idx.T.contiguous()  # [n, k]
        pos_flat = am[idx, chans[:, None]]  # [n, k]
        pos = torch.stack([pos_flat // w, pos_flat % w], -1)
        boxes = _receptive_boxes(run, x, name, idx, chans, pos, dev)
    return Examples(layer=name, channels=chans, indices=idx, values=vals, positions=pos, boxes=boxes)


def _receptive_boxes(
    run: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    x: torch.Tensor,
    name: str,
    idx: torch.Tensor,
    chans: torch.Tensor,
    pos: torch.Tensor,
    dev: torch.device,
    chunk: int = 256,
) -> torch.Tensor:
    """Bounding box of the non-zero input gradient of each selected unit -> ``int64 [n, k, 4]``."""
    n, k = idx.shape
    flat_idx = idx.reshape(-1)
    flat_c = chans[:, None].expand(n, k).reshape(-1)
    flat_p = pos.reshape(-1, 2)
    H, W = x.shape[-2:]
    out = torch.empty(n * k, 4, dtype=torch.long)
    for s in range(0, n * k, chunk):
        sl = slice(s, s + chunk)
        xi = x[flat_idx[sl]].to(dev, torch.float32).requires_grad_(True)
        a = run(xi)[name]
        rows = torch.arange(xi.shape[0], device=dev)
        units = a[rows, flat_c[sl].to(dev), flat_p[sl, 0].to(dev), flat_p[sl, 1].to(dev)]
        (g,) = torch.autograd.grad(units.sum(), xi)
        support = g.detach().abs().sum(1) > 0  # [b, H, W]
        for j, m in enumerate(support.cpu()):
            ys = torch.nonzero(m.any(1)).flatten()
            xs = torch.nonzero(m.any(0)).flatten()
            if len(ys) == 0:
                log.debug(
                    "unit of channel %d has zero input gradient; using the whole image as its box",
                    int(flat_c[s + j]),
                )
                out[s + j] = torch.tensor([0, 0, H, W])
            else:
                out[s + j] = torch.tensor([int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1])
    return out.view(n, k, 4)
