"""Which files of a run directory the report shows: the evaluation of the split asked for (evaluated
when missing), why that split is not ``test``, the submission file, and every feature visualization
in ``featureviz/`` (also what ``cnnlens filters | featuremaps | dream`` wrote on their own)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..io import read_json
from . import findings

log = logging.getLogger(__name__)


def metrics_path(r: Any, split: str | None) -> Path | None:
    """The ``metrics.json`` the report shows for ``split`` (see :func:`cnnlens.report.html.build_report`),
    evaluated first if the run holds none of it. ``r``: the report's lazily loaded run (``.path``,
    ``.dataset``, ``.loaded``)."""
    from ..data.splits import label_split
    from ..rundir import EvalMetrics, save_eval

    held_rec = EvalMetrics.load_or_none(r.path)
    held = held_rec.split if held_rec is not None else None
    if split is None:
        # the report evaluates only when asked to
        return EvalMetrics.path(r.path) if held is not None else None
    split = label_split(r.dataset, split)
    if split == held:
        return EvalMetrics.path(r.path)
    folder = "eval" if held is None else f"eval/split-{split}"
    sub = EvalMetrics.path(r.path, folder=folder)
    if not sub.exists() or EvalMetrics.load(r.path, folder=folder).split != split:
        from ..evaluate import evaluate

        run = r.loaded
        res = evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std)
        save_eval(res, r.path, run.dataset.ids, folder=folder)
        log.info("evaluated the %s split for the report: %s", split, sub)
    return sub


def split_note(failures: dict[str, Any] | None, data: dict[str, Any] | None) -> str | None:
    """One sentence on the page's top when the labeled split shown is not ``test``, saying why."""
    if not failures or not data:
        return None
    return findings.split_note(failures["m"]["split"], data["info"])


def submission(r: Any) -> dict[str, Any] | None:
    """``RUN/submission.csv`` (written by ``cnnlens run`` for an unlabeled test split): its name, path,
    header and row count, or ``None``."""
    from ..pipeline import SUBMISSION

    p = r.path / SUBMISSION
    if not p.exists():
        return None
    with open(p, encoding="utf-8") as fh:
        header = fh.readline().strip()
        rows = sum(1 for line in fh if line.strip())
    return {"file": SUBMISSION, "path": str(p.resolve()), "rows": rows, "header": header}


def featureviz_index(fv: Path) -> dict[str, list[dict[str, Any]]] | None:
    """Every feature visualization in ``RUN/featureviz/``: what ``cnnlens run`` made (in the order of
    its ``featureviz.json``) and what ``cnnlens filters | featuremaps | dream`` made on their own
    (then by file name), each read from its own JSON (the latest numbers for its figure).
    ``None`` when there is none."""
    p = fv / "featureviz.json"
    idx = read_json(p) if p.exists() else {}
    first = [f["figure"] for f in idx.get("filters", [])] + [f["figure"] for f in idx.get("featuremaps", [])]
    if idx.get("dream"):
        first.append(idx["dream"]["files"][0])
    found: dict[str, list[dict[str, Any]]] = {}
    for key, pattern in (("filters", "filters_*.json"), ("featuremaps", "featuremaps_*.json"),
                         ("dreams", "dream_*.json")):
        items = []
        for j in sorted(fv.glob(pattern)):
            d = read_json(j)
            fig = d["files"][0] if key == "dreams" else d["figure"]
            if (fv / fig).exists():
                items.append(d)
            else:
                log.warning("%s names the figure %s, which is missing; left out of the report", j, fig)
        rank = {f: i for i, f in enumerate(first)}
        items.sort(key=lambda d: rank.get(d["files"][0] if key == "dreams" else d["figure"], len(rank)))
        found[key] = items
    notes = list(idx.get("notes", []))  # what `cnnlens run` left out, and why (e.g. a ViT's attention blocks)
    if not any(found.values()) and not notes:
        return None
    found["notes"] = notes
    return found
