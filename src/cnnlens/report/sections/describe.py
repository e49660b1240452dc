"""The sections that describe the run: data, model, training, and the comparison with a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...rundir import CompareRecord, ConfigFile, DataCounts, DataSamples, History, ModelSummaryFile
from .. import findings
from .common import RunView, copy_beside, fig_entry


def data_section(r: RunView, out: Path) -> dict[str, Any] | None:
    from .. import plots
    from ..fig_data import sample_grid

    rec = r.load(DataCounts, "the data section")
    if rec is None:
        return None
    info = rec.to_dict()
    s = DataSamples.load_or_none(r.path)
    samples = s.to_dict() if s else None
    plots.class_counts(info["counts"], info["classes"], out / "data_counts.png")
    figs = [
        fig_entry(
            "data_counts.png",
            "images per class and split",
            "Images per class in each split (bars), counted from the dataset's labels; unlabeled images "
            "are not drawn (" + ", ".join(f"{s}: {n:,}" for s, n in info["unlabeled"].items()) + ").",
        )
    ]
    per_class = samples["per_class"] if samples else 8
    split = samples["split"] if samples else None
    seed = samples["seed"] if samples else 0
    sample_grid(r.dataset, out / "data_samples.png", per_class=per_class, split=split, seed=seed)
    figs.append(
        fig_entry(
            "data_samples.png",
            "sample images per class",
            f"Up to {per_class} images per class drawn at random (seed {seed}) from the "
            f"{split or 'whole'} split, at their stored resolution; the number beside each class is its "
            "image count in the whole dataset.",
        )
    )
    table = [
        {
            "class": c,
            "counts": [info["counts"][s][k] for s in info["splits"]],
            "total": sum(info["counts"][s][k] for s in info["splits"]),
        }
        for k, c in enumerate(info["classes"])
    ]
    return {
        "findings": findings.data_findings(info),
        "figures": figs,
        "info": info,
        "table": table,
        "raw": ["data/counts.json", "data/counts.csv", "data/samples.json"],
    }


def model_section(r: RunView) -> dict[str, Any] | None:
    rec = r.load(ModelSummaryFile, "the model's layer table")
    if rec is None:
        return None
    s = rec.to_dict()
    rows = [
        {**row, "shape": "—" if row["output_shape"] is None else "×".join(map(str, row["output_shape"]))}
        for row in s["rows"]
    ]
    return {
        "findings": findings.model_findings(s),
        "summary": s,
        "rows": rows,
        "raw": ["model/summary.json", "model/summary.csv", "model.json"],
    }


def training_section(r: RunView, out: Path) -> dict[str, Any] | None:
    from .. import plots

    history = History.load(r.path).rows
    if not history:
        return None
    plots.training_curves(history, out / "training_curves.png")
    d: dict[str, Any] = {
        "findings": findings.training_findings(history),
        "history": history,
        "figures": [
            fig_entry(
                "training_curves.png",
                "training curves",
                "Cross-entropy loss (left, nats per image) and accuracy (right) per epoch on "
                "the training split (as trained, with augmentation if any) and on the "
                "validation split; the dashed line marks the epoch with the best "
                "validation accuracy, whose weights are the saved model.",
            )
        ],
        "raw": ["history.csv", "config.yaml"],
    }
    if ConfigFile.exists(r.path):
        cfg = ConfigFile.load(r.path)
        d["config_yaml"] = cfg.text
        d["config"] = cfg.data
    return d


def compare_section(r: RunView, out: Path) -> dict[str, Any] | None:
    rec = CompareRecord.load_or_none(r.path / "compare")
    if rec is None:
        return None
    for f in ("curves.png", "per_class.png", "confusions.png"):
        if (r.path / "compare" / f).exists():
            copy_beside(r.path / "compare" / f, out / f"compare_{f}")
    c = rec.to_dict()
    src = "compare/compare.json"
    return {
        "findings": [findings._f(s, src + ": runs") for s in c.get("findings", [])],
        "runs": c["runs"],
        "raw": [src],
    }
