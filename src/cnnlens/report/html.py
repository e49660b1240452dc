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
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jinja2 import Environment, PackageLoader, select_autoescape

from .. import __version__
from ..io import write_text
from ..rundir import (AttributionRegions, CompareRecord, ConfigFile, ConfusedMaps, DataCounts, DataSamples,
                      DeviceRecord,
                      EvalMetrics, ExplainMaps, FeaturevizIndex, Findings, History, LimeMaps, ModelMeta,
                      ModelSummaryFile, StagesRecord, Timings, TrustScores)
from . import findings as F
from . import sources

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


class _Run:
    """The run directory, with the model and dataset loaded only when a figure needs images."""

    def __init__(self, path: Path, trust_code: bool = False) -> None:
        self.path = path
        self.trust_code = trust_code
        self.missing: list[dict[str, str]] = []

    def load(self, record: Any, what: str) -> Any:
        """The record, or ``None`` (noted for the page: what is left out, the file, the command)."""
        if record.exists(self.path):
            return record.load(self.path)
        self.missing.append({"what": what, "file": str(record.path(self.path).relative_to(self.path)),
                             "command": record.maker(self.path)})
        return None

    @cached_property
    def loaded(self):  # noqa: ANN201 (cnnlens.train.Run)
        from ..train import load_run

        return load_run(self.path, trust_code=self.trust_code)

    @property
    def dataset(self):  # noqa: ANN201
        return self.loaded.dataset

    def images(self, indices: list[int]) -> torch.Tensor:
        return self.dataset.images[torch.as_tensor(indices, dtype=torch.long)]


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


# ---- sections -------------------------------------------------------------------------------------


def _fig(file: str, alt: str, caption: str) -> dict[str, str]:
    return {"file": file, "alt": alt, "caption": caption}


def _transform(info: dict[str, Any]) -> str:
    """What a layer method did with its layer, for a caption: the token/channels-last transform and
    a Score-CAM channel cap (from explanations.json / confused.json)."""
    parts = []
    t = info.get("layer_transform")
    if t and t != "none":
        parts.append(t)
    ex = info.get("extras") or {}
    if isinstance(ex.get("channels_scored"), int) and ex.get("channels_scored") != ex.get("channels"):
        parts.append(f"Score-CAM scored the {ex['channels_scored']} most varying of {ex['channels']} "
                     "channels")
    return f" ({'; '.join(parts)})" if parts else ""


def _data(r: _Run, out: Path) -> dict[str, Any] | None:
    from . import plots
    from .fig_data import sample_grid

    rec = r.load(DataCounts, "the data section")
    if rec is None:
        return None
    info = rec.to_dict()
    s = DataSamples.load_or_none(r.path)
    samples = s.to_dict() if s else None
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
        "findings": F.data_findings(info),
        "figures": figs,
        "info": info,
        "table": table,
        "raw": ["data/counts.json", "data/counts.csv", "data/samples.json"],
    }


def _model(r: _Run) -> dict[str, Any] | None:
    rec = r.load(ModelSummaryFile, "the model's layer table")
    if rec is None:
        return None
    s = rec.to_dict()
    rows = [
        {**row, "shape": "—" if row["output_shape"] is None else "×".join(map(str, row["output_shape"]))}
        for row in s["rows"]
    ]
    return {
        "findings": F.model_findings(s),
        "summary": s,
        "rows": rows,
        "raw": ["model/summary.json", "model/summary.csv", "model.json"],
    }


