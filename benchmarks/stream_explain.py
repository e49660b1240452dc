"""Peak memory of explaining N images: streamed to disk in chunks (explain_stream) vs all at once
(explain_images, which holds every map). Each measurement runs in a fresh subprocess and reports the
growth of peak RSS (resource.getrusage ru_maxrss) over a warmed-up baseline, plus the wall time.

    python benchmarks/stream_explain.py [--sizes 1000,10000] [--methods saliency,gradcam] [--side 64]

The model is the compact CNN (untrained weights: memory and time do not depend on their values) on
1 x SIDE x SIDE images. Runs with glibc's default allocator, and again with MALLOC_MMAP_THRESHOLD_
fixed (no heap fragmentation from the dynamic threshold), which shows what the code itself keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, torch
from cnnlens.explain import explain_images, explain_stream
from cnnlens.models import create_model
n, side, mode, out, methods, chunk = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].split(","), int(sys.argv[6])
torch.manual_seed(0)
model = create_model("compact", in_channels=1, num_classes=10, input_size=side)
images = torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8)
def run(imgs, where):
    if mode == "stream":
        explain_stream(model, imgs, [0.5], [0.25], methods, where, chunk_size=chunk, overwrite=True)
    else:
        explain_images(model, imgs, [0.5], [0.25], methods, chunk_size=chunk)
run(images[:2 * chunk], out + "-warm")  # lazy imports, allocator warm-up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
run(images, out)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": peak / 1024, "growth_mb": (peak - base) / 1024, "seconds": dt}))
"""


def measure(n: int, side: int, mode: str, methods: str, chunk: int, fixed_threshold: bool) -> dict[str, float]:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.setdefault("OMP_NUM_THREADS", "1")
    if fixed_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([sys.executable, "-c", CHILD, str(n), str(side), mode, str(Path(d) / "s"), methods,
                            str(chunk)], env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--methods", default="saliency,gradcam")
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=256)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"compact CNN, 1x{a.side}x{a.side} images, methods {a.methods}, chunk {a.chunk}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}")
    print(f"{'allocator':<22}{'mode':<8}{'N':>7}{'peak RSS MB':>13}{'growth MB':>11}{'seconds':>9}")
    for fixed in (False, True):
        for mode in ("stream", "all"):
            for n in sizes:
                r = measure(n, a.side, mode, a.methods, a.chunk, fixed)
                alloc = "fixed mmap threshold" if fixed else "glibc default"
                print(f"{alloc:<22}{mode:<8}{n:>7}{r['peak_mb']:>13.1f}{r['growth_mb']:>11.1f}{r['seconds']:>9.1f}")


if __name__ == "__main__":
    main()
