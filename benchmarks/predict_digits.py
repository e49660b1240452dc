"""Ensembles and test-time augmentation against the single model, on the bundled digits.

    PYTHONPATH=src python benchmarks/predict_digits.py --epochs 10 --out runs/predict-digits

Trains ``compact`` on ``digits`` with seeds 0, 1, 2 (``cnnlens.train(data="digits", model="compact",
epochs=E, seed=s)``; runs already in OUT are reused), then predicts the validation split (269
images; the split used to pick each run's best epoch) and the test split (270 images, never used
in training or selection) with:

* each seed alone, no TTA (the single models);
* seed 0 with ``flip`` TTA (the image and its mirror: digits are not mirror-symmetric, so this is
  expected to hurt) and with ``tencrop`` TTA (corner and centre crops of 0.875 of each side, resized
  back, and their mirrors: the mirrors carry the same problem);
* the 3-seed ensemble (mean of the softmax probabilities), without TTA and with ``tencrop``.

Prints a markdown table: accuracy on val and test, and the median prediction time over the val split
(3 repeats, interleaved) on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import cnnlens
from cnnlens.predict import predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/predict-digits")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for s in seeds:
        out = Path(args.out) / f"seed{s}"
        t0 = time.perf_counter()
        if (out / "model.json").exists():
            run = cnnlens.load_run(out)
        else:
            run = cnnlens.train(data="digits", model="compact", epochs=args.epochs, seed=s, out=out)
        print(f"seed {s}: best val acc {run.meta['best_val_acc']:.4f} at epoch {run.meta['best_epoch']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        runs.append(run)
    ds = cnnlens.load_dataset("digits")
    configs: list[tuple[str, list, str]] = [(f"single, seed {s}", [r], "none") for s, r in zip(seeds, runs)]
    configs += [(f"single, seed {seeds[0]}, TTA flip", [runs[0]], "flip"),
                (f"single, seed {seeds[0]}, TTA tencrop", [runs[0]], "tencrop"),
                (f"ensemble of {len(runs)} seeds", runs, "none"),
                (f"ensemble of {len(runs)} seeds, TTA tencrop", runs, "tencrop")]
    acc: dict[str, dict[str, float]] = {name: {} for name, _, _ in configs}
    times: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    for split in ("val", "test"):
        for name, rs, tta in configs:
            res = predict(rs, ds, split, tta=tta, write_eval=split == "val")
            acc[name][split] = res.accuracy or 0.0
    for _ in range(args.repeats):  # interleaved repeats for the timing column
        for name, rs, tta in configs:
            t0 = time.perf_counter()
            predict(rs, ds, "val", tta=tta, write_eval=False)
            times[name].append(time.perf_counter() - t0)
    singles = [acc[f"single, seed {s}"] for s in seeds]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s); digits val n="
          f"{len(ds.splits['val'])}, test n={len(ds.splits['test'])}; {args.epochs} epochs per run\n")
    print("| prediction | val accuracy | test accuracy | predict time on val (median) |")
    print("|---|---|---|---|")
    for name, _, _ in configs:
        print(f"| {name} | {100 * acc[name]['val']:.2f}% | {100 * acc[name]['test']:.2f}% | "
              f"{1000 * statistics.median(times[name]):.0f} ms |")
    for split in ("val", "test"):
        m = statistics.mean(a[split] for a in singles)
        print(f"\nmean of the single seeds on {split}: {100 * m:.2f}%")


if __name__ == "__main__":
    main()
