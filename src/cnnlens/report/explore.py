"""The report's Explore section: ``report/explore/data.js`` + ``explore.js`` + ``explore.css`` (issue #21).

Reads records only (:class:`~cnnlens.rundir.ExploreMaps`, :class:`~cnnlens.rundir.Predictions`,
:class:`~cnnlens.rundir.EvalMetrics`, ``TrustScores.per_image``, :class:`~cnnlens.rundir.LimeMaps`) and
computes no statistic. ``data.js`` sets ``window.CNNLENS_EXPLORE`` (a script, not a fetched JSON file: a
``file://`` page may not fetch); images travel as PNG atlases in ``data:`` URIs, because a canvas that
reads the pixels of a ``file://`` image is tainted in Chromium and a ``data:`` one is not.

Atlases: tile ``k`` of an atlas with ``cols`` columns sits at ``(k % cols, k // cols)`` in tiles of
``H x W``. The pixels atlas holds ``pixels.npy`` (grey or RGB); each method's atlas is 8-bit grey and
holds exactly the quantized bytes of ``<method>.npy`` (entry order), so the page dequantizes with the
record's own rule ``m = (q / 127.5 - 1) * scale``.

Display rule (the page, documented in docs/report.md): with ``S`` the map's scale (``A vs B``: the larger
of the two scales), ``t = m / S``; signed display uses colour ``LUT[round((t + 1) * 127.5)]``, absolute
display ``LUT[round(|t| * 255)]``; the drawn pixel is ``round((1 - a) * image + a * colour)`` at opacity
``a``. The lookup tables are :data:`COLORMAPS` (256 RGB entries each, sampled from matplotlib).
"""

from __future__ import annotations

import base64
import io
import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_bytes, write_text
from ..rundir import EvalMetrics, ExploreMaps, LimeMaps, Predictions, TrustScores
from . import findings as F

CMAP_NAMES = ("viridis", "cividis", "RdBu_r", "gray")
ASSETS = ("explore.js", "explore.css")
MAKER_HINT = "cnnlens explore RUN --explore-wrong N --explore-correct N"


@cache
def colormaps() -> dict[str, list[list[int]]]:
    """The page's colour lookup tables: name -> 256 ``[r, g, b]`` (0..255), matplotlib's colormap
    sampled at ``k / 255`` and rounded. ``cividis`` is the colour-blind-safe one."""
    import matplotlib

    out = {}
    for name in CMAP_NAMES:
        rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
        out[name] = np.rint(rgba[:, :3] * 255).astype(int).tolist()
    return out


def atlas_layout(n: int) -> int:
    """Columns of an atlas of ``n`` tiles (about square)."""
    return max(1, math.ceil(math.sqrt(n)))


