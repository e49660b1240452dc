"""Trust protocol speed: batched deletion/insertion vs a per-image reference (and Quantus), and
the fast protocol on the demo model.

    PYTHONPATH=src /work/main/.venv/bin/python benchmarks/trust.py [--repeats 5] [--epochs 3]

1. Deletion curves for 32 digits test images, saliency maps, 64 steps (16 of the 1,024 pixels per
   step), mean substrate, on the same model and inputs: cnnlens' batched `perturbation_curves`,
   a straightforward per-image/per-step loop (the tests' reference), and Quantus' PixelFlipping
   (features_in_step=16, baseline value 0 = the training mean, softmax) when Quantus is installed.
   cnnlens runs with its CPU default (32 perturbed images per pass) and with 512. Interleaved
   repeats; medians; largest curve difference to cnnlens.
2. The fast protocol (`FAST`: 16 test images, 20 deletion/insertion steps, full randomization
   and random logit without the per-layer curve) with every registered method of cost <= 64
   passes/image (the gradient and CAM methods) and both controls, timed end to end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

import cnnlens
from cnnlens.explain import explain
from cnnlens.metrics import FAST, perturbation_curves, run_trust
from cnnlens.metrics.protocol import default_methods


def reference_deletion(model, x, maps, targets, steps):
    """One forward pass per image and step, the pixel order from a stable numpy argsort."""
    n, c, h, w = x.shape
    p = h * w
    out = np.zeros((n, steps + 1))
    with torch.no_grad():
        for i in range(n):
            order = np.argsort(-maps[i].reshape(-1).cpu().numpy(), kind="stable")
            order = torch.from_numpy(order).to(x.device)
            for k in range(steps + 1):
                img = x[i].clone().reshape(c, p)
                img[:, order[: (k * p) // steps]] = 0.0
                out[i, k] = torch.softmax(model(img.reshape(1, c, h, w)), 1)[0, targets[i]].item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--run", help="an existing digits run directory to use instead of training one")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.run:
        run = cnnlens.load_run(args.run)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run = cnnlens.train("digits", "compact", out=f"{tmp}/run", epochs=args.epochs, seed=0)
            print(f"trained compact on digits, {args.epochs} epochs, {time.perf_counter() - t0:.1f} s")
    print(f"model: compact on digits, best val acc {run.meta['best_val_acc']:.3f}")
    model, ds = run.model.eval(), run.dataset
    idx = ds.indices("test")[: args.n_images]
    x, y = ds.normalize(ds.images[idx]), ds.labels[idx]
    maps = explain(model, x, "saliency", target=y).maps
    # Quantus sorts with an unstable argsort: replace the maps by their (stable) rank so no two
    # pixels tie and every tool takes the pixels in the same order
    n_pix = maps[0].numel()
    order = torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices
    maps = (
        torch.empty_like(maps)
        .flatten(1)
        .scatter_(
            1, order, torch.arange(n_pix, 0, -1, dtype=maps.dtype).expand(len(maps), n_pix).contiguous()
        )
        .view_as(maps)
    )
    steps = 64
    p = x.shape[-1] * x.shape[-2]

    def pixel_flipping():
        return quantus.PixelFlipping(
            features_in_step=p // steps,
            perturb_baseline=0.0,
            normalise=False,
            abs=False,
            disable_warnings=True,
            display_progressbar=False,
        )

    try:
        import quantus

        pixel_flipping()
        have_quantus = True
    except Exception as e:  # noqa: BLE001
        have_quantus = False
        print(f"quantus unavailable: {type(e).__name__}: {e}")

    def ours():
        return perturbation_curves(model, x, maps, y, "deletion", steps=steps, substrate="mean").numpy()

    def ours512():
        return perturbation_curves(
            model, x, maps, y, "deletion", steps=steps, substrate="mean", chunk_size=512
        ).numpy()

    def ref():
        return reference_deletion(model, x, maps, y, steps)

    def quant():
        curves = pixel_flipping()(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=maps.unsqueeze(1).numpy(),
            device="cpu",
            softmax=True,
            batch_size=len(x),
        )
        return np.asarray(curves)  # [N, steps]: after each step, no step-0 point

    fns = {"cnnlens batched": ours, "cnnlens chunk 512": ours512, "per-image reference": ref}
    if have_quantus:
        fns["quantus PixelFlipping"] = quant
    times: dict[str, list[float]] = {k: [] for k in fns}
    results = {}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["cnnlens batched"])
    print(
        f"\ndeletion curves: {len(x)} images x {steps + 1} points, "
        f"median of {args.repeats} interleaved repeats"
    )
    for name in fns:
        med = statistics.median(times[name])
        r = results[name]
        diff = (
            np.abs(r - results["cnnlens batched"][:, 1:]).max()
            if r.shape[1] == steps
            else np.abs(r - results["cnnlens batched"]).max()
        )
        print(
            f"  {name:24s} {med * 1000:9.1f} ms   x{med / base:6.1f} vs cnnlens   max |curve diff| {diff:.2e}"
        )

    print("\nfast protocol")
    chosen, skipped = default_methods(max_cost=64)
    print(f"  methods: {', '.join(chosen)} + controls; left out: {skipped or 'none'}")
    t = time.perf_counter()
    rep = run_trust(model, ds, FAST)
    secs = time.perf_counter() - t
    print(
        f"  run_trust, {rep.n_images} images, {len(rep.methods)} maps families: {secs:.1f} s "
        f"({'under' if secs < 60 else 'OVER'} 60 s)"
    )
    header, rows = rep.table()
    for r in rows:
        print("  " + r[-1])


if __name__ == "__main__":
    main()
