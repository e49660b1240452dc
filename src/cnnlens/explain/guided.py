"""Modified ReLU backward rules (guided backpropagation, deconvnet) installed with module hooks.

Guided backpropagation (Springenberg et al. 2015) and the deconvnet (Zeiler & Fergus 2014) differ
from the plain gradient only at the rectifiers:

- plain gradient:  ``dL/dx = 1[x > 0] * g``                 (``g`` = gradient at the ReLU's output)
- guided:          ``dL/dx = max(0, 1[x > 0] * g)``         (Captum: ReLU of the ReLU's input gradient)
- deconvnet:       ``dL/dx = max(0, g)``                    (ignores the forward mask)

The rule is installed on activation *modules*: a forward pre-hook passes the module's input through
an identity "gate" whose backward applies the rule, and (for the deconvnet) a forward hook puts a
tensor hook on the output that records ``g``. Inputs are cloned by the gate, so in-place activations are safe, and a
module used several times in one forward gets one gate per call.

The same rule is applied to the other rectifier-like activation modules (LeakyReLU, PReLU, ELU,
SiLU, GELU, ...): guided = ``max(0, local gradient)``, deconvnet = ``max(0, g)``. Captum only
modifies ``nn.ReLU``; on ReLU networks both agree exactly.

An activation applied functionally (``F.relu(x)``, ``torch.relu``, ``x.relu()``, ...) has no module
to hook, so it cannot be guided. :func:`activation_rule` detects such calls during the forward pass
(with a ``TorchFunctionMode``) and raises a ``ValueError`` instead of silently returning something
between a guided and a plain gradient; ``force=True`` turns the error into a logged warning and the
number of unguided calls is reported.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from ..errors import CnnlensError

log = logging.getLogger(__name__)

#: activation modules whose backward is modified (any subclass counts)
ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ReLU6, nn.Hardtanh, nn.ELU, nn.SELU, nn.CELU,
    nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish, nn.Softplus,
)

#: functions that apply such an activation without a module
_FUNCTIONAL = {
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
    F.leaky_relu, F.leaky_relu_, F.prelu, torch.prelu, F.rrelu, F.relu6, F.hardtanh, F.hardtanh_,
    F.elu, F.elu_, F.selu, torch.selu, F.celu, F.silu, F.gelu, F.mish, F.hardswish, F.softplus,
}

RULES = ("guided", "deconvnet")


class _Gate(torch.autograd.Function):
    """Identity on the activation's input; backward applies the rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slot: dict[str, Any]) -> torch.Tensor:  # type: ignore[override]
        ctx.slot = slot
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:  # type: ignore[override]
        slot = ctx.slot
        if slot["rule"] == "plain":  # switched off for one backward pass (Guided Grad-CAM)
            return grad, None
        if slot["rule"] == "guided":
            return grad.clamp_min(0), None  # clamp, not relu: the spy must not see backward calls
        g_out = slot.get("grad_out")
        if g_out is None or g_out.shape != grad.shape:
            raise RuntimeError("deconvnet: the activation's output gradient was not recorded (an "
                               "activation whose output shape differs from its input?)")
        return g_out.clamp_min(0), None


