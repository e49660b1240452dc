"""Keras-style layer tables: layer, type, output shape, parameters, trainable; totals; MACs.

The table comes from one forward pass recorded by torchinfo. torchinfo's own "Total mult-adds"
line is not used: it prints its unit as ``Units.MEGABYTES`` and counts BatchNorm parameters as
multiply-adds. cnnlens computes the multiply-accumulates (MACs) itself, for ``Conv2d`` and
``Linear`` layers, per image, and labels them so (1 MAC = one multiply and one add; FLOPs ~ 2 MACs).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import write_csv, write_json
from ..errors import CnnlensError


@dataclass(frozen=True)
class LayerRow:
    """One layer, at its first call. ``params`` counts the parameters the layer owns directly."""

    name: str  # dotted module name ("" never: the root's own parameters are listed as "(model)")
    type: str
    output_shape: tuple[int, ...] | None  # without the batch dimension; None if not a tensor
    params: int
    trainable_params: int
    macs: int  # multiply-accumulates per image (Conv2d and Linear; 0 for other layers)

    @property
    def trainable(self) -> bool:
        return self.trainable_params == self.params


@dataclass(frozen=True)
class ModelSummary:
    """What :func:`summarize` found: rows, and totals that the rows add up to."""

    model: str
    input_shape: tuple[int, ...]  # C, H, W
    rows: tuple[LayerRow, ...]
    total: int
    trainable: int
    non_trainable: int
    buffers: int  # elements of buffers (BatchNorm running statistics...): state, not parameters
    macs: int  # per image

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = [asdict(r) for r in self.rows]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSummary:
        rows = tuple(LayerRow(**{**r, "output_shape": None if r["output_shape"] is None
                                 else tuple(r["output_shape"])}) for r in d["rows"])
        return cls(**{**d, "rows": rows, "input_shape": tuple(d["input_shape"])})

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the summary as JSON (atomically)."""
        return write_json(path, self.to_dict())

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per layer: name, type, output_shape (CxHxW), params, trainable_params, macs."""
        return write_csv(path, ["name", "type", "output_shape", "params", "trainable_params", "macs"],
                         [[r.name, r.type, _shape(r.output_shape, sep="x"), r.params, r.trainable_params,
                           r.macs] for r in self.rows])


def _macs(module: nn.Module, out: Any) -> int:
    """Per-image MACs from the layer's output shape ``[B, ...]``: every output element of a Conv2d
    needs (C_in/groups)*kh*kw of them, of a Linear ``in_features``."""
    if not (isinstance(out, list | tuple) and len(out) > 1 and all(isinstance(v, int) for v in out)):
        return 0
    per_image = 1
    for v in out[1:]:
        per_image *= v
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def summarize(model: nn.Module, input_shape: tuple[int, int, int] | list[int]) -> ModelSummary:
    """Layer table of ``model`` for one input of ``input_shape`` = (C, H, W).

    Runs one forward pass (batch of 2, no gradients, eval mode) on the model's device; the
    model's training flags are restored afterwards. Rows are the leaf layers (and any module with
    parameters of its own) in call order, each at its first call; the rows' params sum to ``total``.
    """
    import torchinfo

    if isinstance(model, torch.jit.ScriptModule):
        raise CnnlensError("layer tables need hooks, which TorchScript models do not take; summarize the "
                         "Python model (FILE.py:ClassName) instead")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise CnnlensError(f"input_shape must be (C, H, W) with positive sizes; got {input_shape!r}")
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    names = {id(m): n for n, m in model.named_modules()}
    modes = [m.training for m in model.modules()]
    x = torch.zeros(2, *shape, device=dev)  # 2: BatchNorm1d in training code paths needs > 1
    try:
        stats = torchinfo.summary(model, input_data=x, verbose=0, depth=1_000, mode="eval",
                                  col_names=("output_size", "num_params"))
    except RuntimeError as e:
        cause = e.__cause__ or e
        raise CnnlensError(f"{type(model).__name__} cannot take input {shape}: {cause}") from None
    finally:
        for m, t in zip(model.modules(), modes):
            m.training = t
    outputs: dict[int, Any] = {}
    for info in stats.summary_list:  # record each module's first output shape
        outputs.setdefault(id(info.module), info.output_size)
    rows = []
    seen = set()
    for info in stats.summary_list:
        mod = info.module
        own = list(mod.parameters(recurse=False))
        if id(mod) in seen or not (info.is_leaf_layer or own):
            continue
        seen.add(id(mod))
        out = outputs.get(id(mod))
        rows.append(LayerRow(
            name=names.get(id(mod)) or "(model)", type=type(mod).__name__,
            output_shape=tuple(out[1:]) if isinstance(out, list | tuple) and out and isinstance(out[0], int)
            else None,
            params=sum(p.numel() for p in own),
            trainable_params=sum(p.numel() for p in own if p.requires_grad),
            macs=_macs(mod, out)))
    # layers never called in forward (e.g. an unused head) still own parameters: list them too
    for n, mod in model.named_modules():
        own = list(mod.parameters(recurse=False))
        if own and id(mod) not in seen:
            rows.append(LayerRow(n or "(model)", type(mod).__name__, None, sum(p.numel() for p in own),
                                 sum(p.numel() for p in own if p.requires_grad), 0))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelSummary(model=type(model).__name__, input_shape=shape, rows=tuple(rows), total=total,
                        trainable=trainable, non_trainable=total - trainable,
                        buffers=sum(b.numel() for b in model.buffers() if b.is_floating_point()),
                        macs=sum(r.macs for r in rows))


def _shape(s: tuple[int, ...] | None, sep: str = ", ") -> str:
    if s is None:
        return "-"
    return sep.join(str(v) for v in s) if sep == "x" else "(None, " + ", ".join(str(v) for v in s) + ")"


def human(n: int) -> str:
    """12345678 -> '12.35M'."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def format_table(summary: ModelSummary, width: int = 80) -> str:
    """The summary as a Keras ``model.summary()``-style text table."""
    w_name = max([len(f"{r.name} ({r.type})") for r in summary.rows] + [12]) + 2
    w_shape = max([len(_shape(r.output_shape)) for r in summary.rows] + [12]) + 2
    w = max(width, w_name + w_shape + 14)
    lines = [f'Model: "{summary.model}"   input: {_shape(summary.input_shape)}', "_" * w,
             f"{'Layer (type)':<{w_name}}{'Output Shape':<{w_shape}}Param #", "=" * w]
    for i, r in enumerate(summary.rows):
        mark = "" if r.trainable else "  (frozen)" if r.trainable_params == 0 else "  (partly frozen)"
        lines.append(f"{r.name + ' (' + r.type + ')':<{w_name}}{_shape(r.output_shape):<{w_shape}}"
                     f"{r.params:,}{mark}")
        lines.append("_" * w if i < len(summary.rows) - 1 else "=" * w)
    lines += [f"Total params: {summary.total:,}", f"Trainable params: {summary.trainable:,}",
              f"Non-trainable params: {summary.non_trainable:,}", "_" * w,
              f"Buffers (BatchNorm running statistics etc., not parameters): {summary.buffers:,}",
              f"Multiply-accumulates per image (Conv2d + Linear): {summary.macs:,} ({human(summary.macs)})"]
    return "\n".join(lines)
