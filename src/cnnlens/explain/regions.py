"""Where attribution falls: the share of ``|map|`` in fixed image regions, and how two maps of the
same image split their mass. Pure NumPy on ``[N, H, W]`` maps; the explain stage stores the results
(:class:`cnnlens.rundir.AttributionRegions`, :class:`cnnlens.rundir.ConfusedMaps`), the report reads them.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import CnnlensError

REGIONS = ("top", "middle", "bottom", "left", "centre_col", "right", "centre_box")


def region_bounds(h: int, w: int) -> dict[str, tuple[int, int, int, int]]:
    """Regions as ``(top, bottom, left, right)`` pixel bounds (exclusive): row thirds, column thirds,
    and the central box (the middle half of the height and of the width, a quarter of the area)."""
    r1, r2 = round(h / 3), round(2 * h / 3)
    c1, c2 = round(w / 3), round(2 * w / 3)
    return {
        "top": (0, r1, 0, w),
        "middle": (r1, r2, 0, w),
        "bottom": (r2, h, 0, w),
        "left": (0, h, 0, c1),
        "centre_col": (0, h, c1, c2),
        "right": (0, h, c2, w),
        "centre_box": (round(h / 4), round(3 * h / 4), round(w / 4), round(3 * w / 4)),
    }


def region_mass(maps: np.ndarray) -> list[dict[str, float]]:
    """Share of each map's absolute attribution ``|m|`` in every region of :func:`region_bounds`.

    Args:
        maps: ``float [N, H, W]`` raw maps.

    Returns:
        one dict per map: region -> share in [0, 1] (``nan`` for an all-zero map), plus
        ``centre_box_area``, the share of pixels the central box covers (what a uniform map gets).
    """
    a = np.abs(np.asarray(maps, dtype=np.float64))
    if a.ndim != 3:
        raise CnnlensError(f"maps must be [N, H, W]; got shape {a.shape}")
    n, h, w = a.shape
    bounds = region_bounds(h, w)
    t, b, l_, r = bounds["centre_box"]
    area = (b - t) * (r - l_) / (h * w)
    out = []
    for i in range(n):
        tot = a[i].sum()
        row: dict[str, float] = {}
        for name, (t0, b0, l0, r0) in bounds.items():
            row[name] = float(a[i, t0:b0, l0:r0].sum() / tot) if tot > 0 else math.nan
        row["centre_box_area"] = area
        out.append(row)
    return out


def pred_share(maps_a: np.ndarray, maps_b: np.ndarray) -> list[float]:
    """Per image, ``sum |b| / (sum |a| + sum |b|)``: the share of map ``b`` (e.g. for the predicted
    class) in the combined mass of both maps (``[N, H, W]`` each); images where both are zero are left out."""
    a, b = np.abs(maps_a).sum((1, 2)), np.abs(maps_b).sum((1, 2))
    return [float(y / (x + y)) for x, y in zip(a, b) if x + y > 0]
