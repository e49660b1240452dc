"""A VGG-style CNN as in the Keras FER2013 report: 3 stages of 3 conv3x3 (32, 64, 128), dense 1024."""

from __future__ import annotations

from torch import nn

from .base import MODELS, conv_block, hw
from ..errors import CnnlensError

STAGES = (32, 64, 128)
CONVS_PER_STAGE = 3


class VGGLike(nn.Module):
    """[conv3x3 + BN + ReLU] x3 then max-pool 2, for 32, 64 and 128 channels; Flatten; dense 1024 +
    BatchNorm1d + ReLU + dropout; dense K.

    Parameters (C input channels, K classes, input H x W, h = H//8, w = W//8)::

        stage 1  (9*C+1)*32  + 2*(9*32+1)*32  + 3*2*32
        stage 2  (9*32+1)*64 + 2*(9*64+1)*64  + 3*2*64
        stage 3  (9*64+1)*128 + 2*(9*128+1)*128 + 3*2*128
        head     (128*h*w + 1)*1024 + 2*1024 + (1024+1)*K

    The report's Keras table shows 19,323,463 because its pooling ran over (channels, height)
    instead of (height, width) (``data_format`` mismatch): its conv2d_4 sees 16 channels and its
    flatten has 64*6*48 = 18432 features. Pooled correctly, 1x48x48 and 7 classes give 5,210,375.
    Input ``[B, C, H, W]`` with H, W >= 8; output ``[B, K]``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 48,
                 dropout: float = 0.5, stages: tuple[int, ...] = STAGES, dense: int = 1024) -> None:
        super().__init__()
        h, w = hw(input_size)
        need = 2 ** len(stages)
        if min(h, w) < need:
            raise CnnlensError(f"vgg needs input at least {need}px per side for {len(stages)} pooling "
                             f"stages; got {h}x{w}")
        layers: list[nn.Module] = []
        cin = in_channels
        for c in stages:
            for i in range(CONVS_PER_STAGE):
                layers += conv_block(cin, c, pool=i == CONVS_PER_STAGE - 1)
                cin = c
            h, w = h // 2, w // 2
        self.cnn = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * h * w, dense), nn.BatchNorm1d(dense), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(dense, num_classes),
        )

    def forward(self, x):
        return self.fc(self.cnn(x))


@MODELS.register("vgg", description="VGG-style: 3 stages of 3 conv3x3 (32, 64, 128; BN, ReLU), maxpool, "
                                    "dense 1024 + BN + dropout, K")
def vgg(in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 48,
        **kw) -> nn.Module:
    return VGGLike(in_channels, num_classes, input_size, **kw)
