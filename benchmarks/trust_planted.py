"""The trust protocol on the compact CNN trained on `planted`: the figures and table of docs/trust.md.

    PYTHONPATH=src /work/main/.venv/bin/python benchmarks/trust_planted.py [--epochs 4] [--out docs/img]

Trains `compact` on planted (or loads --run), runs every registered method and both controls on
32 test images with cascading and independent randomization, writes the cascading curve per layer
(rank correlation of |map| and SSIM) to --out, and prints the table and the readings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cnnlens
from cnnlens.metrics import run_trust
from cnnlens.report.fig_trust import plot_randomization


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--run", help="existing planted run directory (else trained into runs/planted-compact)")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--n-images", type=int, default=32)
    args = ap.parse_args()
    if args.run:
        run = cnnlens.load_run(args.run)
    else:
        t = time.perf_counter()
        run = cnnlens.train(
            "planted", "compact", out="runs/planted-compact", epochs=args.epochs, seed=0, force=True
        )
        print(f"trained in {time.perf_counter() - t:.0f} s")
    print(f"compact on planted: best val acc {run.meta['best_val_acc']:.3f}")
    t = time.perf_counter()
    rep = run_trust(
        run.model, run.dataset, n_images=args.n_images, independent=True, out_dir=run.path / "trust"
    )
    print(f"run_trust: {time.perf_counter() - t:.1f} s, methods {rep.methods}, skipped {rep.skipped}")
    out = Path(args.out)
    for metric in ("spearman_abs", "ssim"):
        plot_randomization(
            rep.cascading,
            out / f"trust_planted_cascading_{metric}.png",
            metric=metric,
            title=f"compact on planted: cascading randomization ({rep.n_images} test images)",
        )
    header, rows = rep.table()
    print("| " + " | ".join(header[:-1]) + " |")
    print("|" + "---|" * (len(header) - 1))
    for r in rows:
        print("| " + " | ".join(r[:-1]) + " |")
    print()
    for r in rows:
        print("- " + r[-1])
    print("\ncascading curves (|rank corr| by layer, top down):")
    for m, c in rep.cascading.items():
        print(f"  {m:20s} " + " ".join(f"{ly}:{d['spearman_abs']:.2f}" for ly, d in c))
    print("independent curves (|rank corr| by layer, top down):")
    for m, c in rep.independent.items():
        print(f"  {m:20s} " + " ".join(f"{ly}:{d['spearman_abs']:.2f}" for ly, d in c))


if __name__ == "__main__":
    main()
