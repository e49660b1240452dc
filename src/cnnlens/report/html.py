"""``RUN/report/index.html``: one self-contained page drawn from what the run directory holds.

The page only loads the run directory's records (:mod:`cnnlens.rundir`: ``history.csv``,
``eval/metrics.json``, ``model/``, ``data/``, ``explain/``, ``featureviz/``, ``trust/``, ``compare/``)
and renders them; it computes no statistic and runs no stage. A section whose file is missing is left
out, and the page names the file and the command that makes it (``cnnlens report RUN`` first writes
the cheap descriptions a run may lack: :func:`cnnlens.workflow.report_run`). Figures are PNG files
beside the page, the numbers behind them JSON/CSV files in the run; every user string is escaped by
Jinja2's autoescaping (and matplotlib draws text, never markup).

Sections (``<section id=...>``): data, model, training, compare (when a baseline was trained),
failures, looks, trust, filters, timings. Each opens with findings generated from the numbers
(:mod:`cnnlens.report.findings`), each naming the file and field it came from.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from .. import __version__
from ..io import write_text
from ..rundir import Findings, ModelMeta
from . import sources
# the sections, one module per group (cnnlens.report.sections); the old names stay importable from here
from .sections.common import RunView as _Run, fig_entry as _fig, transform_note as _transform  # noqa: F401
from .sections.describe import (compare_section as _compare, data_section as _data, model_section as _model,
                                training_section as _training)
from .sections.failures import failures_section as _failures
from .sections.filters import filters_section as _filters, timings_section as _timings
from .sections.looks import lime_caption as _lime_caption, looks_section as _looks  # noqa: F401
from .sections.trust import trust_section as _trust

log = logging.getLogger(__name__)

SECTIONS = (
    ("data", "Data"),
    ("model", "Model"),
    ("training", "Training"),
    ("compare", "CNN vs DNN"),
    ("failures", "Where it fails"),
    ("looks", "Where it looks"),
    ("trust", "Which map to believe"),
    ("filters", "What the filters learned"),
    ("explore", "Explore"),
    ("timings", "How long each stage took"),
)


def _env() -> Environment:
    return Environment(
        loader=PackageLoader("cnnlens", "report/templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )




def describe_normalization(meta: dict[str, Any]) -> str:
    """The model's input normalization (``model.json``) in words, with its numbers."""
    nums = (f"mean {', '.join(f'{v:.4g}' for v in meta['mean'])}, std "
            f"{', '.join(f'{v:.4g}' for v in meta['std'])} (pixel values in [0, 1])")
    how = meta.get("normalization", "dataset")
    if how == "none":
        return "none (the model takes raw pixel values in [0, 1])"
    if how == "custom":
        return f"given at import, {nums}" if meta.get("imported") else f"given with --normalize, {nums}"
    if how == "pretrained":
        return f"the pretrained weights' own (not the dataset's statistics), {nums}"
    return f"the dataset's train-split statistics, {nums}"


def build_report(run_dir: str | os.PathLike[str], split: str | None = None, *,
                 trust_code: bool = False) -> Path:
    """Draw the figures and write ``RUN/report/index.html`` (plus ``findings.json``, and a copy of the
    region table ``attribution_regions.csv`` beside the page). Returns the page's path. ``trust_code``:
    allow loading a model that is user code (see :func:`cnnlens.load_run`).

    ``split``: the labeled split of the "Where it fails" section. ``None`` shows the run's evaluation
    (``RUN/eval/metrics.json``, if any). A split the run holds no evaluation of is evaluated now
    (cheap) into ``RUN/eval/`` (or ``RUN/eval/split-<name>/`` beside an evaluation of another split)."""
    run = Path(run_dir)
    meta = ModelMeta.load(run).to_dict()
    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    r = _Run(run, trust_code)
    from ..train.run import check_format

    meta = check_format(meta, ModelMeta.path(run))
    ctx: dict[str, Any] = {
        "version": __version__,
        "run_name": run.resolve().name,
        "run_path": str(run.resolve()),
        "meta": meta,
        "normalization": describe_normalization(meta),
        "sections": SECTIONS,
    }
    ctx["data"] = _data(r, out)
    ctx["model"] = _model(r)
    ctx["training"] = _training(r, out)
    ctx["compare"] = _compare(r, out)
    ctx["failures"] = _failures(r, out, sources.metrics_path(r, split))
    ctx["split_note"] = sources.split_note(ctx["failures"], ctx["data"])
    ctx["submission"] = sources.submission(r)
    ctx["looks"] = _looks(r, out)
    ctx["trust"] = _trust(r, out)
    ctx["filters"] = _filters(r, out)
    ctx["timings"] = _timings(r)
    from .explore import explore_section  # issue #21: report/explore/ (data.js, explore.js, explore.css)

    ctx["explore"] = explore_section(r, out)
    ctx["present"] = [(k, t) for k, t in SECTIONS if ctx.get(k)]
    ctx["missing"] = r.missing
    Findings({k: ctx[k].get("findings", []) for k, _ in SECTIONS if ctx.get(k)}).save(run)
    html = _env().get_template("report.html.j2").render(**ctx)
    page = write_text(out / "index.html", html)
    log.info("report written to %s", page)
    return page
