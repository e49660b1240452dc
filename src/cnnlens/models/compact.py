"""The compact CNN of the course report: 4 conv blocks (24-48-96-96) and FC 192-96-K."""

from __future__ import annotations

from torch import nn

from .base import MODELS, conv_block, hw
from ..errors import CnnlensError


class CompactCNN(nn.Module):
    """conv3x3+BN+ReLU+maxpool2 x4 (24, 48, 96, 96 channels), then FC 192-96-K with ReLU.

    With 3x48x48 input and 7 classes: 321,511 parameters.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 32,
                 widths: tuple[int, ...] = (24, 48, 96, 96), fc: tuple[int, ...] = (192, 96)) -> None:
        super().__init__()
        h, w = hw(input_size)
        if min(h, w) < 2 ** len(widths):
            raise CnnlensError(f"compact needs input at least {2 ** len(widths)}px per side for "
                             f"{len(widths)} pooling blocks; got {h}x{w}")
        layers: list[nn.Module] = []
        cin = in_channels
        for c in widths:
            layers += conv_block(cin, c)
            cin = c
            h, w = h // 2, w // 2
        self.cnn = nn.Sequential(*layers)
        dims = [cin * h * w, *fc]
        head: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            head += [nn.Linear(a, b), nn.ReLU()]
        head.append(nn.Linear(dims[-1], num_classes))
        self.fc = nn.Sequential(*head)

    def forward(self, x):
        return self.fc(self.cnn(x))


@MODELS.register("compact", description="the report's CNN: conv 24-48-96-96 (BN, ReLU, maxpool), FC 192-96-K")
def compact(in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 32,
            **kw) -> nn.Module:
    return CompactCNN(in_channels, num_classes, input_size, **kw)
