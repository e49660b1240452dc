"""Forward-pass variants behind LIME's bfloat16 path: what each one buys on this CPU.

The model and data of ``benchmarks/lime.py`` (cnnlens' ``compact`` trained 30 or 20 steps; 48x48 grey
faces or 128x128 RGB photos), then, in the same warmed-up process and in interleaved repeats, the
per-image time of no-grad forward passes for: float32 channels-last, + BatchNorm folded,
TorchScript frozen + ``optimize_for_inference``, bf16 autocast (+ folding), bf16 weights (+ folding:
what cnnlens ran before its fused CPU path; Linear layers float32 in all bf16 rows) and a frozen TorchScript of the latter; then the fused
CPU path (:mod:`cnnlens.explain.inference`: packed oneDNN convolutions with the ReLU fused, 2x2
max-pools without indices): the copy cnnlens' ``Scorer`` runs in float32 and in bf16 (first conv
float32), and an all-bf16 fused copy (first conv bf16 too: faster, less accurate).
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

from cnnlens.explain import inference  # noqa: E402
from cnnlens.explain.scoring import Scorer, _float32_forward, fold_batchnorm  # noqa: E402


def bf16_all(model: torch.nn.Module) -> torch.nn.Module:
    """Every layer bf16 but the Linear ones (cnnlens' bf16 copy before its first conv stayed float32)."""
    m = copy.deepcopy(model).to(torch.bfloat16)
    for mod in m.modules():
        if isinstance(mod, torch.nn.Linear):
            _float32_forward(mod.float(), "cpu")
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", default="grey48", choices=["grey48", "rgb128"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    if a.setting == "grey48":
        imgs, labels = bench.faces_48()
        model, _, _ = bench.train_compact(imgs, labels, 2, 30, 0)  # as benchmarks/lime.py --steps-grey
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
    bf, bf_folded = bf16_all(plain), bf16_all(folded)
    x = torch.randn(a.batch, *shape).contiguous(memory_format=cl)
    xb = x.to(torch.bfloat16)
    scorers = {p: Scorer(model, p) for p in ("float32", "bfloat16")}
    for sc in scorers.values():
        sc(x, 0)  # the first chunk fuses the copy
        assert sc.fusion is not None, "no fused CPU path on this machine"
    all_bf = bf16_all(folded)
    inference.fuse_for_inference(all_bf, xb)
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
            "bf16 weights + folded": run(bf_folded, xb), "TorchScript frozen, bf16 + folded": run(jit_bf, xb),
            "fused float32 (cnnlens float32)": run(scorers["float32"].model, x),
            "fused bf16, first conv float32 (cnnlens bfloat16)": run(scorers["bfloat16"].model, x),
            "fused bf16, first conv bf16 too": run(all_bf, xb)}
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
