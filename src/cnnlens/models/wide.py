"""The wide CNN of the FER2013 report: conv 64(5x5)-128-256-512, FC 512-512-K (6,015,879 params)."""

from __future__ import annotations

from torch import nn

from .base import MODELS, hw
from ..errors import CnnlensError

WIDTHS = (64, 128, 256, 512)
KERNELS = (5, 3, 3, 3)
FEATURE_HW = 4  # the conv features are brought to 512 x 4 x 4 before the first FC layer


def pooling_plan(input_size: int | tuple[int, int], blocks: int = len(WIDTHS),
                 target: int = FEATURE_HW) -> tuple[list[bool], tuple[int, int]]:
    """Which conv blocks end in a 2x2 max-pool, and the feature map size that results.

    A block pools while pooling keeps both sides at least ``target``; whatever is left over is
    brought to ``target x target`` by an adaptive average pool. 48x48: pools after blocks 1-3
    (48 -> 24 -> 12 -> 6), then 6x6 -> 4x4; 64x64: pools after all four (-> 4x4, no adaptive pool).
    """
    h, w = hw(input_size)
    if min(h, w) < target:
        raise CnnlensError(f"wide needs input at least {target}px per side; got {h}x{w}")
    plan = []
    for _ in range(blocks):
        ok = min(h, w) // 2 >= target
        plan.append(ok)
        if ok:
            h, w = h // 2, w // 2
    return plan, (h, w)


class WideCNN(nn.Module):
    """conv5x5(64), conv3x3(128, 256, 512), each + bias, BatchNorm2d, ReLU and (size permitting)
    max-pool 2; adaptive average pool to 512x4x4; FC 512 + BatchNorm1d + ReLU (+ dropout), twice;
    FC K.

    Parameters (C input channels, K classes), as the report counts them::

        conv   (5*5*C)*64 + 64 + 2*64 | (3*3*64)*128 + 128 + 2*128 | (3*3*128)*256 + 256 + 2*256
               | (3*3*256)*512 + 512 + 2*512
        fc     (512*4*4)*512 + 512 + 2*512 | 512*512 + 512 + 2*512 | 512*K + K

    C=1, K=7: 6,015,879 for any input size (the 4x4 feature map does not depend on it).
    Input ``[B, C, H, W]`` with H, W >= 4; output logits ``[B, K]``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 48,
                 dropout: float = 0.5) -> None:
        super().__init__()
        plan, (h, w) = pooling_plan(input_size)
        layers: list[nn.Module] = []
        cin = in_channels
        for cout, k, pool in zip(WIDTHS, KERNELS, plan):
            layers += [nn.Conv2d(cin, cout, k, 1, k // 2, bias=True), nn.BatchNorm2d(cout), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2, 2))
            cin = cout
        if (h, w) != (FEATURE_HW, FEATURE_HW):
            layers.append(nn.AdaptiveAvgPool2d(FEATURE_HW))
        self.cnn = nn.Sequential(*layers)
        d = cin * FEATURE_HW * FEATURE_HW
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(d, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )

    def forward(self, x):
        return self.fc(self.cnn(x))


@MODELS.register("wide", description="the FER report's CNN: conv 64(5x5)-128-256-512 (BN, ReLU, pool), "
                                     "FC 512-512-K with BatchNorm1d")
def wide(in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 48,
         **kw) -> nn.Module:
    return WideCNN(in_channels, num_classes, input_size, **kw)
