"""The classification head of a model: the layer that gives the logits (for fine-tuning).

timm models name theirs (``get_classifier()``); for any other model it is the last ``Linear`` (or
1x1 ``Conv2d``, as in SqueezeNet) registered with ``num_classes`` outputs.
"""

from __future__ import annotations

from torch import nn

from ..errors import CnnlensError


def classifier_head(model: nn.Module, num_classes: int) -> tuple[str, nn.Module]:
    """``(name, module)`` of the layer that gives the ``num_classes`` logits."""
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            name = next((n for n, m in model.named_modules() if m is head), None)
            if name:
                return name, head
    found = None
    for name, m in model.named_modules():
        if ((isinstance(m, nn.Linear) and m.out_features == num_classes)
                or (isinstance(m, nn.Conv2d) and m.out_channels == num_classes and m.kernel_size == (1, 1))):
            found = (name, m)
    if found is None:
        raise CnnlensError(f"cannot find the classification head of {type(model).__name__}: fine-tuning "
                           "(freezing the backbone, a separate backbone learning rate, reset_head) needs a "
                           f"final Linear layer with {num_classes} outputs")
    return found


def split_parameters(model: nn.Module, num_classes: int
                     ) -> tuple[str, list[nn.Parameter], list[nn.Parameter]]:
    """``(head name, head parameters, backbone parameters)``: every parameter is in exactly one."""
    name, head = classifier_head(model, num_classes)
    ids = {id(p) for p in head.parameters()}
    return name, list(head.parameters()), [p for p in model.parameters() if id(p) not in ids]
