"""The "Where it fails" section: confusion, per-class numbers, top losses, calibration, confused pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...rundir import ConfusedMaps, EvalMetrics
from .. import findings
from .common import RunView, fig_entry, transform_note


def failures_section(r: RunView, out: Path, mpath: Path | None = None) -> dict[str, Any] | None:
    from .. import plots

    if mpath is None:
        r.load(EvalMetrics, "the evaluation")  # names the missing file (and its command) on the page
        return None
    rec = EvalMetrics.load(r.path, folder=mpath.parent.relative_to(r.path).as_posix())
    m = rec.to_dict()
    classes = m["classes"]
    plots.confusion_matrix(m["confusion"], classes, out / "confusion_counts.png")
    plots.confusion_matrix(m["confusion"], classes, out / "confusion_normalized.png", normalized=True)
    figs = [
        fig_entry(
            "confusion_counts.png",
            "confusion matrix (counts)",
            f"Confusion matrix on the {m['split']} split ({m['n']:,} images): rows are the true class, "
            "columns "
            "the predicted class; cells count images.",
        ),
        fig_entry(
            "confusion_normalized.png",
            "confusion matrix (row-normalized)",
            "The same matrix normalized per true class: each row sums to 1 (the fraction of that class "
            "predicted as each column; the diagonal is the recall).",
        ),
    ]
    d: dict[str, Any] = {
        "findings": findings.eval_findings(m, source=mpath.relative_to(r.path).as_posix()),
        "m": m,
        "figures": figs,
        "raw": [(mpath.parent.relative_to(r.path) / f).as_posix()
                for f in ("metrics.json", "predictions.csv", "confusion.csv")],
    }
    tl = m.get("top_losses") or []
    if tl:
        imgs = r.images([t["index"] for t in tl])
        titles = [
            f"#{t['index']} true {t['true']}\npred {t['pred']} ({100 * t['p_pred']:.0f}%)\n"
            f"p(true) {100 * t['p_true']:.1f}%"
            for t in tl
        ]
        plots.image_row_grid(imgs, titles, out / "top_losses.png")
        d["top_losses_figure"] = fig_entry(
            "top_losses.png",
            "top losses",
            f"The {len(tl)} {m['split']} images with the highest cross-entropy loss "
            "-log p(true class): dataset index, true class, predicted class with its "
            "softmax probability, and the probability given to the true class.",
        )
    cal = m.get("calibration")
    if cal:
        plots.reliability_diagram(cal["bins"], cal["ece"], out / "reliability.png")
        d["reliability_figure"] = fig_entry(
            "reliability.png",
            "reliability diagram",
            f"Reliability diagram: {m['n']:,} {m['split']} images binned by confidence "
            f"(the largest softmax probability) into {len(cal['bins'])} equal-width bins; "
            "bars show the accuracy in each bin, dots the bin's mean confidence; below, "
            f"images per bin. ECE = Σ (bin share) × |accuracy − confidence| = "
            f"{100 * cal['ece']:.2f}%.",
        )
    pairs = confused_section(r, out, m)
    if pairs:
        d["confused"] = pairs
    return d


def confused_section(r: RunView, out: Path, m: dict[str, Any]) -> dict[str, Any] | None:
    """Figures of the most-confused pairs (images, and each method's maps for A and for B)."""
    from ...explain.core import Explanation
    from ..fig_explain import confused_pairs_figure
    from .. import plots

    rec = ConfusedMaps.load_or_none(r.path)
    if rec is None:
        return None
    meta = rec.to_dict()
    classes = meta["classes"]
    imgs = r.images(meta["indices"])
    titles = [
        f"#{i}: {classes[a]} → {classes[b]}"
        for i, a, b in zip(meta["indices"], meta["labels"], meta["predicted"])
    ]
    plots.image_row_grid(
        imgs,
        [f"{t}\np(pred) {100 * q:.0f}%" for t, q in zip(titles, meta["p_pred"])],
        out / "confused_examples.png",
    )
    figs = [
        fig_entry(
            "confused_examples.png",
            "examples of the most-confused pairs",
            f"Up to {meta['per_pair']} {meta.get('split', 'test')} images of each of the {len(meta['pairs'])} "
            "most-confused pairs "
            "(true → predicted), with the predicted class's softmax probability.",
        )
    ]
    probs = rec.probabilities()
    targets_a, targets_b = torch.tensor(meta["labels"]), torch.tensor(meta["predicted"])
    for method, info in meta["methods"].items():
        ma, mb = rec.maps_true[method], rec.maps_pred[method]
        ea = Explanation(torch.from_numpy(ma), method, targets_a, probs, info.get("layer"), info["signed"])
        eb = Explanation(torch.from_numpy(mb), method, targets_b, probs, info.get("layer"), info["signed"])
        name = f"confused_{method.replace(':', '_')}.png"
        confused_pairs_figure(imgs, ea, eb, classes, out / name, row_titles=titles)
        layer = f" at layer {info['layer']}{transform_note(info)}" if info.get("layer") else ""
        figs.append(
            fig_entry(
                name,
                f"{method} for the true and the predicted class",
                f"{method}{layer}: each misclassified image, its map for the true class A and its map for "
                "the predicted class B, both scaled together per image (so their strengths compare); "
                "titles give each class's softmax probability.",
            )
        )
    return {
        "findings": findings.confused_findings(meta, rec.pred_share or {}),
        "figures": figs,
        "pairs": meta["pairs"],
        "raw": ["explain/confused/confused.json"],
    }
