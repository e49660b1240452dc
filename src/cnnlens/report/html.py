"""``RUN/report/index.html``: one self-contained page drawn from what the run directory holds.

The page only redraws from saved numbers (``history.csv``, ``eval/metrics.json``, ``model/``,
``data/``, ``explain/``, ``featureviz/``, ``trust/``, ``compare/``); it never retrains and never
reruns an explanation, a feature visualization or the trust protocol. Only the two cheap
descriptions (model layer table, class counts) are computed when a run predates them. Figures are
PNG files beside the page, the numbers behind them JSON/CSV files in the run; every user string is
escaped by Jinja2's autoescaping (and matplotlib draws text, never markup).

Sections (``<section id=...>``): data, model, training, compare (when a baseline was trained),
failures, looks, trust, filters, timings. Each opens with findings generated from the numbers
(:mod:`cnnlens.report.findings`), each naming the file and field it came from.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from .. import __version__
from ..io import read_json, write_csv, write_json, write_text
from . import findings

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
    ("timings", "How long each stage took"),
)


def _env() -> Environment:
    return Environment(
        loader=PackageLoader("cnnlens", "report/templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


class _Run:
    """The run directory, with the model and dataset loaded only when a figure needs images."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @cached_property
    def loaded(self):  # noqa: ANN201 (cnnlens.train.Run)
        from ..train import load_run

        return load_run(self.path)

    @property
    def dataset(self):  # noqa: ANN201
        return self.loaded.dataset

    def images(self, indices: list[int]) -> torch.Tensor:
        return self.dataset.images[torch.as_tensor(indices, dtype=torch.long)]


def build_report(run_dir: str | os.PathLike[str]) -> Path:
    """Draw the figures and write ``RUN/report/index.html`` (plus ``findings.json`` and the region
    table ``attribution_regions.csv``). Returns the page's path."""
    run = Path(run_dir)
    if not (run / "model.json").exists():
        raise FileNotFoundError(
            f"{run} is not a cnnlens run (model.json missing); train one with "
            "`cnnlens train` or `cnnlens run`"
        )
    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    r = _Run(run)
    from ..train.run import check_format

    meta = check_format(read_json(run / "model.json"), run / "model.json")
    ctx: dict[str, Any] = {
        "version": __version__,
        "run_name": run.resolve().name,
        "run_path": str(run.resolve()),
        "meta": meta,
        "sections": SECTIONS,
    }
    ctx["data"] = _data(r, out)
    ctx["model"] = _model(r)
    ctx["training"] = _training(r, out)
    ctx["compare"] = _compare(r, out)
    ctx["failures"] = _failures(r, out)
    ctx["looks"] = _looks(r, out)
    ctx["trust"] = _trust(r, out)
    ctx["filters"] = _filters(r, out)
    ctx["timings"] = _timings(r)
    ctx["present"] = [(k, t) for k, t in SECTIONS if ctx.get(k)]
    write_json(out / "findings.json", {k: ctx[k].get("findings", []) for k, _ in SECTIONS if ctx.get(k)})
    html = _env().get_template("report.html.j2").render(**ctx)
    page = write_text(out / "index.html", html)
    log.info("report written to %s", page)
    return page


# ---- sections -------------------------------------------------------------------------------------


def _fig(file: str, alt: str, caption: str) -> dict[str, str]:
    return {"file": file, "alt": alt, "caption": caption}