class _Spy(TorchFunctionMode):
    """Counts activation functions called outside an activation module."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if self.state["depth"] == 0 and func in _FUNCTIONAL:
            name = getattr(func, "__name__", str(func))
            self.state["calls"][name] = self.state["calls"].get(name, 0) + 1
        return func(*args, **(kwargs or {}))


#: class names (lower case) of other libraries' activation modules that wrap one of :data:`_FUNCTIONAL`
#: (timm's ``GELU``, ``GELUTanh``, ``QuickGELU``, ``Swish``, ``Mish``, ``HardSwish``, ...)
ACTIVATION_NAMES = frozenset({
    "relu", "relu6", "leakyrelu", "prelu", "elu", "selu", "celu", "gelu", "gelutanh", "quickgelu",
    "silu", "swish", "mish", "hardswish", "hardswishme", "swishme", "mishme", "softplus", "hardtanh",
})


def is_activation(m: nn.Module) -> bool:
    """An activation module: one of :data:`ACTIVATION_MODULES`, or a leaf module named like one."""
    return isinstance(m, ACTIVATION_MODULES) or (
        type(m).__name__.lower() in ACTIVATION_NAMES and next(m.children(), None) is None)


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if is_activation(m)]


@contextlib.contextmanager
def activation_rule(model: nn.Module, rule: str, handles: list[Any] | None = None,
                    force: bool = False) -> Iterator[dict[str, Any]]:
    """Run the forward pass inside this block to get ``rule`` applied on the backward pass.

    Yields a dict; ``['set_rule'](r)`` switches the gates of the forward pass already run (``"plain"``
    gives the unmodified gradient on the same graph). After the block, ``['unguided']`` maps functional activation names to call
    counts (empty when every activation was a module). Raises ``ValueError`` if some activation was
    applied functionally (or the model has no activation module at all) unless ``force``.
    """
    if rule not in RULES:
        raise CnnlensError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    mods = activation_modules(model)
    state: dict[str, Any] = {"depth": 0, "calls": {}, "stacks": {}, "slots": []}
    own: list[Any] = []

    def pre(m: nn.Module, inp: tuple[Any, ...]) -> Any:
        state["depth"] += 1
        if not inp or not isinstance(inp[0], torch.Tensor) or not inp[0].requires_grad:
            state["stacks"].setdefault(id(m), []).append(None)
            return None
        slot: dict[str, Any] = {"rule": rule}
        state["stacks"].setdefault(id(m), []).append(slot)
        state["slots"].append(slot)
        return (_Gate.apply(inp[0], slot), *inp[1:])

    def post(m: nn.Module, _inp: Any, out: Any) -> None:
        state["depth"] -= 1
        slot = state["stacks"][id(m)].pop()
        if slot is not None and rule == "deconvnet" and isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda g, slot=slot: slot.__setitem__("grad_out", g))

    for _, m in mods:
        own.append(m.register_forward_pre_hook(pre))
        own.append(m.register_forward_hook(post))
    if handles is not None:
        handles.extend(own)
    def set_rule(r: str) -> None:
        """Switch the gates of the pass just run: ``"plain"`` for an unmodified backward, or back."""
        if r not in (*RULES, "plain"):
            raise CnnlensError(f"rule must be one of {', '.join(RULES)}, plain; got {r!r}")
        for slot in state["slots"]:
            slot["rule"] = r

    result: dict[str, Any] = {"unguided": {}, "set_rule": set_rule}
    try:
        with _Spy(state):
            yield result
    finally:
        for h in own:
            h.remove()
    result["unguided"] = dict(state["calls"])
    if state["calls"] or not mods:
        what = (f"applies {', '.join(f'{k} ({v}x)' for k, v in state['calls'].items())} functionally "
                "(in forward(), not as an nn.Module), so those activations cannot be modified"
                if state["calls"] else "has no activation module (nn.ReLU, ...) to modify")
        msg = (f"{rule} needs the model's activations as modules, but {type(model).__name__} {what}; "
               "the result would be (partly) a plain gradient. Replace F.relu(x) with an nn.ReLU "
               "module in the model, or accept the mixed result: force=True in Python "
               "(cnnlens.explain(model, x, METHOD, force=True)), --force-guided with cnnlens explain")
        if not force:
            raise CnnlensError(msg)
        log.warning("%s (forced)", msg)


GUIDED_METHODS = ("guided_backprop", "deconvnet", "guided_gradcam")
"""The methods that modify the activations' backward pass (they need activation modules)."""


def guided_unsupported(model: nn.Module, x: torch.Tensor) -> str | None:
    """Why the guided methods cannot run faithfully on ``model`` (one forward pass of ``x``, a
    normalized batch), or ``None`` when they can. The model comes back untouched (its mode, its
    parameters' ``requires_grad``; the probe's hooks are removed)."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), activation_rule(model, "guided"):
            model(x.detach().clone().requires_grad_(True))
    except CnnlensError as e:
        return str(e).split("; the result would be")[0]
    finally:
        model.train(was_training)
    return None
