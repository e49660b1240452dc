"""Compare two `cnnlens demo` run directories: is the refactor free of behaviour change?

    python benchmarks/compare_demo.py BASE NEW

Compares ``eval/metrics.json``, ``trust/scores.json``, every explanation map under ``explain/``
(``.npy``, including ``confused/`` and ``lime/``) and ``report/findings.json``. Floats are equal when
``|a - b| <= 1e-6 + 1e-6 |a|``; everything else must be identical. What measures time, not behaviour,
is left out and listed: ``seconds`` in ``trust/scores.json``, and the findings whose source is
``history.csv: seconds`` or ``timings.json`` (their sentences are compared with every number, and
the name of the slowest stage, masked).
Prints one line per file and exits 1 when anything differs.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

TOL = 1e-6
TIME_KEYS = {"seconds"}  # wall-clock time in trust/scores.json
TIME_SOURCES = ("history.csv: seconds", "timings.json")


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= TOL + TOL * abs(a)


def diff(a: Any, b: Any, where: str = "", skip: set[str] = frozenset()) -> list[str]:
    """Differences between two JSON values (floats to TOL), as ``path: a != b`` lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k in skip:
                continue
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'NEW' if k not in a else 'BASE'}")
            else:
                out += diff(a[k], b[k], f"{where}/{k}", skip)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{where}[{i}]", skip)]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not numbers:
        return [] if a == b else [f"{where}: {a!r} != {b!r}"]
    return [] if close(float(a), float(b)) else [f"{where}: {a!r} != {b!r}"]


def compare_json(base: Path, new: Path, rel: str, skip: set[str] = frozenset()) -> list[str]:
    a, b = base / rel, new / rel
    if not a.is_file() or not b.is_file():
        return [f"{rel}: missing in {'BASE' if not a.is_file() else 'NEW'}"]
    return [f"{rel}{d}" for d in diff(json.loads(a.read_text()), json.loads(b.read_text()), "", skip)]


def compare_maps(base: Path, new: Path) -> tuple[list[str], int]:
    rels = sorted({str(p.relative_to(base)) for p in (base / "explain").rglob("*.npy")}
                  | {str(p.relative_to(new)) for p in (new / "explain").rglob("*.npy")})
    out = []
    for rel in rels:
        a, b = base / rel, new / rel
        if not a.is_file() or not b.is_file():
            out.append(f"{rel}: missing in {'BASE' if not a.is_file() else 'NEW'}")
            continue
        x, y = np.load(a, allow_pickle=False), np.load(b, allow_pickle=False)
        if x.shape != y.shape or x.dtype != y.dtype:
            out.append(f"{rel}: {x.dtype}{x.shape} != {y.dtype}{y.shape}")
        elif not np.allclose(x, y, rtol=TOL, atol=TOL, equal_nan=True):
            out.append(f"{rel}: max |difference| {np.nanmax(np.abs(x.astype(float) - y.astype(float))):.3g}")
    return out, len(rels)


def _mask(text: str) -> str:
    """A timing sentence with its numbers and the name of the slowest stage masked."""
    return re.sub(r"the longest was .*$", "the longest was #", re.sub(r"\d+(\.\d+)?", "#", text))


def compare_findings(base: Path, new: Path) -> tuple[list[str], int]:
    rel = "report/findings.json"
    a, b = base / rel, new / rel
    if not a.is_file() or not b.is_file():
        return [f"{rel}: missing in {'BASE' if not a.is_file() else 'NEW'}"], 0
    fa, fb = json.loads(a.read_text()), json.loads(b.read_text())
    out, timed = [], 0
    if list(fa) != list(fb):
        out.append(f"{rel}: sections {list(fa)} != {list(fb)}")
    for sec in fa:
        xs, ys = fa[sec], fb.get(sec, [])
        if len(xs) != len(ys):
            out.append(f"{rel}/{sec}: {len(xs)} findings != {len(ys)}")
            continue
        for i, (x, y) in enumerate(zip(xs, ys)):
            if x["source"] != y["source"]:
                out.append(f"{rel}/{sec}[{i}] source: {x['source']!r} != {y['source']!r}")
            elif x["source"].startswith(TIME_SOURCES):
                timed += 1
                if _mask(x["text"]) != _mask(y["text"]):
                    out.append(f"{rel}/{sec}[{i}]: {x['text']!r} != {y['text']!r}")
            elif x["text"] != y["text"]:
                out.append(f"{rel}/{sec}[{i}]: {x['text']!r} != {y['text']!r}")
    return out, timed


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    base, new = Path(argv[0]), Path(argv[1])
    bad = 0
    for rel, skip in (("eval/metrics.json", set()), ("trust/scores.json", TIME_KEYS)):
        d = compare_json(base, new, rel, skip)
        bad += bool(d)
        same = "equal" + (" (seconds left out)" if skip else "")
        print(f"{rel}: " + (same if not d else f"{len(d)} differences"))
        for line in d[:20]:
            print("   ", line)
    d, n = compare_maps(base, new)
    bad += bool(d)
    print(f"explain/**/*.npy: {n} maps, " + ("all equal" if not d else f"{len(d)} differ"))
    for line in d[:20]:
        print("   ", line)
    d, timed = compare_findings(base, new)
    bad += bool(d)
    print("report/findings.json: " + ("equal" if not d else f"{len(d)} differences")
          + f" ({timed} timing sentences compared with their numbers masked)")
    for line in d[:20]:
        print("   ", line)
    print("SAME" if not bad else "DIFFERENT")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