def atlas(tiles: np.ndarray) -> np.ndarray:
    """``uint8 [N, H, W]`` or ``[N, H, W, C]`` -> one image of ``atlas_layout(N)`` columns (zeros pad)."""
    n, h, w = tiles.shape[:3]
    cols = atlas_layout(n)
    rows = max(1, math.ceil(n / cols))
    out = np.zeros((rows * h, cols * w, *tiles.shape[3:]), dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = tiles[k]
    return out


def png_data_uri(img: np.ndarray) -> str:
    """An 8-bit grey (``[H, W]``) or RGB (``[H, W, 3]``) PNG as a ``data:`` URI (no gamma or colour
    profile chunk, so a browser hands the bytes to a canvas as stored)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img), mode="L" if img.ndim == 2 else "RGB").save(
        buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def script_json(obj: Any) -> str:
    """JSON safe to embed in a script: no ``</script``, ``<!--``, ``&`` or U+2028/2029 survives as such
    (``<``, ``>``, ``&`` become ``\\u003c``/``\\u003e``/``\\u0026``; ``ensure_ascii`` escapes the rest)."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _gallery_rows(r: Any, split: str, classes: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """All rows of the evaluated ``split`` (``eval/predictions.csv``) and its confusion, as read; or
    ``(None, why)``."""
    for folder in ("eval", f"eval/split-{split}"):
        m = EvalMetrics.load_or_none(r.path, folder=folder)
        if m is None or m.split != split or not Predictions.exists(r.path, folder=folder):
            continue
        p = Predictions.load(r.path, folder=folder)
        pos = {c: k for k, c in enumerate(p.classes)}
        if p.classes != classes:
            return None, (f"{folder}/predictions.csv has other classes than explore/explore.json; "
                          "re-run `cnnlens explore RUN`")
        true = [pos[c] for c in p.labels]
        pred = [pos[c] for c in p.preds]
        return {
            "file": f"{folder}/predictions.csv",
            "index": p.indices, "id": p.ids, "true": true, "pred": pred,
            "p_pred": [pr[k] for pr, k in zip(p.probs, pred)],
            "p_true": [pr[k] for pr, k in zip(p.probs, true)],
            "confusion": m.confusion, "confusion_file": f"{folder}/metrics.json",
        }, None
    return None, f"no evaluation of the {split} split (eval/predictions.csv); `cnnlens evaluate RUN` makes it"


def _trust(r: Any, split: str) -> dict[str, Any] | None:
    rec = TrustScores.load_or_none(r.path)
    per = rec.per_image if rec is not None else None  # absent in runs scored before #21
    if not per or per.get("split") != split:
        return None
    methods = {}
    for m, v in per.get("methods", {}).items():
        methods[m] = {
            "scores": {k: [_finite(x) for x in vals] for k, vals in (v.get("scores") or {}).items()},
            "curves": {k: [[_finite(x) for x in c] for c in curves]
                       for k, curves in (v.get("curves") or {}).items()},
        }
    return {"split": split, "indices": [int(i) for i in per.get("indices", [])], "methods": methods}


def _lime(r: Any, split: str, classes: list[str]) -> dict[str, Any] | None:
    rec = LimeMaps.load_or_none(r.path)
    if rec is None or (rec.split or "test") != split or rec.segments is None:
        return None
    seg = np.asarray(rec.segments, dtype=np.int64)
    return {"indices": [int(i) for i in rec.indices], "targets": [int(t) for t in rec.targets],
            "weights": [[_finite(w) for w in ws] for ws in rec.weights],
            "segments": [s.reshape(-1).tolist() for s in seg], "shape": list(seg.shape[1:])}


def explore_data(r: Any, rec: ExploreMaps) -> dict[str, Any]:
    """``window.CNNLENS_EXPLORE``: everything the page shows, read from the records."""
    pixels = np.asarray(rec.pixels)
    n, c, h, w = pixels.shape
    tiles = pixels[:, 0] if c == 1 else pixels[:, :3].transpose(0, 2, 3, 1)
    rows, why = _gallery_rows(r, rec.split, list(rec.classes))
    methods = {}
    for m, info in rec.methods.items():
        q = np.asarray(rec.maps[m])
        methods[m] = {"family": info.get("family"), "signed": bool(info.get("signed")),
                      "scale": [float(s) for s in info["scale"]], "atlas": png_data_uri(atlas(q)),
                      "cols": atlas_layout(len(q)), "h": int(q.shape[1]), "w": int(q.shape[2])}
    return {
        "version": 1,
        "split": rec.split,
        "classes": list(rec.classes),
        "images": [dict(im, slot=k) for k, im in enumerate(rec.images)],
        "entries": [[int(s), int(t)] for s, t in rec.entries],
        "methods": methods,
        "pixels": {"atlas": png_data_uri(atlas(tiles)), "cols": atlas_layout(n), "h": int(h), "w": int(w),
                   "channels": int(c)},
        "rows": rows,
        "rows_note": why,
        "selection": rec.selection,
        "quantization": rec.quantization,
        "trust": _trust(r, rec.split),
        "lime": _lime(r, rec.split, list(rec.classes)),
        "colormaps": colormaps(),
        "maker": MAKER_HINT,
    }


def explore_section(r: Any, out: Path) -> dict[str, Any] | None:
    """Write ``out/explore/`` (data.js, explore.js, explore.css); the section's context, or ``None``
    (the page then names ``explore/explore.json`` and ``cnnlens explore RUN`` as missing)."""
    rec = r.load(ExploreMaps, "the explorer")
    if rec is None:
        return None
    data = explore_data(r, rec)
    folder = out / "explore"
    write_text(folder / "data.js", "window.CNNLENS_EXPLORE = " + script_json(data) + ";\n")
    assets = resources.files("cnnlens") / "report" / "templates" / "explore"
    for name in ASSETS:
        write_bytes(folder / name, (assets / name).read_bytes())
    sel = rec.selection or {}
    n_wrong = sum(1 for im in rec.images if im.get("why") == "wrong")
    text = (f"The explorer holds {len(rec.methods)} method(s) × {len(rec.entries)} maps of "
            f"{len(rec.images)} {rec.split} images ({n_wrong} misclassified)")
    if isinstance(sel.get("n_wrong"), int) and sel.get("n_wrong") > n_wrong:
        text += (f"; {sel['n_wrong'] - n_wrong} further misclassified images are listed without maps "
                 f"(`{MAKER_HINT}` computes more)")
    findings = [F._f(text + ".", "explore/explore.json: images, entries, selection")]
    if data["rows_note"]:
        findings.append(F._f(f"The gallery shows the explored images only: {data['rows_note']}.",
                             "explore/explore.json: split"))
    return {"findings": findings, "methods": list(rec.methods), "n_images": len(rec.images),
            "raw": ["explore/explore.json", "explore/pixels.npy", "explore/*.npy"]}
