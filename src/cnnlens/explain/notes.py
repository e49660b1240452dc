"""What a user must not miss about a set of maps, said in the log and kept for the report.

* CAM maps that are zero everywhere (``extras['zero_maps']``): the method found no positive
  evidence at its layer, so the map shows nothing, which reads like "nothing matters".
* A CAM layer whose maps have fewer than :data:`COARSE_SIDE` cells a side (``extras['cam']``
  ``[B, h, w]``): the upsampled map can only tell coarse regions apart. The note names the
  deepest ``Conv2d`` with a finer output, found with one no-grad forward of one image.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .core import Explanation, model_device, model_guard

log = logging.getLogger(__name__)

COARSE_SIDE = 4
"""A CAM map with fewer cells than this on a side is called coarse (a 4x4 map is a ResNet-like 7x7's
near neighbour; 2x2 can only say which quadrant)."""


def map_notes(model: nn.Module, x: torch.Tensor, results: Mapping[str, Explanation],
              indices: Sequence[int] | None = None) -> list[str]:
    """Log a warning for each note on ``results`` (from :func:`explain_many` on ``x``) and return them.

    ``x``: the normalized input ``[N, C, H, W]`` the maps were computed on (one image of it is
    enough for the layer probe); ``indices``: the images' names in the notes (default 0..N-1).
    """
    n = x.shape[0]
    names = [f"#{i}" for i in (indices if indices is not None else range(n))]
    notes = [z for m, e in results.items() if (z := _zero_note(m, e, names)) is not None]
    cams: dict[tuple[str, tuple[int, int]], list[str]] = {}
    for m, e in results.items():
        cam = e.extras.get("cam")
        if e.layer and isinstance(cam, torch.Tensor) and cam.ndim == 3 and min(cam.shape[-2:]) < COARSE_SIDE:
            cams.setdefault((e.layer, (int(cam.shape[-2]), int(cam.shape[-1]))), []).append(m)
    for (layer, (h, w)), methods in cams.items():
        finer = finer_layer(model, x[:1], (h, w))
        hint = (f" A finer layer is {finer[0]!r} ({finer[1][0]}×{finer[1][1]}): pass --layer {finer[0]} "
                f"(Python: layer={finer[0]!r})." if finer else " No Conv2d of the model has a finer map.")
        verb = "give" if len(methods) > 1 else "gives"
        notes.append(f"{_join(methods)} at layer {layer!r} {verb} a coarse {h}×{w} map (upsampled to "
                     f"{x.shape[-2]}×{x.shape[-1]}): it can only tell large regions apart.{hint}")
    for note in notes:
        log.warning("%s", note)
    return notes


def _zero_note(method: str, e: Explanation, names: list[str]) -> str | None:
    zero = e.extras.get("zero_maps")
    if zero is None:
        return None
    flags = [bool(v) for v in (zero.tolist() if isinstance(zero, torch.Tensor) else zero)]
    hit = [names[i] for i, f in enumerate(flags) if f and i < len(names)]
    if not hit:
        return None
    shown = ", ".join(hit[:10]) + (", ..." if len(hit) > 10 else "")
    at = f" at layer {e.layer!r}" if e.layer else ""
    return (f"{method}: {len(hit)} of {len(flags)} maps are zero everywhere (images {shown}): it found no "
            f"positive evidence{at} for the explained class, so those maps show nothing (which does not "
            "mean nothing matters); try another layer or method.")


def finer_layer(model: nn.Module, x1: torch.Tensor, size: tuple[int, int]
                ) -> tuple[str, tuple[int, int]] | None:
    """The deepest ``Conv2d`` (in module order) whose output on ``x1`` is larger than ``size`` and
    has at least :data:`COARSE_SIDE` cells a side: ``(name, (h, w))``, or ``None``."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    shapes: dict[str, tuple[int, int]] = {}

    def keep(name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                shapes[name] = (int(out.shape[-2]), int(out.shape[-1]))
        return hook

    with model_guard(model) as handles:
        handles.extend(m.register_forward_hook(keep(n)) for n, m in convs)
        try:
            with torch.no_grad():
                model(x1.to(model_device(model), torch.float32))
        except Exception:  # noqa: BLE001 - a hint only; the maps were already computed
            return None
    ok = [(n, s) for n, s in shapes.items()
          if min(s) >= COARSE_SIDE and s[0] * s[1] > size[0] * size[1]]
    order = {n: i for i, (n, _) in enumerate(convs)}
    return max(ok, key=lambda t: order[t[0]]) if ok else None


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
