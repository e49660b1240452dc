"""Forward-pass variants behind LIME's bfloat16 path: what each one buys on this CPU.

The model and data of ``benchmarks/lime.py`` (cnnlens' ``compact`` trained a few steps; 48x48 grey
faces or 128x128 RGB photos), then, in the same warmed-up process and in interleaved repeats, the
per-image time of no-grad forward passes for: float32 channels-last, + BatchNorm folded,
TorchScript frozen + ``optimize_for_inference``, bf16 autocast (+ folding), bf16 weights (+ folding:
what ``cnnlens.explain(..., precision="bfloat16")`` runs) and a frozen TorchScript of the latter.
Ratios are to float32 channels-last.

    python benchmarks/lime_forward.py [--setting grey48|rgb128] [--batch 32] [--repeats 9]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lime as bench  # noqa: E402  (benchmarks/lime.py: it strips its own folder from sys.path for the lime package)

from cnnlens.explain.perturbation import _bfloat16_copy, fold_batchnorm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", default="grey48", choices=["grey48", "rgb128"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    if a.setting == "grey48":
        imgs, labels = bench.faces_48()
        model, _, _ = bench.train_compact(imgs, labels, 2, 8, 0)
        shape, n = (1, 48, 48), 1024
    else:
        train, labels, _ = bench.photos_128(24, 0)
        model, _, _ = bench.train_compact(train, labels, len(bench.PHOTOS), 20, 0)
        shape, n = (3, 128, 128), 256
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cl = torch.channels_last
    plain = copy.deepcopy(model).to(memory_format=cl)
    folded = copy.deepcopy(model)
    fold_batchnorm(folded)
    folded = folded.to(memory_format=cl)
    bf, bf_folded = _bfloat16_copy(plain), _bfloat16_copy(folded)
    x = torch.randn(a.batch, *shape).contiguous(memory_format=cl)
    xb = x.to(torch.bfloat16)
    with torch.no_grad():
        jit_f32 = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(plain), x)))
        jit_bf = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(bf_folded), xb)))

    def run(mod, inp, autocast=False):
        def f() -> None:
            with torch.no_grad():
                for _ in range(max(1, n // a.batch)):
                    if autocast:
                        with torch.autocast("cpu", dtype=torch.bfloat16):
                            mod(inp)
                    else:
                        mod(inp)
        return f

    jobs = {"float32 channels-last": run(plain, x), "+ BatchNorm folded": run(folded, x),
            "TorchScript frozen, float32": run(jit_f32, x), "bf16 autocast": run(plain, x, True),
            "bf16 autocast + folded": run(folded, x, True), "bf16 weights": run(bf, xb),
            "bf16 weights + folded (cnnlens)": run(bf_folded, xb), "TorchScript frozen, bf16 + folded": run(jit_bf, xb)}
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for f in jobs.values():
        f()
    for _ in range(a.repeats):
        for k, f in jobs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    per = max(1, n // a.batch) * a.batch
    base = statistics.median(times["float32 channels-last"])
    print(f"\n{a.setting}, {a.batch} images per pass, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| forward | ms / image | vs float32 channels-last |\n|---|---:|---:|")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v) * 1e3 / per:.3f} | {statistics.median(v) / base:.2f}x |")


if __name__ == "__main__":
    main()
