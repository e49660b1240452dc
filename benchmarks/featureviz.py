"""Feature visualization benchmarks, in one process.

1. speed: all 64 filters of a layer rendered in ONE batched run vs one filter at a time (64 runs),
   same steps, same model and input size; interleaved repeats, medians and the ratio.
2. quality: cnnlens's render (Fourier + transforms) vs the naive pixel-Adam baseline (30 steps,
   weight decay) on a small CNN trained here on synthetic 48x48 grey data; every metric on the
   exported 8-bit image (the numbers in docs/featureviz.md).

    PYTHONPATH=src python benchmarks/featureviz.py [--repeats 3] [--steps 32] [--threads 1] [--skip-speed]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import cnnlens.featureviz as fv

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_featureviz import make_data, shift_rotate  # noqa: E402  (the tests' synthetic task and jitter)
from cnnlens.models import create_model

SIZE = 48


# ---- 1. speed -----------------------------------------------------------------------------------------


def speed(repeats: int, steps: int, device: str = "cpu", n_filters: int = 64) -> dict[str, object]:
    """Prints the table; returns the median seconds of each way and the speed-up of batching."""
    torch.manual_seed(0)
    m = create_model("compact", in_channels=1, num_classes=7, input_size=SIZE, widths=(32, 64, 96, 96)).eval()
    m = m.to(device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    layer = "cnn.4"  # 64 filters (read after its BatchNorm cnn.5)
    kw = dict(input_size=SIZE, mean=(0.5,), std=(0.25,), steps=steps, lr=0.05)

    def batched() -> None:
        fv.render(m, fv.channel("cnn.5", torch.arange(n_filters)), batch=n_filters, seed=0, **kw)
        sync()

    def one_at_a_time() -> None:
        for k in range(n_filters):
            fv.render(m, fv.channel("cnn.5", k), batch=1, seed=k, **kw)
        sync()

    times: dict[str, list[float]] = {f"batched (1 run x {n_filters} images)": [],
                                     f"one at a time ({n_filters} runs x 1)": []}
    fns = dict(zip(times, (batched, one_at_a_time)))
    batched()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    print(
        f"\n## speed: {n_filters} filters of {layer} (compact 32-64-96-96, 1x{SIZE}x{SIZE}), {steps} steps, "
        f"{repeats} interleaved repeats, {torch.get_num_threads()} thread(s)"
    )
    print("| | median s | all runs s |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} |")
    a, b = (statistics.median(v) for v in times.values())
    print(f"speed-up of batching: {b / a:.1f}x")
    return {"filters": n_filters, "steps": steps, "batched_s": a, "one_at_a_time_s": b, "speedup": b / a}


# ---- 2. quality -----------------------------------------------------------------------------------------


def train_model() -> tuple[torch.nn.Module, torch.Tensor, tuple[float], tuple[float]]:
    torch.manual_seed(0)
    u8, labels = make_data()
    x = u8.float() / 255
    mean, std = (x.mean().item(),), (x.std().item(),)
    xn = (x - mean[0]) / std[0]
    m = create_model("compact", in_channels=1, num_classes=4, input_size=SIZE, widths=(8, 16, 16), fc=(32,))
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    m.train()
    for _ in range(40):
        idx = torch.randint(0, len(xn), (32,), generator=g)
        loss = F.cross_entropy(m(xn[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval(), xn, mean, std


def means(m: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    store = {}
    h = dict(m.named_modules())[layer].register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o))
    with torch.no_grad():
        m(x)
    h.remove()
    return store["a"].mean((2, 3))


def metrics(m, layer, img, chans, xn, mean, std) -> dict[str, float]:
    norm = lambda v: (v - mean[0]) / std[0]  # noqa: E731
    rows = torch.arange(len(chans))
    a_all = means(m, layer, norm(img))
    a = a_all[rows, chans]
    real_max = means(m, layer, xn).amax(0)[chans]
    g = torch.Generator().manual_seed(123)
    moved = torch.stack([means(m, layer, norm(shift_rotate(img, g)))[rows, chans] for _ in range(4)]).mean(0)
    z = (a_all - a_all.mean(1, keepdim=True)) / a_all.std(1, keepdim=True)
    return {
        "reach": float((a >= real_max).float().mean()),
        "robust": float((moved / a).median()),
        "hf": float(np.median(fv.high_frequency_power(img).numpy())),
        "sel": float(z[rows, chans].median()),
        "x_max": float((a / real_max).median()),
    }


def quality(seeds: list[int]) -> None:
    m, xn, mean, std = train_model()
    print(
        f"\n## quality vs naive pixel-Adam (median over seeds {seeds}); metrics on the exported 8-bit image"
    )
    print(
        "| layer | method | channels >= dataset max | act / dataset max | retained under ±3 px + ±10° "
        "| power > 0.25 cyc/px | selectivity z | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for layer in ("cnn.4", "cnn.8"):
        name = fv.filter_layer(m, layer)[0]
        k = len(means(m, name, xn[:1])[0])
        ch = torch.arange(k)
        for method in (
            "cnnlens render (Fourier + transforms, 128 steps)",
            "naive pixel Adam (30 steps, wd 1e-6)",
        ):
            rows, ts = [], []
            for s in seeds:
                t = time.perf_counter()
                if method.startswith("cnnlens"):
                    img = fv.visualize_filters(
                        m, layer, input_size=SIZE, mean=mean, std=std, steps=128, lr=0.1, seed=s
                    ).images
                else:
                    img = fv.naive_pixel_ascent(
                        m, fv.channel(name, ch), input_size=SIZE, mean=mean, std=std, batch=k, seed=s
                    ).images
                ts.append(time.perf_counter() - t)
                rows.append(metrics(m, name, img, ch, xn, mean, std))
            med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
            print(
                f"| {layer} ({name}, {k} ch) | {method} | {med['reach']:.0%} | {med['x_max']:.2f} | "
                f"{med['robust']:.2f} | {med['hf']:.2f} | {med['sel']:.2f} | {statistics.median(ts):.1f} |"
            )
    # classes
    r = fv.visualize_classes(m, [0, 1, 2, 3], input_size=SIZE, mean=mean, std=std, steps=96, lr=0.1, seed=0)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        p = torch.softmax(m((r.images - mean[0]) / std[0]), 1).diagonal()
        pj = torch.stack(
            [torch.softmax(m((shift_rotate(r.images, g) - mean[0]) / std[0]), 1).diagonal() for _ in range(4)]
        ).mean(0)
    print(
        f"\nclass visualization (96 steps): softmax of its class min {p.min():.3f}; under ±3 px + ±10° "
        f"min {pj.min():.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    if not args.skip_speed:
        speed(args.repeats, args.steps)
    if not args.skip_quality:
        quality([int(s) for s in args.seeds.split(",")])


if __name__ == "__main__":
    main()