def _data(r: _Run, out: Path) -> dict[str, Any] | None:
    from ..pipeline import describe_data
    from . import plots
    from .fig_data import sample_grid

    p = r.path / "data" / "counts.json"
    info = read_json(p) if p.exists() else describe_data(r.loaded)  # cheap; runs that predate it
    samples = (
        read_json(r.path / "data" / "samples.json") if (r.path / "data" / "samples.json").exists() else None
    )
    plots.class_counts(info["counts"], info["classes"], out / "data_counts.png")
    figs = [
        _fig(
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
        _fig(
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


def _model(r: _Run) -> dict[str, Any] | None:
    from ..pipeline import summarize_run

    p = r.path / "model" / "summary.json"
    s = read_json(p) if p.exists() else summarize_run(r.loaded)
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


def _training(r: _Run, out: Path) -> dict[str, Any] | None:
    from ..train.run import read_history
    from . import plots

    history = read_history(r.path / "history.csv")
    if not history:
        return None
    plots.training_curves(history, out / "training_curves.png")
    d: dict[str, Any] = {
        "findings": findings.training_findings(history),
        "history": history,
        "figures": [
            _fig(
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
    cfg = r.path / "config.yaml"
    if cfg.exists():
        d["config_yaml"] = cfg.read_text(encoding="utf-8")
        d["config"] = yaml.safe_load(d["config_yaml"])
    return d


def _copy(src: Path, dst: Path) -> None:
    """Copy a figure beside the page (atomically, like every file cnnlens writes)."""
    from ..io import write_bytes

    write_bytes(dst, Path(src).read_bytes())


def _compare(r: _Run, out: Path) -> dict[str, Any] | None:
    cpath = r.path / "compare" / "compare.json"
    if not cpath.exists():
        return None
    for f in ("curves.png", "per_class.png", "confusions.png"):
        if (r.path / "compare" / f).exists():
            _copy(r.path / "compare" / f, out / f"compare_{f}")
    c = read_json(cpath)
    src = "compare/compare.json"
    return {
        "findings": [findings._f(s, src + ": runs") for s in c.get("findings", [])],
        "runs": c["runs"],
        "raw": [src],
    }


def _failures(r: _Run, out: Path) -> dict[str, Any] | None:
    from . import plots

    mpath = r.path / "eval" / "metrics.json"
    if not mpath.exists():
        return None
    m = read_json(mpath)
    classes = m["classes"]
    plots.confusion_matrix(m["confusion"], classes, out / "confusion_counts.png")
    plots.confusion_matrix(m["confusion"], classes, out / "confusion_normalized.png", normalized=True)
    figs = [
        _fig(
            "confusion_counts.png",
            "confusion matrix (counts)",
            f"Confusion matrix on the {m['split']} split ({m['n']:,} images): rows are the true class, "
            "columns "
            "the predicted class; cells count images.",
        ),
        _fig(
            "confusion_normalized.png",
            "confusion matrix (row-normalized)",
            "The same matrix normalized per true class: each row sums to 1 (the fraction of that class "
            "predicted as each column; the diagonal is the recall).",
        ),
    ]
    d: dict[str, Any] = {
        "findings": findings.eval_findings(m),
        "m": m,
        "figures": figs,
        "raw": ["eval/metrics.json", "eval/predictions.csv", "eval/confusion.csv"],
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
        d["top_losses_figure"] = _fig(
            "top_losses.png",
            "top losses",
            f"The {len(tl)} {m['split']} images with the highest cross-entropy loss "
            "-log p(true class): dataset index, true class, predicted class with its "
            "softmax probability, and the probability given to the true class.",
        )
    cal = m.get("calibration")
    if cal:
        plots.reliability_diagram(cal["bins"], cal["ece"], out / "reliability.png")
        d["reliability_figure"] = _fig(
            "reliability.png",
            "reliability diagram",
            f"Reliability diagram: {m['n']:,} {m['split']} images binned by confidence "
            f"(the largest softmax probability) into {len(cal['bins'])} equal-width bins; "
            "bars show the accuracy in each bin, dots the bin's mean confidence; below, "
            f"images per bin. ECE = Σ (bin share) × |accuracy − confidence| = "
            f"{100 * cal['ece']:.2f}%.",
        )
    pairs = _confused_examples(r, out, m)
    if pairs:
        d["confused"] = pairs
    return d


def _confused_examples(r: _Run, out: Path, m: dict[str, Any]) -> dict[str, Any] | None:
    """Figures of the most-confused pairs (images, and each method's maps for A and for B)."""
    from ..explain.core import Explanation
    from .fig_explain import confused_pairs_figure
    from . import plots

    p = r.path / "explain" / "confused" / "confused.json"
    if not p.exists():
        return None
    meta = read_json(p)
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
        _fig(
            "confused_examples.png",
            "examples of the most-confused pairs",
            f"Up to {meta['per_pair']} test images of each of the {len(meta['pairs'])} most-confused pairs "
            "(true → predicted), with the predicted class's softmax probability.",
        )
    ]
    if "probs" in meta:
        probs = torch.tensor(meta["probs"])
    else:  # only the two probabilities the figure shows
        probs = torch.zeros(len(meta["indices"]), len(classes))
        for i, (a, b, pa, pb) in enumerate(
            zip(meta["labels"], meta["predicted"], meta["p_true"], meta["p_pred"])
        ):
            probs[i, a], probs[i, b] = pa, pb
    targets_a, targets_b = torch.tensor(meta["labels"]), torch.tensor(meta["predicted"])
    mass: dict[str, list[float]] = {}
    for method, info in meta["methods"].items():
        ma = np.load(r.path / "explain" / "confused" / info["true"], allow_pickle=False)
        mb = np.load(r.path / "explain" / "confused" / info["pred"], allow_pickle=False)
        ea = Explanation(torch.from_numpy(ma), method, targets_a, probs, info.get("layer"), info["signed"])
        eb = Explanation(torch.from_numpy(mb), method, targets_b, probs, info.get("layer"), info["signed"])
        name = f"confused_{method.replace(':', '_')}.png"
        confused_pairs_figure(imgs, ea, eb, classes, out / name, row_titles=titles)
        a, b = np.abs(ma).sum((1, 2)), np.abs(mb).sum((1, 2))
        mass[method] = [float(y / (x + y)) for x, y in zip(a, b) if x + y > 0]
        layer = f" at layer {info['layer']}" if info.get("layer") else ""
        figs.append(
            _fig(
                name,
                f"{method} for the true and the predicted class",
                f"{method}{layer}: each misclassified image, its map for the true class A and its map for "
                "the predicted class B, both scaled together per image (so their strengths compare); "
                "titles give each class's softmax probability.",
            )
        )
    return {
        "findings": findings.confused_findings(meta, mass),
        "figures": figs,
        "pairs": meta["pairs"],
        "raw": ["explain/confused/confused.json"],
    }


def _looks(r: _Run, out: Path) -> dict[str, Any] | None:
    from ..explain.core import Explanation
    from .fig_explain import explanation_grid
    from . import plots

    ipath = r.path / "explain" / "explanations.json"
    lpath = r.path / "explain" / "lime" / "lime.json"
    if not ipath.exists() and not lpath.exists():
        return None
    d: dict[str, Any] = {"findings": [], "figures": [], "raw": []}
    if ipath.exists():
        index = read_json(ipath)
        classes = index["classes"]
        targets = torch.as_tensor(index["targets"])
        probs = torch.as_tensor(index["probs"])
        exps, raw_maps = {}, {}
        for m, info in index["methods"].items():
            maps = np.load(r.path / "explain" / info["file"], allow_pickle=False)
            raw_maps[m] = maps
            exps[m] = Explanation(
                maps=torch.from_numpy(maps),
                method=m,
                targets=targets,
                probs=probs,
                layer=info["layer"],
                signed=info["signed"],
            )
        images = r.images(index["indices"])
        labels = index.get("labels") or [None] * len(index["indices"])
        titles = [
            f"#{i}" + (f" true: {classes[lb]}" if lb is not None else "")
            for i, lb in zip(index["indices"], labels)
        ]
        explanation_grid(images, exps, titles, out / "explanations.png", classes=classes)
        layers = "; ".join(
            f"{m} at layer {v['layer']}" for m, v in index["methods"].items() if v.get("layer")
        )
        d["figures"].append(
            _fig(
                "explanations.png",
                "explanations per class, every method side by side",
                f"{len(index['indices'])} correctly classified test images (rows; per class in order, the "
                f"first of each class in the split), each explained for its predicted class by {len(exps)} "
                f"methods (columns: {', '.join(exps)}). Titles give the explained class and its softmax "
                "probability. "
                + (f"Layers: {layers}. " if layers else "")
                + "Unsigned maps: jet colormap, divided per image by the 99.5th percentile of the map and "
                "clipped; signed maps: red = evidence for the class, blue = against, divided by the 99.5th "
                "percentile of |value| and clipped to ±1.",
            )
        )
        # where the mass falls, per class and method
        lab = [lb if lb is not None else t for lb, t in zip(labels, index["targets"])]
        table_rows, by_method = [], {}
        for m, maps in raw_maps.items():
            shares = findings.region_mass(maps)
            by_method[m] = shares
            for i, (k, s) in enumerate(zip(lab, shares)):
                table_rows.append([m, index["indices"][i], classes[k],
                                   *[f"{s[x]:.4f}" for x in findings.REGIONS]])
        write_csv(out / "attribution_regions.csv", ["method", "index", "class", *findings.REGIONS],
                  table_rows)
        write_json(
            out / "attribution_regions.json",
            {
                "regions": findings.region_bounds(*next(iter(raw_maps.values())).shape[1:]),
                "methods": {
                    m: [{"index": i, "class": classes[k], **s} for i, k, s in zip(index["indices"], lab, v)]
                    for m, v in by_method.items()
                },
            },
        )
        primary = "gradcam" if "gradcam" in by_method else next(iter(by_method))
        d["findings"] += findings.looks_findings(
            primary, classes, list(zip(lab, by_method[primary])), "report/attribution_regions.csv"
        )
        # one row per class (mean over its images) for the primary method
        per_class = []
        for k in sorted(set(lab)):
            rows = [s for kk, s in zip(lab, by_method[primary]) if kk == k]
            ok = [s for s in rows if not np.isnan(s["top"])]  # an all-zero map has no shares
            per_class.append(
                {x: float(np.mean([s[x] for s in ok])) if ok else float("nan") for x in findings.REGIONS}
            )
        plots.region_mass_figure(
            per_class, [classes[k] for k in sorted(set(lab))], out / "attribution_regions.png", primary
        )
        area = by_method[primary][0]["centre_box_area"]
        d["figures"].append(
            _fig(
                "attribution_regions.png",
                "share of attribution per region",
                f"Where {primary}'s attribution falls, per class: the share of the map's absolute value |m| "
                "in each row "
                "third, column third and the central box (the middle half of height and width, "
                f"{100 * area:.0f}% of the "
                "area; a uniform map puts that share there). Every method's numbers: "
                "attribution_regions.csv.",
            )
        )
        d["raw"] += ["explain/explanations.json", "explain/*.npy", "report/attribution_regions.csv"]
    if lpath.exists():
        lime = read_json(lpath)
        seg = torch.from_numpy(np.load(r.path / "explain" / "lime" / "segments.npy", allow_pickle=False))
        classes = lime["classes"]
        titles = [
            f"#{i} {classes[t]} ({100 * p:.0f}%)"
            for i, t, p in zip(lime["indices"], lime["targets"], lime["probs"])
        ]
        from .fig_lime import plot_superpixel_evidence

        plot_superpixel_evidence(
            r.images(lime["indices"]),
            seg,
            [torch.tensor(w) for w in lime["weights"]],
            out / "lime.png",
            k=5,
            titles=titles,
            method="LIME",
        )
        d["lime_figure"] = _fig(
            "lime.png",
            "LIME with superpixel boundaries",
            f"LIME per class ({len(lime['indices'])} correctly classified test images, explained for the "
            "predicted "
            "class). Columns: the image with its superpixel boundaries (yellow; "
            f"{int(np.median(lime['n_segments']))} "
            "superpixels, median); the 5 superpixels with the largest positive weight (evidence for the "
            "class, "
            "green tint, the rest dimmed); the 5 with the most negative weight (against, red tint); every "
            "superpixel coloured by its weight (red = for, blue = against, scale on the colour bar). "
            "Weights: a "
            f"ridge regression (α = 1, kernel width 0.25) of the class probability on {lime['n_samples']:,} "
            "random "
            f"superpixel on/off samples (seed {lime['seed']}; off = the superpixel's mean colour).",
        )
        d["lime_findings"] = findings.lime_findings(lime)
        d["raw"] += ["explain/lime/lime.json", "explain/lime/lime.npy", "explain/lime/segments.npy"]
    return d


def _trust(r: _Run, out: Path) -> dict[str, Any] | None:
    p = r.path / "trust" / "scores.json"
    if not p.exists():
        return None
    s = read_json(p)
    tests = list(s["tests"])
    cols = [
        ("insertion − deletion AUC", "insertion_minus_deletion", "higher is better"),
        ("deletion AUC", "deletion_auc", "lower is better"),
        ("insertion AUC", "insertion_auc", "higher is better"),
        ("rank corr. of |map| after randomization", "randomization.spearman_abs", "lower is better"),
        ("rank corr. of |map| with another class", "random_logit.spearman_abs", "lower is better"),
        ("pointing game", "pointing_game", "higher is better"),
        ("relevance mass", "relevance_mass", "higher is better"),
    ]
    cols = [c for c in cols if any(c[1] in v["scores"] for v in s["methods"].values())]
    rows = []
    for m, v in s["methods"].items():
        rows.append(
            {
                "method": m,
                "control": v["control"],
                "reading": v["reading"],
                "vals": [
                    (v["scores"][k]["mean"], v["scores"][k]["sem"]) if k in v["scores"] else None
                    for _, k, _ in cols
                ],
                "passed": [
                    "control"
                    if v["control"]
                    else ("—" if v["passed"].get(t) is None else "pass" if v["passed"][t] else "FAIL")
                    for t in tests
                ],
            }
        )
    figs = []
    if (r.path / "trust" / "randomization.png").exists():
        _copy(r.path / "trust" / "randomization.png", out / "trust_randomization.png")
        figs.append(
            _fig(
                "trust_randomization.png",
                "cascading randomization",
                f"Cascading model-parameter randomization (Adebayo et al. 2018) on {s['n_images']} test "
                "images: layers are re-initialized from the logits down (x axis) and each method's maps are "
                "compared with its original maps by the Spearman rank correlation of |map| (y axis). A map "
                "that "
                "depends on the learned weights falls towards 0; the edge control stays at 1.",
            )
        )
    o = s["options"]
    return {
        "findings": findings.trust_findings(s),
        "columns": cols,
        "tests": tests,
        "test_info": s["tests"],
        "rows": rows,
        "figures": figs,
        "n_images": s["n_images"],
        "options": o,
        "seconds": s["seconds"],
        "raw": ["trust/scores.json", "trust/table.csv"],
    }


def _filters(r: _Run, out: Path) -> dict[str, Any] | None:
    p = r.path / "featureviz" / "featureviz.json"
    if not p.exists():
        return None
    idx = read_json(p)
    fv = r.path / "featureviz"
    figs = []
    for f in idx["filters"]:
        name = f"fv_{f['figure']}"
        _copy(fv / f["figure"], out / name)
        k = len(f["examples"]["indices"][0]) if f["examples"]["indices"] else 0
        figs.append(
            _fig(
                name,
                f"filters of {f['layer']}",
                f"Activation maximization for {len(f['channels'])} filters of {f['layer']} (read before the "
                f"ReLU): each synthetic image was optimized for {f['steps']} Adam steps (learning rate "
                f"{f['lr']}, seed {f['seed']}, Fourier parameterization with random jitter, scale and "
                f"rotation) to maximize the filter's mean activation; beside it the {k} "
                f"{f['examples']['split']} image patches (receptive fields) that activate it most.",
            )
        )
    for fm in idx["featuremaps"]:
        name = f"fv_{fm['figure']}"
        _copy(fv / fm["figure"], out / name)
        k = fm["shape"][0]
        shown = (
            f"Every feature map of {fm['layer']} ({k} filters"
            if k <= 64
            else f"The first 64 of the {k} feature maps of {fm['layer']} ("
        )
        figs.append(
            _fig(
                name,
                f"feature maps of {fm['layer']}",
                f"{shown}, {fm['shape'][1]}×{fm['shape'][2]} pixels: the output of module {fm['layer']}, "
                "before "
                f"any ReLU that follows it) for test image #{fm['image']} (class {fm['class']}), shown "
                "beside the image; each map "
                "on its own colour scale (viridis, dark = low). All maps: "
                f"featureviz/{fm['figure'].rsplit('.', 1)[0]}.npy.",
            )
        )
    d = idx.get("dream")
    if d:
        name = f"fv_{d['files'][0]}"
        _copy(fv / d["files"][0], out / name)
        for extra in d["files"][1:]:
            _copy(fv / extra, out / f"fv_{extra}")
        what = "the whole layer" if d["channel"] is None else f"filter {d['channel']}"
        figs.append(
            _fig(
                name,
                "Deep Dream progression",
                f"Deep Dream on {d['source']}: gradient ascent on the mean activation of {what} of "
                f"{d['layer']}, {d['octaves']} octaves (scale ratio {d['octave_scale']}) × {d['steps']} "
                "steps, "
                f"step size {d['lr']} grey levels, snapshots every {d['every']} steps "
                f"(steps {', '.join(map(str, d['snapshot_steps']))}). Animated: fv_{d['files'][1]}.",
            )
        )
    return {
        "findings": findings.filters_findings(idx),
        "figures": figs,
        "raw": ["featureviz/featureviz.json", "featureviz/*.json", "featureviz/*.npy"],
    }


def _timings(r: _Run) -> dict[str, Any] | None:
    p = r.path / "timings.json"
    if not p.exists():
        return None
    t = read_json(p)
    rows = []
    for stage, v in t.items():
        if isinstance(v, dict):
            rows.append({"stage": stage, "wall": v.get("wall_s"), "cpu": v.get("cpu_s")})
        else:
            rows.append({"stage": stage, "wall": float(v), "cpu": None})
    total = sum(x["wall"] or 0 for x in rows)
    stages = read_json(r.path / "stages.json") if (r.path / "stages.json").exists() else None
    return {
        "rows": rows,
        "total": total,
        "sizes": stages["sizes"] if stages else None,
        "findings": [
            findings._f(
                f"All stages together took {total:.1f} s of wall-clock time; the longest was "
                f"{max(rows, key=lambda x: x['wall'] or 0)['stage']}.",
                "timings.json",
            )
        ]
        if rows
        else [],
        "raw": ["timings.json", "stages.json"],
    }
