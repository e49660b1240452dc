"""The usual feature-visualization baseline, kept for comparison with :func:`render`: plain
gradient ascent on the normalized pixels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..nn import model_device, model_guard
from . import objectives as obj
from .render import InputSpace, Rendered, SizeSpec, capture, quantize


def naive_pixel_ascent(
    model: nn.Module,
    objective: obj.Objective,
    *,
    input_size: SizeSpec,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch: int = 1,
    steps: int = 30,
    lr: float = 0.1,
    weight_decay: float = 1e-6,
    seed: int = 0,
) -> Rendered:
    """The usual baseline, kept for comparison: plain gradient ascent on the normalized pixels with
    Adam(``lr``, ``weight_decay``) for 30 steps from a uniform grey-ish random image (as in the
    widely copied ``pytorch-cnn-visualizations`` ``CNNLayerVisualization``); no parameterization, no
    transforms. The result is clipped to [0,1] and quantized for export like :func:`render`'s.
    """
    space = InputSpace.make(input_size, mean, std)
    dev = model_device(model)
    g = torch.Generator().manual_seed(int(seed))
    img0 = (torch.rand((batch, space.channels, *space.size), generator=g) * 30 + 150) / 255
    x = space.normalize(img0.to(dev)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr, weight_decay=weight_decay)
    hist = torch.empty(steps, batch)
    with model_guard(model) as handles, capture(model, objective.layers, handles) as run:
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            s = objective(run(x))
            (-s.sum()).backward()
            opt.step()
            hist[i] = s.detach().float().cpu()
        with torch.no_grad():
            images = quantize(space.denormalize(x.detach()))
            inputs = space.normalize(images)
            scores = objective(run(inputs)).float()
    return Rendered(
        images=images, inputs=inputs, scores=scores, history=hist, objective=objective.name, seed=int(seed)
    )
