"""``captum:<ClassName>``: any Captum attribution class through the cnnlens contract.

``explain(model, x, "captum:DeepLift")`` builds ``captum.attr.DeepLift(model)`` and calls
``attribute(x, target=targets, **options)``. Layer classes (whose constructor takes a ``layer``,
e.g. ``LayerGradCam``, ``LayerConductance``, ``GuidedGradCam``) get the resolved ``layer``
(default: the last Conv2d, or the residual block around it; see ``core.default_layer``). Constructor keyword arguments go in ``init={...}``.

Reduction to the contract's ``float32 [B, H, W]``: Captum returns ``[B, C, H, W]`` for the input (or
``[B, K, h, w]`` for a layer); cnnlens **sums over the channel dimension** (signed), and a smaller
layer map is upsampled bilinearly (``align_corners=False``) to the input size. Methods whose
``attribute`` requires ``baselines`` (``GradientShap``, ``DeepLiftShap``) get two all-zero images
(the dataset mean in normalized space) unless ``baselines=`` is given. Captum is optional: without
it, a ``captum:`` name raises a ``ValueError`` saying how to install it.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .core import METHODS, Context, Explainer, upsample
from ..errors import CnnlensError, CnnlensTypeError


def _captum_attr() -> Any:
    try:
        import captum.attr as ca
    except ImportError:
        raise CnnlensError("captum:<name> methods need Captum, which is not installed: "
                         "pip install captum (or use a built-in method: cnnlens methods list)") from None
    return ca


def captum_classes() -> list[str]:
    """Names of the Captum attribution classes usable as ``captum:<name>``."""
    ca = _captum_attr()
    base = ca.Attribution
    return sorted(n for n in dir(ca) if isinstance(getattr(ca, n), type) and issubclass(getattr(ca, n), base)
                  and not inspect.isabstract(getattr(ca, n)) and n not in _NOT_METHODS)


_NOT_METHODS = {"Attribution", "GradientAttribution", "PerturbationAttribution", "LayerAttribution",
                "NeuronAttribution", "NoiseTunnel"}


class CaptumMethod(Explainer):
    """Adapter: one Captum attribution class behind :class:`Explainer`."""

    signed = True

    def __init__(self, cls_name: str, cls: type) -> None:
        self.cls = cls
        self.name = f"captum:{cls_name}"
        self.description = f"Captum {cls_name}, summed over channels"
        self.uses_layer = "layer" in inspect.signature(cls.__init__).parameters

    def attribute(self, ctx: Context, init: dict[str, Any] | None = None, **options: Any
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        t = ctx.targets
        args = (ctx.model, ctx.layer) if self.uses_layer else (ctx.model,)
        obj = self.cls(*args, **(init or {}))
        params = inspect.signature(obj.attribute).parameters
        if "baselines" in params and params["baselines"].default is inspect.Parameter.empty \
                and "baselines" not in options:
            options["baselines"] = torch.zeros((2, *ctx.x.shape[1:]), device=ctx.x.device, dtype=ctx.x.dtype)
        x = ctx.x.detach().clone().requires_grad_(True)
        try:
            out = obj.attribute(x, target=t, **options)
        except TypeError as e:
            raise CnnlensTypeError(f"{self.name}: {e}; options go to {self.cls.__name__}.attribute(), "
                            "constructor arguments in init={{...}}") from e
        if isinstance(out, tuple):
            out = out[0]
        a = out.detach()
        if a.ndim != 4:
            raise CnnlensError(f"{self.name} returned attributions of shape {tuple(a.shape)}; cnnlens needs "
                             "[B, C, H, W] (for layer methods choose a conv layer with layer=...)")
        return upsample(a.float().sum(1), ctx.x.shape[-2:]), {"captum_shape": tuple(a.shape)}


def resolve_captum(name: str) -> CaptumMethod:
    ca = _captum_attr()
    cls = getattr(ca, name, None)
    if not (isinstance(cls, type) and issubclass(cls, ca.Attribution)) or name in _NOT_METHODS:
        raise CnnlensError(f"captum:{name} is not a Captum attribution class; valid names: "
                         f"{', '.join(captum_classes())}")
    return CaptumMethod(name, cls)


METHODS.register_prefix("captum", resolve_captum)
