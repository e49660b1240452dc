"""Several methods on one batch, sharing passes where the math allows.

``saliency``, ``gradient_x_input`` and every gradient-weighted CAM (``gradcam``, ``gradcam_pp``,
``xgradcam``, ``layercam``) only need the plain gradient of the target logit with respect to the
input and to the layer's output, and ``eigencam`` only the layer's output: all of them come out of
ONE forward + backward pass per chunk. The other methods run on their own, on the same chunks, with
the targets resolved by that pass (so every method explains the same class).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .core import (
    METHODS,
    Context,
    Explainer,
    Explanation,
    TargetSpec,
    auto_chunk,
    chunk_options,
    merge_extras,
    pass_setup,
)
from .checks import check_model_device, check_target
from .gradient import run_pass
from ..nn import check_input, model_guard, model_state
from ..errors import CnnlensError, CnnlensTypeError


def _instance(method: str) -> Explainer:
    impl = METHODS.get(method)
    return impl() if isinstance(impl, type) else impl


def _params(fn: Callable[..., Any]) -> set[str] | None:
    """Keyword options a function takes (``None`` when it takes ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if n not in ("ctx", "p")
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _accepted(explainer: Explainer) -> set[str] | None:
    """Option names a method accepts (``None``: unknown, give it everything)."""
    if hasattr(explainer, "accepted_options"):
        return set(explainer.accepted_options())  # type: ignore[attr-defined]
    return _params(explainer.attribute)


def _can_share(explainer: Explainer, opts: dict[str, Any]) -> bool:
    if not getattr(explainer, "shareable", False) or not hasattr(explainer, "from_pass"):
        return False
    accepted = _params(explainer.from_pass)  # type: ignore[attr-defined]
    return accepted is not None and set(opts) <= accepted


def explain_many(model: nn.Module, x: torch.Tensor, methods: Sequence[str], target: TargetSpec = None,
                 layer: str | nn.Module | None = None, *, labels: torch.Tensor | Sequence[int] | None = None,
                 chunk_size: int | None = None, method_options: dict[str, dict[str, Any]] | None = None,
                 progress: Callable[[int, int], None] | None = None, **options: Any
                 ) -> dict[str, Explanation]:
    """Explain ``x`` with several methods, sharing forward/backward passes where possible.

    Args:
        model: classifier returning logits ``[B, K]``; returned untouched.
        x: normalized float ``[B, C, H, W]``.
        methods: registered method names (see :func:`cnnlens.methods`).
        target, layer, labels, chunk_size: as in :func:`cnnlens.explain` (same targets for all methods).
        method_options: per-method options, e.g. ``{"integrated_gradients": {"steps": 32}}``.
        **options: options given to every method that accepts them (e.g. ``force=True``); an option
            no method accepts is an error.

    Returns:
        ``{method: Explanation}`` in the order of ``methods``; maps ``float32 [B, H, W]`` on ``x``'s device.
    """
    check_input(x)
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if not methods:
        raise CnnlensError("methods must name at least one method; see cnnlens.methods()")
    if len(set(methods)) != len(methods):
        raise CnnlensError(f"methods lists a method twice: {list(methods)}")
    method_options = dict(method_options or {})
    unknown = set(method_options) - set(methods)
    if unknown:
        raise CnnlensError(f"method_options names {sorted(unknown)}, which are not in methods {list(methods)}")
    explainers = {m: _instance(m) for m in methods}
    # options per method
    per: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for m, e in explainers.items():
        acc = _accepted(e)
        mine = {k: v for k, v in options.items() if acc is None or k in acc}
        used |= set(mine)
        per[m] = {**mine, **method_options.get(m, {})}
    unused = set(options) - used
    if unused:
        raise CnnlensTypeError(f"option(s) {', '.join(sorted(unused))} are accepted by none of {', '.join(methods)}")
    shared = [m for m, e in explainers.items() if _can_share(e, per[m])]
    alone = [m for m in methods if m not in shared]
    needs_layer = any(e.uses_layer for e in explainers.values())
    lab = None if labels is None else torch.as_tensor(labels).long().view(-1)
    n = x.shape[0]
    if lab is not None and lab.numel() != n:
        raise CnnlensError(f"labels must have one entry per image ({n}); got {lab.numel()}")
    tgt: TargetSpec = check_target(target, n)
    state = model_state(model)  # one walk for the device check and the guard
    dev = check_model_device(model, state)
    out_dev = x.device
    cost = max(getattr(e, "cost", 1) for e in explainers.values())
    step = chunk_size or auto_chunk(x, cost, dev)
    if step < 1:
        raise CnnlensError(f"chunk_size must be >= 1; got {chunk_size}")
    parts: dict[str, list[tuple[torch.Tensor, dict[str, Any]]]] = {m: [] for m in methods}
    targets: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    with model_guard(model, state) as handles:
        layer_name, layer_mod, view, cl = pass_setup(model, x[:1].to(dev, torch.float32), layer, needs_layer,
                                                     any(e.channels_last_passes for e in explainers.values()))
        for i in range(0, n, step):
            xc = x[i:i + step].to(dev, torch.float32)
            tc: TargetSpec = tgt
            if isinstance(tgt, torch.Tensor) and tgt.numel() == n and n > 1:
                tc = tgt[i:i + step]
            labc = None if lab is None else lab[i:i + step].to(dev)

            def ctx_for(t: TargetSpec, logits: torch.Tensor | None = None) -> Context:
                return Context(model=model, x=xc, target=t, layer_name=layer_name,
                               layer=layer_mod, handles=handles, labels=labc, logits=logits,
                               channels_last=cl, view=view)

            base = ctx_for(tc)
            if shared:
                es = [explainers[m] for m in shared]
                p = run_pass(base, need_input=any(e.needs_input_grad for e in es),
                             need_layer=any(e.uses_layer for e in es),
                             need_grad=any(e.needs_grad for e in es))
                for m in shared:
                    parts[m].append(explainers[m].from_pass(base, p, **per[m]))  # type: ignore[attr-defined]
            t = base.targets
            for m in alone:
                c = ctx_for(t.clone(), base.logits)
                maps, extra = explainers[m].attribute(c, **chunk_options(per[m], n, i, step))
                for h in handles:
                    h.remove()
                handles.clear()
                parts[m].append((maps, extra))
            for m in methods:
                got = parts[m][-1][0]
                if tuple(got.shape) != (xc.shape[0], *xc.shape[-2:]):
                    raise RuntimeError(f"method {m!r} returned maps {tuple(got.shape)}; expected "
                                       f"{(xc.shape[0], *xc.shape[-2:])}")
            targets.append(t.detach().to(out_dev))
            probs.append(base.logits.float().softmax(1).to(out_dev))  # type: ignore[union-attr]
            if progress is not None:
                progress(min(i + step, n), n)
    t_all = torch.cat(targets)
    p_all = torch.cat(probs)
    out: dict[str, Explanation] = {}
    for m in methods:
        e = explainers[m]
        out[m] = Explanation(maps=torch.cat([a.detach().float().to(out_dev) for a, _ in parts[m]]), method=m,
                             targets=t_all, probs=p_all, layer=layer_name if e.uses_layer else None,
                             signed=e.signed,
                             extras=_to_device(merge_extras([ex for _, ex in parts[m]]), out_dev),
                             layer_transform=view.describe() if e.uses_layer and view is not None else None)
    return out


def _to_device(extras: dict[str, Any], dev: torch.device) -> dict[str, Any]:
    return {k: (v.detach().to(dev) if isinstance(v, torch.Tensor) else v) for k, v in extras.items()}
