"""Small models for the explanation tests: grayscale compact, residual RGB, VGG-ish non-square RGB."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import cnnlens


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters, so BN is not the identity in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN + shortcut, then ReLU (distinct ReLU modules, in-place)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        # the shortcut is registered first, so the last Conv2d is conv2; the default CAM layer is the
        # block around it (its output, after the add, has conv2's spatial size)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.down(x))


class TinyResNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 5, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), act())
        self.layer1 = Block(8, 8)
        self.layer2 = Block(8, 12, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


class TinyVGG(nn.Module):
    """Non-square RGB input, max pooling, adaptive pooling, bias everywhere."""

    def __init__(self, in_channels: int = 3, num_classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 10, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(10, 10, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(40, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class MixedActs(nn.Module):
    """BatchNorm, residual add, PReLU, LeakyReLU and SiLU as modules."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.b1 = nn.BatchNorm2d(6)
        self.a1 = nn.PReLU(6)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.a2 = nn.LeakyReLU(0.1)
        self.c3 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.a3 = nn.SiLU()
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        h = self.a1(self.b1(self.c1(x)))
        h = self.a2(self.c2(h)) + h
        return self.fc(self.a3(self.c3(h)).mean((2, 3)))


class FunctionalReLU(nn.Module):
    """Applies ReLU with F.relu in forward: guided methods cannot modify it."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.act(self.c1(x))
        h = F.relu(self.c2(h))
        return self.fc(h.mean((2, 3)))


def gray_compact(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(cnnlens.create_model("compact", in_channels=1, num_classes=4, input_size=16,
                                             widths=(6, 8), fc=(16,)), seed)


def resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(TinyResNet(), seed)


def vgg(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyVGG()


#: (name, model factory, input shape [C,H,W], default layer name)
ARCHS = [
    ("gray_compact", gray_compact, (1, 16, 16)),
    ("resnet", resnet, (3, 20, 20)),
    ("vgg", vgg, (3, 18, 26)),
]


def planted_data(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey images [n,1,size,size]: class k has a bright 5x5 square in quadrant k (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, size, size, generator=g) * 0.3
    h = size // 2
    for i, k in enumerate(y.tolist()):
        r, c = (k // 2) * h + 1, (k % 2) * h + 1
        x[i, 0, r:r + 5, c:c + 5] += 2.0
    return x, y


def trained_gray_compact(steps: int = 40) -> nn.Module:
    """The grayscale compact model trained for a few dozen Adam steps on :func:`planted_data`."""
    model = gray_compact()
    x, y = planted_data(256)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for i in range(steps):
        idx = torch.arange(i * 32, (i + 1) * 32) % 256
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class StudentNet(nn.Module):
    """A course-style CNN: conv-BN-ReLU-pool blocks in a Sequential, then a ``Linear`` on the
    flattened features. ``flatten`` chooses how: ``"view"`` (``x.view(x.size(0), -1)``, which fails on
    channels-last activations), ``"torch"`` (``torch.flatten``); ``functional=True`` applies ReLU and
    max-pooling with ``F.relu``/``F.max_pool2d`` in ``forward`` instead of modules (and views)."""

    def __init__(self, flatten: str = "view", functional: bool = False, in_channels: int = 1,
                 num_classes: int = 3) -> None:
        super().__init__()
        self.flatten, self.functional = flatten, functional
        if functional:
            self.c1, self.c2 = nn.Conv2d(in_channels, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        else:
            self.cnn = nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                     nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                                     nn.MaxPool2d(2))
        self.fc = nn.Linear(6 * 4 * 4, num_classes)

    def forward(self, x):
        if self.functional:
            h = F.max_pool2d(F.relu(self.c1(x)), 2)
            h = F.max_pool2d(F.relu(self.c2(h)), 2)
        else:
            h = self.cnn(x)
        h = h.view(h.size(0), -1) if self.flatten == "view" else torch.flatten(h, 1)
        return self.fc(h)


def student(flatten: str = "view", functional: bool = False, seed: int = 0) -> nn.Module:
    """:class:`StudentNet` with seeded weights (and random BatchNorm statistics); 16x16 grey input."""
    torch.manual_seed(seed)
    return randomize_bn(StudentNet(flatten, functional), seed)
