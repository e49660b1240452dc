"""What the explore stage (issue #21) adds to the demo: the demo's analysis with and without it.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/explore_cost.py [--run DEMO_RUN] [--repeats 3]

``--run``: a trained ``cnnlens demo`` run (copied, never written); default: train the demo's model
(digits, compact, 12 epochs, seed 0) into a temporary folder. Each repeat times, back to back on
fresh copies of the run, (A) the demo's analysis without the stage (``analyze`` with the ``demo``
sizes and ``explore=False``) and (B) the explore stage alone (``explore_run`` with the default
:class:`~cnnlens.explain.explore.ExploreConfig`), and prints B/A. The machine is shared, so the
ratio of each repeat and their median are what to read, not the seconds. B/A is an upper bound of
the slowdown of ``cnnlens demo`` (which also trains and writes the report).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cnnlens
from cnnlens.stages.explore import explore_run
from cnnlens.pipeline import SIZES, analyze, evaluate_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a trained demo run (default: train one)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="explore_cost_"))
    src = tmp / "src"
    if args.run:
        shutil.copytree(args.run, src)
    else:
        cnnlens.train("digits", "compact", out=src, epochs=12, seed=0, force=True, accelerator="cpu")
    rows = []
    for rep in range(args.repeats):
        a_dir, b_dir = tmp / f"a{rep}", tmp / f"b{rep}"
        for d in (a_dir, b_dir):
            shutil.copytree(src, d, ignore=shutil.ignore_patterns("explore", "trust", "featureviz",
                                                                  "explain"))
        run = cnnlens.load_run(a_dir)
        res = evaluate_run(run)
        t0 = time.perf_counter()
        analyze(run, res, SIZES["demo"], explore=False)
        a = time.perf_counter() - t0
        run = cnnlens.load_run(b_dir)
        res = evaluate_run(run)
        # as in the demo, the stage runs after explain and LIME (their images are explorable too)
        shutil.copytree(a_dir / "explain", b_dir / "explain", dirs_exist_ok=True)
        t0 = time.perf_counter()
        rec = explore_run(run, res)
        b = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (b_dir / "explore").iterdir())
        rows.append((a, b, b / a))
        print(f"repeat {rep + 1}: analysis without explore {a:.1f} s, explore {b:.1f} s, ratio {b / a:.3f} "
              f"({len(rec.images)} images, {len(rec.entries)} (image, class) pairs, "
              f"{len(rec.methods)} methods, "
              f"{size / 1e6:.2f} MB)", flush=True)
    med = statistics.median(r[2] for r in rows)
    print(f"median ratio explore / analysis over {len(rows)} repeats: {med:.3f} "
          f"(+{100 * med:.1f}% at most; goal <= 30%)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
