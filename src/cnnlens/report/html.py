"""``RUN/report/index.html``: one self-contained page drawn from what the run directory holds.

The page only redraws from saved numbers (history.csv, eval/metrics.json, explain/*.npy); it never
retrains or recomputes. Figures are PNG files beside the page; every user string is escaped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from .. import __version__
from ..io import read_json, write_text

log = logging.getLogger(__name__)


def _env() -> Environment:
    return Environment(loader=PackageLoader("cnnlens", "report/templates"),
                       autoescape=select_autoescape(["html", "j2"], default=True),
                       trim_blocks=True, lstrip_blocks=True)


def build_report(run_dir: str | os.PathLike[str]) -> Path:
    """Draw the figures and write ``RUN/report/index.html``. Returns the page's path."""
    from ..train.run import check_format, read_history
    from . import plots

    run = Path(run_dir)
    if not (run / "model.json").exists():
        raise FileNotFoundError(f"{run} is not a cnnlens run (model.json missing)")
    out = run / "report"
    meta = check_format(read_json(run / "model.json"), run / "model.json")
    classes = meta["classes"]
    ctx: dict[str, Any] = {"version": __version__, "run_name": run.resolve().name, "meta": meta,
                           "sections": []}
    # -- training
    history = read_history(run / "history.csv")
    if history:
        plots.training_curves(history, out / "training_curves.png")
        best = max(history, key=lambda r: (r["val_acc"], -r["epoch"]))
        ctx["training"] = {"history": history, "figure": "training_curves.png", "best": best,
                           "epochs": len(history), "seconds": sum(r["seconds"] for r in history)}
    cfg_path = run / "config.yaml"
    if cfg_path.exists():
        ctx["config_yaml"] = cfg_path.read_text(encoding="utf-8")
        ctx["config"] = yaml.safe_load(ctx["config_yaml"])
    # -- evaluation
    mpath = run / "eval" / "metrics.json"
    if mpath.exists():
        metrics = read_json(mpath)
        plots.confusion_matrix(metrics["confusion"], classes, out / "confusion_counts.png")
        plots.confusion_matrix(metrics["confusion"], classes, out / "confusion_normalized.png", normalized=True)
        ctx["eval"] = metrics
        ctx["findings_eval"] = _eval_findings(metrics)
    # -- explanations
    ipath = run / "explain" / "explanations.json"
    if ipath.exists():
        ctx["explain"] = _explain_section(run, out, read_json(ipath))
    cpath = run / "compare" / "compare.json"
    if cpath.exists():
        from ..io import write_bytes

        for f in ("curves.png", "per_class.png", "confusions.png"):
            if (run / "compare" / f).exists():
                write_bytes(out / f"compare_{f}", (run / "compare" / f).read_bytes())
        ctx["compare"] = read_json(cpath)
    tpath = run / "timings.json"
    if tpath.exists():
        ctx["timings"] = read_json(tpath)
    html = _env().get_template("report.html.j2").render(**ctx)
    page = write_text(out / "index.html", html)
    log.info("report written to %s", page)
    return page


def _eval_findings(m: dict[str, Any]) -> list[str]:
    """Sentences generated from the measured values, each naming the number behind it."""
    pc = sorted(m["per_class"], key=lambda r: (-r["recall"], r["class"]))
    out = [f"Test accuracy is {100 * m['accuracy']:.1f}% on {m['n']} images "
           f"(macro F1 {m['macro_f1']:.3f})."]
    if len(pc) >= 2:
        out.append(f"Best recognized: {pc[0]['class']} (recall {100 * pc[0]['recall']:.1f}%); "
                   f"worst: {pc[-1]['class']} (recall {100 * pc[-1]['recall']:.1f}%).")
    mc = m.get("most_confused") or []
    if mc:
        parts = [f"{p['true']} taken for {p['pred']} ({p['count']} images, {100 * p['rate']:.1f}% of {p['true']})"
                 for p in mc[:3]]
        out.append("Most confused: " + "; ".join(parts) + ".")
    else:
        out.append("No test image was misclassified.")
    return out


def _explain_section(run: Path, out: Path, index: dict[str, Any]) -> dict[str, Any]:
    """Redraw the explanation grid from the saved maps (``RUN/explain/explanations.json`` + ``.npy``)."""
    from ..explain.core import Explanation
    from ..train import load_run
    from .fig_explain import explanation_grid

    classes = index["classes"]
    targets = torch.as_tensor(index["targets"])
    probs = torch.as_tensor(index["probs"])
    exps = {}
    for m, info in index["methods"].items():
        maps = torch.from_numpy(np.load(run / "explain" / info["file"], allow_pickle=False))
        exps[m] = Explanation(maps=maps, method=m, targets=targets, probs=probs, layer=info["layer"],
                              signed=info["signed"])
    images = load_run(run).dataset.images[torch.as_tensor(index["indices"])]
    labels = index.get("labels") or [None] * len(index["indices"])
    titles = [f"#{i}" + (f" true: {classes[l]}" if l is not None else "") for i, l in zip(index["indices"], labels)]
    explanation_grid(images, exps, titles, out / "explanations.png", classes=classes)
    layers = {m: v["layer"] for m, v in index["methods"].items() if v.get("layer")}
    return {"figure": "explanations.png", "methods": list(exps), "layers": layers, "n": len(index["indices"]),
            "target": "pred"}
