"""Side-by-side comparison of runs (e.g. a CNN and its parameter-matched DNN)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_text
from ..rundir import CompareRecord, EvalMetrics, History, ModelMeta
from .figures import plt, save_figure
from ..errors import CnnlensError

log = logging.getLogger(__name__)


def compare_runs(run_dirs: list[str | os.PathLike[str]], out: str | os.PathLike[str],
                 names: list[str] | None = None, *, trust_code: bool = False) -> dict[str, Any]:
    """Compare runs on the same dataset: parameters (and their ratio), best val and test accuracy,
    training curves overlaid, per-class accuracy, confusion matrices side by side.

    Each run must have been evaluated (``RUN/eval/metrics.json``); runs are evaluated here if not.
    Writes ``compare.json``, figures and ``index.html`` into ``out``. ``trust_code``: allow loading
    (for evaluation) a model that is user code (see :func:`cnnlens.load_run`).
    """
    from ..pipeline import evaluate_run
    from ..train import load_run

    if len(run_dirs) < 2:
        raise CnnlensError(f"compare needs at least two runs; got {len(run_dirs)}")
    out = Path(out)
    rows: list[dict[str, Any]] = []
    classes: list[str] | None = None
    for i, rd in enumerate(run_dirs):
        rd = Path(rd)
        meta = ModelMeta.load(rd).to_dict()
        if classes is None:
            classes = meta["classes"]
        elif meta["classes"] != classes:
            raise CnnlensError(f"runs are on different classes: {run_dirs[0]} has {classes}, {rd} has {meta['classes']}")
        if not EvalMetrics.exists(rd):
            evaluate_run(load_run(rd, trust_code=trust_code))
        metrics = EvalMetrics.load(rd).to_dict()
        hist = History.load(rd).rows
        name = names[i] if names else f"{meta['model']['name']} ({rd.name})"
        cm = np.array(metrics["confusion"], dtype=float)
        per_class_acc = (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist()
        rows.append({"name": name, "path": str(rd), "model": meta["model"]["name"], "params": meta["params"],
                     "best_val_acc": max((r["val_acc"] for r in hist), default=float("nan")),
                     "test_acc": metrics["accuracy"], "test_split": metrics["split"], "n_test": metrics["n"],
                     "epochs": len(hist), "per_class_acc": per_class_acc, "confusion": metrics["confusion"],
                     "history": hist})
    classes = classes or []
    base = rows[0]
    for r in rows:
        r["params_ratio"] = r["params"] / base["params"]
        r["test_acc_gap"] = r["test_acc"] - base["test_acc"]
    _curves(rows, out / "curves.png")
    _per_class(rows, classes, out / "per_class.png")
    _confusions(rows, classes, out / "confusions.png")
    result = {"classes": classes, "runs": [{k: v for k, v in r.items() if k != "history"} for r in rows],
              "findings": _findings(rows)}
    CompareRecord.from_dict(result).save(out)
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("cnnlens", "report/templates"),
                      autoescape=select_autoescape(default=True))
    write_text(out / "index.html", env.get_template("compare.html.j2").render(**result))
    log.info("comparison written to %s", out)
    return result


def _findings(rows: list[dict[str, Any]]) -> list[str]:
    a = rows[0]
    out = []
    for b in rows[1:]:
        out.append(f"{b['name']} has {b['params']:,} parameters, {b['params_ratio']:.3f}x {a['name']}'s "
                   f"{a['params']:,}; its {b['test_split']} accuracy is {100 * b['test_acc']:.2f}% against "
                   f"{100 * a['test_acc']:.2f}% on {a['test_split']} "
                   f"({100 * (b['test_acc'] - a['test_acc']):+.2f} points).")
    return out


def _curves(rows: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for r, color in zip(rows, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ep = [h["epoch"] for h in r["history"]]
        for ax, key in ((axes[0], "loss"), (axes[1], "acc")):
            ax.plot(ep, [h[f"train_{key}"] for h in r["history"]], "--", color=color, label=f"{r['name']} train")
            ax.plot(ep, [h[f"val_{key}"] for h in r["history"]], "-", color=color, label=f"{r['name']} val")
    axes[0].set_ylabel("cross-entropy loss")
    axes[1].set_ylabel("accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


def _per_class(rows: list[dict[str, Any]], classes: list[str], path: Path) -> None:
    k, n = len(classes), len(rows)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * k * n / 2 + 2), 3.4))
    width = 0.8 / n
    for i, r in enumerate(rows):
        ax.bar(np.arange(k) + i * width - 0.4 + width / 2, r["per_class_acc"], width, label=r["name"])
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"{rows[0]['test_split']} accuracy of the class (recall)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _confusions(rows: list[dict[str, Any]], classes: list[str], path: Path) -> None:
    n, k = len(rows), len(classes)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        cm = np.array(r["confusion"], dtype=float)
        ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(r["name"], fontsize=9)
        ax.set_xticks(range(k), classes, rotation=90, fontsize=6)
        ax.set_yticks(range(k), classes, fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    save_figure(fig, path)