def _training(r: _Run, out: Path) -> dict[str, Any] | None:
    from . import plots

    history = History.load(r.path).rows
    if not history:
        return None
    plots.training_curves(history, out / "training_curves.png")
    d: dict[str, Any] = {
        "findings": F.training_findings(history),
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
    if ConfigFile.exists(r.path):
        cfg = ConfigFile.load(r.path)
        d["config_yaml"] = cfg.text
        d["config"] = cfg.data
    return d


def _copy(src: Path, dst: Path) -> None:
    """Copy a figure beside the page (atomically, like every file cnnlens writes)."""
    from ..io import write_bytes

    write_bytes(dst, Path(src).read_bytes())


def _compare(r: _Run, out: Path) -> dict[str, Any] | None:
    rec = CompareRecord.load_or_none(r.path / "compare")
    if rec is None:
        return None
    for f in ("curves.png", "per_class.png", "confusions.png"):
        if (r.path / "compare" / f).exists():
            _copy(r.path / "compare" / f, out / f"compare_{f}")
    c = rec.to_dict()
    src = "compare/compare.json"
    return {
        "findings": [F._f(s, src + ": runs") for s in c.get("findings", [])],
        "runs": c["runs"],
        "raw": [src],
    }


def _failures(r: _Run, out: Path, mpath: Path | None = None) -> dict[str, Any] | None:
    from . import plots

    if mpath is None:
        r.load(EvalMetrics, "the evaluation")  # names the missing file (and its command) on the page
        return None
    rec = EvalMetrics.load(r.path, folder=mpath.parent.relative_to(r.path).as_posix())
    m = rec.to_dict()
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
        "findings": F.eval_findings(m, source=mpath.relative_to(r.path).as_posix()),
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
        _fig(
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
        layer = f" at layer {info['layer']}{_transform(info)}" if info.get("layer") else ""
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
        "findings": F.confused_findings(meta, rec.pred_share or {}),
        "figures": figs,
        "pairs": meta["pairs"],
        "raw": ["explain/confused/confused.json"],
    }


def _looks(r: _Run, out: Path) -> dict[str, Any] | None:
    from .fig_explain import explanation_grid
    from . import plots

    index = r.load(ExplainMaps, "the per-class explanations")
    lime = r.load(LimeMaps, "LIME")
    if index is None and lime is None:
        return None
    d: dict[str, Any] = {"findings": [], "figures": [], "raw": []}
    if index is not None:
        classes = index.classes or [str(k) for k in range(len(index.probs[0]))]
        exps = index.explanations()
        images = r.images(index.indices)
        labels = index.labels or [None] * len(index.indices)
        titles = [
            f"#{i}" + (f" true: {classes[lb]}" if lb is not None else "")
            for i, lb in zip(index.indices, labels)
        ]
        explanation_grid(images, exps, titles, out / "explanations.png", classes=classes)
        layers = "; ".join(
            f"{m} at layer {v['layer']}{_transform(v)}" for m, v in index.methods.items() if v.get("layer")
        )
        rollouts = "; ".join(
            f"{m} over {ex['blocks']} attention blocks (head fusion {ex.get('head_fusion')}, discard ratio "
            f"{ex.get('discard_ratio')}; class-agnostic)"
            for m, v in index.methods.items()
            if "blocks" in (ex := v.get("extras") or {}) and "head_fusion" in ex
        )
        layers = "; ".join(s for s in (layers, rollouts) if s)
        d["figures"].append(
            _fig(
                "explanations.png",
                "explanations per class, every method side by side",
                F.explained_images(index.to_dict())
                + f" by {len(exps)} methods (columns: {', '.join(exps)}). Titles give the explained class and "
                "its softmax probability. "
                + (f"Layers: {layers}. " if layers else "")
                + "Unsigned maps: jet colormap, divided per image by the 99.5th percentile of the map and "
                "clipped; signed maps: red = evidence for the class, blue = against, divided by the 99.5th "
                "percentile of |value| and clipped to ±1."
                + "".join(f" Note: {n}" for n in index.notes or []),
            )
        )
        d["raw"] += ["explain/explanations.json", "explain/*.npy"]
        regions = r.load(AttributionRegions, "where the attribution falls (regions)")
        if regions is not None:
            # the page links the table beside itself, under the name the findings cite
            for suffix in (".csv", ".json"):
                _copy(regions.path(r.path).with_suffix(suffix), out / f"attribution_regions{suffix}")
            primary = regions.primary
            d["findings"] += F.looks_findings_per_class(
                primary, regions.per_class, "report/attribution_regions.csv"
            )
            plots.region_mass_figure(
                regions.per_class, [c["class"] for c in regions.per_class], out / "attribution_regions.png",
                primary,
            )
            d["figures"].append(
                _fig(
                    "attribution_regions.png",
                    "share of attribution per region",
                    f"Where {primary}'s attribution falls, per class: the share of the map's absolute value "
                    "|m| in each row "
                    "third, column third and the central box (the middle half of height and width, "
                    f"{100 * regions.centre_box_area:.0f}% of the "
                    "area; a uniform map puts that share there). Every method's numbers: "
                    "attribution_regions.csv.",
                )
            )
            d["raw"] += ["explain/attribution_regions.json", "report/attribution_regions.csv"]
    if lime is not None:
        classes = lime.classes
        titles = [
            f"#{i} {classes[t]} ({100 * p:.0f}%)"
            for i, t, p in zip(lime.indices, lime.targets, lime.probs)
        ]
        from .fig_lime import plot_superpixel_evidence

        plot_superpixel_evidence(
            r.images(lime.indices),
            torch.from_numpy(lime.segments),
            [torch.tensor(w) for w in lime.weights],
            out / "lime.png",
            k=5,
            titles=titles,
            method="LIME",
        )
        d["lime_figure"] = _fig("lime.png", "LIME with superpixel boundaries", _lime_caption(lime))
        d["lime_findings"] = F.lime_findings(lime.to_dict())
        d["raw"] += ["explain/lime/lime.json", "explain/lime/lime.npy", "explain/lime/segments.npy"]
    return d


def _cell(word: str) -> str:
    return "—" if word == "-" else word


def _lime_caption(lime: LimeMaps) -> str:
    """The LIME figure's caption; every setting named comes from ``lime.json``."""
    st = lime.settings
    seg = lime.segmentation or st.get("segmentation")
    seg_text = f"{seg} superpixels" if seg else "superpixels"
    fit = []
    if "alpha" in st:
        fit.append(f"α = {st['alpha']:g}")
    if "kernel_width" in st:
        fit.append(f"kernel width {st['kernel_width']:g}")
    fill = st.get("baseline")
    off = {"mean": "the superpixel's mean colour", "zero": "the dataset mean colour",
           "blur": "a blurred copy of the image"}.get(fill, f"{fill}" if fill is not None else "")
    return (
        f"LIME per class ({len(lime.indices)} correctly classified {lime.split or 'test'} images, "
        "explained for the "
        "predicted "
        "class). Columns: the image with its superpixel boundaries (yellow; "
        f"{int(np.median(lime.n_segments))} "
        f"{seg_text}, median); the 5 superpixels with the largest positive weight (evidence for the "
        "class, "
        "green tint, the rest dimmed); the 5 with the most negative weight (against, red tint); every "
        "superpixel coloured by its weight (red = for, blue = against, scale on the colour bar). "
        "Weights: a "
        f"ridge regression{' (' + ', '.join(fit) + ')' if fit else ''} of the class "
        f"{'probability' if lime.output == 'prob' else lime.output} on {lime.n_samples:,} "
        "random "
        f"superpixel on/off samples (seed {lime.seed}{'; off = ' + off if off else ''})."
    )


def _trust(r: _Run, out: Path) -> dict[str, Any] | None:
    rec = r.load(TrustScores, "the trust scores")
    if rec is None:
        return None
    s = rec.to_dict()
    from ..metrics.results import declarations, verdict_word

    decl = declarations(s)
    tests = list(s["tests"])
    cols = [
        (c["title"], c["key"], "higher is better" if c["higher_is_better"] else "lower is better")
        for t in tests
        for c in decl[t]["columns"]
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
                    _cell(verdict_word(m, v["passed"].get(t), t in v["passed"])) for t in tests
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
                f"Cascading model-parameter randomization (Adebayo et al. 2018) on {s['n_images']} "
                f"{s.get('options', {}).get('split', 'test')} "
                "images: layers are re-initialized from the logits down (x axis) and each method's maps are "
                "compared with its original maps by the Spearman rank correlation of |map| (y axis). A map "
                "that "
                "depends on the learned weights falls towards 0; the edge control stays at 1.",
            )
        )
    o = s["options"]
    return {
        "findings": F.trust_findings(s),
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
    fv = r.path / "featureviz"
    idx = sources.featureviz_index(fv)
    if idx is None:
        r.load(FeaturevizIndex, "the feature visualization")  # names the missing file on the page
        return None
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
            f"Every feature map of {fm['layer']} ({k} filters, "
            if k <= 64
            else f"The first 64 of the {k} feature maps of {fm['layer']} ("
        )
        figs.append(
            _fig(
                name,
                f"feature maps of {fm['layer']}",
                f"{shown}{fm['shape'][1]}×{fm['shape'][2]} pixels: the output of module {fm['layer']}, "
                "before "
                f"any ReLU that follows it) for {F.image_of(fm)} (class {fm['class']}), shown "
                "beside the image; each map "
                "on its own colour scale (viridis, dark = low). All maps: "
                f"featureviz/{fm['figure'].rsplit('.', 1)[0]}.npy.",
            )
        )
    for d in idx["dreams"]:
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
        "findings": F.filters_findings(idx),
        "figures": figs,
        "raw": ["featureviz/featureviz.json", "featureviz/*.json", "featureviz/*.npy"],
    }


def _timings(r: _Run) -> dict[str, Any] | None:
    t = Timings.load(r.path).stages
    if not t:
        return None
    rows = [{"stage": stage, "wall": v.get("wall_s"), "cpu": v.get("cpu_s")} for stage, v in t.items()]
    total = sum(x["wall"] or 0 for x in rows)
    stages = StagesRecord.load_or_none(r.path)
    dev = DeviceRecord.load_or_none(r.path)
    device = dev.name if dev is not None else None
    on = ""
    if dev is not None:
        versions = f"torch {dev.torch}" + (f", CUDA {dev.cuda}" if dev.cuda else "")
        on = f" The analysis stages ran on {device} ({versions})."
    return {
        "device": device,
        "rows": rows,
        "total": total,
        "sizes": stages.sizes if stages else None,
        "findings": [
            F._f(
                f"All stages together took {total:.1f} s of wall-clock time; the longest was "
                f"{max(rows, key=lambda x: x['wall'] or 0)['stage']}.{on}",
                "timings.json" + (", device.json" if device else ""),
            )
        ]
        if rows
        else [],
        "raw": ["timings.json", "stages.json"] + (["device.json"] if device else []),
    }
