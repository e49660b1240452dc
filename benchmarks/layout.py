"""Channels-last or the default layout for cnnlens's gradient passes on the CPU, per model.

For each model and input size: the conv weight reuse (``cnnlens.explain.passes.conv_reuse``: the mean
number of output positions a conv weight is used at), what cnnlens chooses
(``channels_last_pays``: reuse >= ``CPU_CHANNELS_LAST_CONV_REUSE``), and the CPU time per image of
``cnnlens.explain(model, x, "saliency", target=t)`` forced to each layout, in interleaved repeats
(a fresh random order each repeat), median, with the ratio channels-last / default. Random weights,
nothing downloaded.

    python benchmarks/layout.py [--repeats 7] [--batch 8] [--models compact,resnet18@64,...]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

import cnnlens
from cnnlens.explain import core
from cnnlens.explain.passes import CPU_CHANNELS_LAST_CONV_REUSE, channels_last_pays, conv_reuse

sys.path.insert(0, str(Path(__file__).parent))


def build(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    """``name`` is ``model@size``: compact@48 (grey), resnet_ish@64 (benchmarks/explain.py's small
    ResNet), convnext_atto@64 (timm), or a torchvision constructor (resnet18, vgg11,
    mobilenet_v3_small, ...)."""
    arch, _, size = name.partition("@")
    s = int(size or 64)
    torch.manual_seed(0)
    if arch == "compact":
        return cnnlens.create_model("compact", in_channels=1, num_classes=7, input_size=s), (1, s, s)
    if arch == "resnet_ish":
        from explain import SmallResNet  # noqa: PLC0415 - the benchmark's own model

        return SmallResNet(), (3, s, s)
    if arch == "convnext_atto":
        import timm  # noqa: PLC0415

        return timm.create_model(arch, pretrained=False, num_classes=10), (3, s, s)
    return getattr(torchvision.models, arch)(num_classes=10), (3, s, s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--models", default="compact@48,resnet_ish@64,resnet18@64,convnext_atto@64,"
                                        "mobilenet_v3_small@128,resnet18@128,vgg11@128")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, CPU time, batch {a.batch}, median of {a.repeats}; "
          f"channels-last when conv reuse >= {CPU_CHANNELS_LAST_CONV_REUSE}\n")
    print("| model | conv reuse | cnnlens picks | channels-last ms/img | default ms/img | channels-last / default |")
    print("|---|---:|---|---:|---:|---:|")
    for name in a.models.split(","):
        model, shape = build(name)
        model.eval()
        x = torch.randn(a.batch, *shape)
        with torch.no_grad():
            t = model(x).argmax(1)
        reuse = conv_reuse(model, x)
        pick = "channels-last" if channels_last_pays(model, x) else "default"

        def run(cl: bool, model: nn.Module = model, x: torch.Tensor = x, t: torch.Tensor = t) -> None:
            with cl_forced(cl):
                cnnlens.explain(model, x, "saliency", target=t)

        times: dict[bool, list[float]] = {True: [], False: []}
        run(True), run(False)  # warm-up
        for _ in range(a.repeats):
            order = [True, False]
            random.shuffle(order)
            for cl in order:
                t0 = time.process_time()
                run(cl)
                times[cl].append((time.process_time() - t0) / a.batch * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {name} | {reuse:.1f} | {pick} | {med[True]:.2f} | {med[False]:.2f} | {med[True] / med[False]:.2f} |",
              flush=True)


class cl_forced:  # noqa: N801 - used as a context manager
    """Make ``use_channels_last`` answer ``cl`` (it would otherwise apply the conv-reuse rule)."""

    def __init__(self, cl: bool) -> None:
        self.cl = cl

    def __enter__(self) -> None:
        self.saved = core.channels_last_pays
        core.channels_last_pays = lambda _m, _x: self.cl  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        core.channels_last_pays = self.saved  # type: ignore[assignment]


if __name__ == "__main__":
    main()
