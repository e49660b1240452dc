"""The explore stage: ``RUN/explore/`` (:class:`cnnlens.rundir.ExploreMaps`), what the report's explorer
shows (issue #21). Pipeline layer: :func:`cnnlens.pipeline.analyze` runs it after the explain stages
and before trust; ``cnnlens explore RUN`` runs it alone. The report only renders the record.

The cost is logged before (the plan: images x targets x methods = maps, about X MB) and after
(seconds, bytes written); the counts are in the record's ``selection``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..explain.explore import ExploreConfig, explore_maps
from ..rundir import ExplainMaps, ExploreMaps, LimeMaps, file_name, quantize
from .basic import load_or_evaluate
from .timing import timed

log = logging.getLogger(__name__)


def explained_indices(run_dir: str | Path) -> list[int]:
    """Dataset indices the explain stage explained (``explain/`` and ``explain/lime/``), if any."""
    out: list[int] = []
    for rec in (ExplainMaps, LimeMaps):
        if rec.exists(run_dir):
            out += [int(i) for i in rec.load(run_dir).indices]
    return out


def explore_run(run: Any, result: Any = None, config: ExploreConfig | dict[str, Any] | None = None,
                split: str | None = None, progress: Any = None) -> ExploreMaps | None:
    """Compute what the explorer shows for ``run`` (a :class:`cnnlens.train.Run`) on the evaluated
    split (``result``: its :class:`~cnnlens.evaluate.EvalResult`; ``None``: evaluate ``split`` now),
    save ``RUN/explore/`` and record the stage's time as ``"explore"`` in ``timings.json``.
    Returns the record, or ``None`` (writing nothing) when ``config.enabled`` is false."""

    cfg = ExploreConfig.of(config)
    if not cfg.enabled:
        log.info("explore: left out (disabled)")
        return None
    with timed(run.path, "explore"):
        t0 = time.perf_counter()
        res = result if result is not None else load_or_evaluate(run, split)
        data = explore_maps(run.model, run.dataset, res, cfg, explained_indices(run.path), mean=run.mean,
                            std=run.std, progress=progress)
        methods: dict[str, dict[str, Any]] = {}
        qmaps = {}
        for m, a in data.maps.items():
            q, scales = quantize(a)
            qmaps[m] = q
            methods[m] = {"file": f"{file_name(m)}.npy", "scale": scales, "family": data.families[m],
                          "signed": data.signed[m]}
        rec = ExploreMaps(split=data.split, classes=data.classes, images=data.images, entries=data.entries,
                          methods=methods, selection={**data.selection, "config": cfg.to_dict()},
                          seconds=time.perf_counter() - t0, notes=data.notes, pixels=data.pixels, maps=qmaps)
        path = rec.save(run.path)
        size = sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file())
        log.info("explore: %d maps of %d images in %.1f s, %.1f MB in %s", len(data.entries) * len(methods),
                 len(data.images), rec.seconds, size / 1e6, path.parent)
    return rec
