"""Generic helpers for any ``nn.Module`` classifier: its device, a guard that hands it back untouched,
a checked forward pass, input checks, and finding a layer by name, index or module.

They sit below every stage (explain, evaluate, metrics, featureviz all use them), so none of those
has to import another to reach them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .errors import CnnlensError, CnnlensTypeError
from .registry import did_you_mean

__all__ = ["ModelState", "check_input", "forward_logits", "leaf_layers", "model_device", "model_guard",
           "model_state", "resolve_layer"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (else first buffer; a model with neither: CPU)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@dataclass
class ModelState:
    """What :func:`model_guard` changes and puts back, and where the model lives, from one walk of
    its modules (:func:`model_state`): the modules in training mode, the parameters that require
    grad (each once) and their ``.grad``, and the devices of all parameters and buffers."""

    training: list[nn.Module]
    params: list[nn.Parameter]
    grads: list[torch.Tensor | None]
    devices: set[torch.device]


def model_state(model: nn.Module) -> ModelState:
    """One walk over ``model``'s modules collecting a :class:`ModelState` (what
    :func:`model_guard` and :func:`cnnlens.explain.checks.check_model_device` need; one walk instead
    of one per ``modules()``/``parameters()``/``buffers()`` scan)."""
    training: list[nn.Module] = []
    params: dict[int, nn.Parameter] = {}
    tensors: dict[int, torch.Tensor] = {}
    for m in model.modules():
        if m.training:
            training.append(m)
        for p in m._parameters.values():
            if p is not None:
                tensors[id(p)] = p
                if p.requires_grad:
                    params[id(p)] = p
        for b in m._buffers.values():
            if b is not None:
                tensors[id(b)] = b
    plist = list(params.values())
    return ModelState(training=training, params=plist, grads=[p.grad for p in plist],
                      devices={t.device for t in tensors.values()})


@contextlib.contextmanager
def model_guard(model: nn.Module, state: ModelState | None = None
                ) -> Iterator[list[torch.utils.hooks.RemovableHandle]]:
    """Put ``model`` in eval mode with frozen parameters; restore everything on exit, also on error.

    Only what differs is changed and put back: the modules in training mode, the parameters that
    require grad, and their ``.grad`` (kept as they were). Yields a list; hook handles appended to
    it are removed on exit. ``state``: the model's :func:`model_state`, when the caller has just
    taken it (saves a walk; it must be taken right before, with nothing changed in between).
    """
    st = state if state is not None else model_state(model)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    for m in st.training:
        object.__setattr__(m, "training", False)  # what model.eval() does, without its walk per module
    for p in st.params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield handles
    finally:
        for h in handles:
            h.remove()
        for m in st.training:
            object.__setattr__(m, "training", True)
        for p, g in zip(st.params, st.grads):
            p.requires_grad_(True)
            if p.grad is not g:
                p.grad = g


def forward_logits(model: nn.Module, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """``model(x)``, checked to be logits ``[B, K]``; a model that cannot take ``x`` is a ValueError.

    ``channels_last``: pass a channels-last copy of ``x`` (differentiable; see
    :func:`cnnlens.explain.core.use_channels_last`). Not for a single image: with one row, the CPU
    kernels took another path whose max-pooling gradients broke exact ties differently, so one
    image's map differed from its map in a batch.
    """
    if channels_last and x.shape[0] > 1:
        x = x.clone(memory_format=torch.channels_last)
    try:
        out = model(x)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as e:  # wrong channels/size for the model: torch's message, said at our level
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CnnlensError(f"the model fails on input {tuple(x.shape)} ({first}). Check that the images "
                         "have the channel count and size the model was built for") from e
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CnnlensError(f"the model must return logits [B, num_classes]; for input "
                         f"{tuple(x.shape)} it returned {shape}. Wrap it so forward() returns the "
                         "class scores")
    return out


def check_input(x: torch.Tensor) -> None:
    """``x`` must be a finite, floating ``[B, C, H, W]`` batch with at least one image."""
    if not isinstance(x, torch.Tensor):
        raise CnnlensTypeError(f"x must be a float tensor [B,C,H,W]; got {type(x).__name__}")
    if x.device.type == "meta":
        raise CnnlensError("x is on the meta device, which holds no values; give the images on the CPU or "
                           "the model's device")
    if x.ndim == 3:
        raise CnnlensError(f"x must be [B,C,H,W]; got {tuple(x.shape)} (add a batch dimension: x[None])")
    if x.ndim != 4:
        raise CnnlensError(f"x must be [B,C,H,W]; got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise CnnlensError(f"x holds no images (shape {tuple(x.shape)}); give at least one")
    if not x.is_floating_point():
        raise CnnlensError(f"x must be a normalized float tensor; got {x.dtype} (normalize uint8 images "
                         "with dataset.normalize)")
    if not torch.isfinite(x).all():
        raise CnnlensError("x contains NaN or infinite values")


def leaf_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules without children, in definition order (what a layer *index* counts)."""
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


def resolve_layer(model: nn.Module, layer: str | int | nn.Module) -> tuple[str, nn.Module]:
    """A layer by dotted name (``"cnn.4"``), by index into :func:`leaf_layers` (``34`` or ``"34"``,
    as in ``model.features[34]`` of a VGG), or by module. Returns ``(name, module)``."""
    named = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for n, m in named.items():
            if m is layer:
                return n, m
        raise CnnlensError(
            "the given layer module is not part of the model; pass one of its modules or a layer name"
        )
    if isinstance(layer, str) and layer in named and layer != "":
        return layer, named[layer]
    leaves = leaf_layers(model)
    idx: int | None = None
    if isinstance(layer, int) and not isinstance(layer, bool):
        idx = layer
    elif isinstance(layer, str) and layer.lstrip("-").isdigit():
        idx = int(layer)
    if idx is not None:
        if -len(leaves) <= idx < len(leaves):
            return leaves[idx]
        raise CnnlensError(
            f"layer index {idx} is out of range: {type(model).__name__} has {len(leaves)} "
            f"leaf layers (0..{len(leaves) - 1}); e.g. "
            + ", ".join(f"{i}={n}" for i, (n, _) in enumerate(leaves[:12]))
        )
    if not isinstance(layer, str):
        raise CnnlensTypeError(f"layer must be a name, an index or a module; got {type(layer).__name__}")
    valid = [n for n in named if n]
    raise CnnlensError(
        f"layer {layer!r} does not exist in {type(model).__name__}{did_you_mean(layer, valid)}; "
        f"valid layer names: {', '.join(valid)} (or an index 0..{len(leaves) - 1} into the leaf layers)"
    )
