"""Findings: the sentences that open each report section, generated from measured values.

Every finding is ``{"text": ..., "source": ...}``: the sentence, and the file (inside the run
directory) and field that hold the number behind it, so a reader can trace each claim. Nothing is
written here that is not a formatted number from those files.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ..explain.regions import REGIONS, region_bounds, region_mass  # noqa: F401  (computed by the explain stage)

Finding = dict[str, str]


def _f(text: str, source: str) -> Finding:
    return {"text": text, "source": source}


def _json_of(figure: str) -> str:
    return figure.rsplit(".", 1)[0] + ".json"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _pct(v: float, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f}%"


# ---- where attribution mass falls -------------------------------------------------------------------


_ROW_NAMES = {"top": "top third", "middle": "middle third", "bottom": "bottom third"}
_COL_NAMES = {"left": "left third", "centre_col": "centre third", "right": "right third"}


def looks_findings(
    method: str, classes: list[str], per_class: list[tuple[int, dict[str, float]]], source: str
) -> list[Finding]:
    """One sentence per class: the row third and column third holding most of ``method``'s
    |attribution|, and the share inside the central box against its share of the area.

    ``per_class``: ``(class index, region shares)`` for each explained image (averaged per class here;
    the report reads the averages the explain stage stored, :func:`looks_findings_per_class`).
    """
    by_class: dict[int, list[dict[str, float]]] = {}
    for k, row in per_class:
        by_class.setdefault(k, []).append(row)
    means = []
    for k in sorted(by_class):
        rows = [r for r in by_class[k] if not math.isnan(r["top"])]
        m = {key: float(np.mean([r[key] for r in rows])) if rows else math.nan
             for key in (*REGIONS, "centre_box_area")}
        means.append({"class": classes[k], "n": len(rows), **m})
    return looks_findings_per_class(method, means, source)


def looks_findings_per_class(method: str, per_class: list[dict[str, Any]], source: str) -> list[Finding]:
    """:func:`looks_findings` from per-class means: one dict per class with ``class``, ``n`` (images
    with a non-zero map) and the mean share of every region (and ``centre_box_area``)."""
    out = []
    for m in per_class:
        name = m["class"]
        if not m["n"]:
            out.append(_f(f"{name}: the {method} map is zero everywhere (no attribution to locate).", source))
            continue
        rbest = max(_ROW_NAMES, key=lambda x: m[x])
        cbest = max(_COL_NAMES, key=lambda x: m[x])
        where = "inside" if m["centre_box"] > m["centre_box_area"] else "outside"
        n = f" ({m['n']} images)" if m["n"] > 1 else ""
        out.append(
            _f(
                f"{name}{n}: {_pct(m[rbest], 0)} of the {method} attribution lies in the "
                f"{_ROW_NAMES[rbest]} "
                f"and {_pct(m[cbest], 0)} in the {_COL_NAMES[cbest]}; {_pct(m['centre_box'], 0)} falls in "
                "the central "
                f"box, which covers {_pct(m['centre_box_area'], 0)} of the image (mass leans {where} the "
                "centre).",
                source,
            )
        )
    return out


# ---- per section --------------------------------------------------------------------------------------


def data_findings(info: dict[str, Any]) -> list[Finding]:
    src = "data/counts.json"
    sizes = ", ".join(f"{s} {n:,}" for s, n in info["size"].items())
    c, h, w = info["shape"]
    out = [
        _f(
            f"{sum(info['size'].values()):,} images of {c}×{h}×{w} pixels in {len(info['classes'])} classes "
            f"(images per split: {sizes}).",
            src + ": size, shape",
        )
    ]
    split = "train" if "train" in info["counts"] else next(iter(info["counts"]))
    cnt = info["counts"][split]
    if cnt and max(cnt) > 0:
        hi, lo = int(np.argmax(cnt)), int(np.argmin(cnt))
        ratio = f"{cnt[hi] / cnt[lo]:.2f}×" if cnt[lo] else "unbounded (a class has none)"
        out.append(
            _f(
                f"In the {split} split the largest class is {info['classes'][hi]} ({cnt[hi]:,} images) and "
                "the "
                f"smallest {info['classes'][lo]} ({cnt[lo]:,} images): an imbalance of {ratio}.",
                src + f": counts.{split}",
            )
        )
    if info.get("skipped"):
        out.append(
            _f(f"{info['skipped']:,} rows or files could not be read and were skipped.", src + ": skipped")
        )
    return out


def model_findings(summary: dict[str, Any]) -> list[Finding]:
    src = "model/summary.json"
    total = summary["total"]
    out = [
        _f(
            f"{total:,} parameters ({summary['trainable']:,} trainable, {summary['non_trainable']:,} "
            "frozen); "
            f"{summary['macs']:,} multiply-accumulates per image.",
            src + ": total, trainable, macs",
        )
    ]
    rows = [r for r in summary["rows"] if r["params"] > 0]
    if rows and total:
        big = max(rows, key=lambda r: r["params"])
        out.append(
            _f(
                f"The largest layer is {big['name']} ({big['type']}) with {big['params']:,} parameters, "
                f"{_pct(big['params'] / total)} of the total.",
                src + ": rows",
            )
        )
        conv = sum(r["params"] for r in rows if r["type"].startswith("Conv"))
        lin = sum(r["params"] for r in rows if r["type"] == "Linear")
        if conv and lin:
            out.append(
                _f(
                    f"Convolutions hold {_pct(conv / total)} of the parameters and fully connected layers "
                    f"{_pct(lin / total)}.",
                    src + ": rows",
                )
            )
    return out


def training_findings(history: list[dict[str, float]]) -> list[Finding]:
    src = "history.csv"
    if not history:
        return []
    valid = [r for r in history if not math.isnan(r["val_acc"])]
    secs = sum(r["seconds"] for r in history)
    out = [
        _f(
            f"Trained {len(history)} epochs in {secs:.1f} s ({secs / len(history):.1f} s per epoch).",
            src + ": seconds",
        )
    ]
    if valid:
        best = max(valid, key=lambda r: (r["val_acc"], -r["epoch"]))
        out.append(
            _f(
                f"Best validation accuracy {_pct(best['val_acc'], 2)} at epoch {best['epoch']} (these "
                "weights "
                f"are the saved model); training accuracy then {_pct(best['train_acc'], 2)}.",
                src + ": val_acc, train_acc",
            )
        )
        last = history[-1]
        gap = last["train_acc"] - last["val_acc"]
        if not math.isnan(gap):
            kind = "above" if gap >= 0 else "below"
            out.append(
                _f(
                    f"At the last epoch training accuracy is {abs(100 * gap):.2f} percentage points {kind} "
                    f"validation accuracy (train loss {last['train_loss']:.4f}, val loss "
                    f"{last['val_loss']:.4f}).",
                    src + f": epoch {last['epoch']}",
                )
            )
    return out


def eval_findings(m: dict[str, Any]) -> list[Finding]:
    src = "eval/metrics.json"
    pc = sorted(m["per_class"], key=lambda r: (-r["recall"], r["class"]))
    out = [
        _f(
            f"Test accuracy is {_pct(m['accuracy'])} on {m['n']:,} {m['split']} images "
            f"(macro F1 {m['macro_f1']:.3f}).",
            src + ": accuracy, macro_f1",
        )
    ]
    if len(pc) >= 2:
        best_r = pc[0]["recall"]
        bests = [r["class"] for r in pc if r["recall"] == best_r]
        out.append(
            _f(
                f"Best recognized: {', '.join(bests[:5])}{' and others' if len(bests) > 5 else ''} "
                f"(recall {_pct(best_r)}); worst: {pc[-1]['class']} (recall {_pct(pc[-1]['recall'])}, "
                f"precision {_pct(pc[-1]['precision'])}).",
                src + ": per_class",
            )
        )
    mc = m.get("most_confused") or []
    if mc:
        parts = [
            f"{p['true']} taken for {p['pred']} ({_n(p['count'], 'image')}, {_pct(p['rate'])} of {p['true']})"
            for p in mc[:3]
        ]
        out.append(_f("Most confused: " + "; ".join(parts) + ".", src + ": most_confused"))
    else:
        out.append(_f("No test image was misclassified.", src + ": confusion"))
    cal = m.get("calibration")
    if cal:
        bins = [b for b in cal["bins"] if b["count"]]
        n = sum(b["count"] for b in bins) or 1
        conf = sum(b["confidence"] * b["count"] for b in bins) / n
        acc = sum(b["accuracy"] * b["count"] for b in bins) / n
        kind = "over-confident" if conf > acc else "under-confident"
        out.append(
            _f(
                f"Expected calibration error {_pct(cal['ece'], 2)} over {len(cal['bins'])} equal-width bins: "
                f"mean confidence {_pct(conf)} against accuracy {_pct(acc)} ({kind} by "
                f"{abs(100 * (conf - acc)):.2f} percentage points).",
                src + ": calibration",
            )
        )
    tl = m.get("top_losses") or []
    if tl:
        t = tl[0]
        out.append(
            _f(
                f"The highest loss ({t['loss']:.2f} nats) is image #{t['index']}: a {t['true']} given "
                f"{_pct(t['p_true'])} probability, predicted {t['pred']} at {_pct(t['p_pred'])}.",
                src + ": top_losses",
            )
        )
    return out


def confused_findings(meta: dict[str, Any], mass: dict[str, list[float]]) -> list[Finding]:
    """``mass``: method -> per image, the share of |map for the predicted class| relative to both maps."""
    src = "explain/confused/confused.json"
    out = [
        _f(
            f"{len(meta['indices'])} misclassified test images from the {len(meta['pairs'])} most-confused "
            f"pairs, each explained for its true and for its predicted class.",
            src + ": pairs, indices",
        )
    ]
    for m, shares in mass.items():
        if shares:
            s = float(np.mean(shares))
            out.append(
                _f(
                    f"{m}: the map for the predicted class holds {_pct(s, 0)} of the combined |attribution| "
                    f"of both maps on average.",
                    f"explain/confused/{m}_*.npy",
                )
            )
    return out


def lime_findings(meta: dict[str, Any], k: int = 5) -> list[Finding]:
    src = "explain/lime/lime.json"
    out = []
    score = meta.get("score")
    if score:
        s = np.asarray(score, dtype=float)
        worst = int(np.argmin(s))
        out.append(
            _f(
                f"LIME's linear surrogate fits the model's probability with weighted R² from {s.min():.2f} "
                "to "
                f"{s.max():.2f} (median {np.median(s):.2f}) over {meta['n_samples']:,} perturbed images per "
                f"image; the weakest fit is for class {meta['classes'][meta['targets'][worst]]}.",
                src + ": score",
            )
        )
    shares = []
    for w in meta["weights"]:
        w = np.asarray(w, dtype=float)
        pos = np.sort(w[w > 0])[::-1]
        if pos.sum() > 0:
            shares.append(pos[:k].sum() / pos.sum())
    if shares:
        out.append(
            _f(
                f"The top {k} superpixels carry {_pct(float(np.mean(shares)), 0)} of the positive LIME "
                "weight "
                f"on average (of {int(np.median(meta['n_segments']))} superpixels per image, median).",
                src + ": weights, n_segments",
            )
        )
    return out


def trust_findings(scores: dict[str, Any]) -> list[Finding]:
    src = "trust/scores.json"
    tests = list(scores["tests"])
    methods = {m: v for m, v in scores["methods"].items() if not v["control"]}
    out = [
        _f(
            f"{len(methods)} methods scored on {scores['n_images']} test images against a random and an edge "
            f"control, with {len(tests)} tests ({', '.join(tests)}).",
            src + ": n_images, tests",
        )
    ]
    clean = [m for m, v in methods.items() if all(v["passed"].get(t) for t in tests)]
    if clean:
        out.append(_f(f"Passed every test: {', '.join(clean)}.", src + ": methods.*.passed"))
    for t in tests:
        failed = [m for m, v in methods.items() if v["passed"].get(t) is False]
        if failed:
            key = scores["tests"][t]["headline"][0]
            key = key if t in ("faithfulness", "localization") else f"{t}.{key}"
            vals = ", ".join(
                f"{m} {methods[m]['scores'][key]['mean']:.3f}" for m in failed if key in methods[m]["scores"]
            )
            out.append(
                _f(f"Failed {t}: {', '.join(failed)} ({key}: {vals}).", src + f": methods.*.scores.{key}")
            )
    for s in scores.get("skipped", []):
        out.append(_f(f"{s['method']} could not be scored: {s['reason']}", src + ": skipped"))
    return out


def filters_findings(index: dict[str, Any]) -> list[Finding]:
    out = []
    for f in index.get("filters", []):
        n = len(f["channels"])
        above = sum(a >= d for a, d in zip(f["activation"], f["dataset_max"]))
        out.append(
            _f(
                f"{f['layer']}: {above} of {n} synthetic images ({_pct(above / n, 0)}) drive their filter "
                f"at least as hard as its strongest {f['examples']['split']} image "
                f"(mean activation {np.mean(f['activation']):.3f} against {np.mean(f['dataset_max']):.3f}).",
                f"featureviz/{_json_of(f['figure'])}: activation, dataset_max",
            )
        )
    for fm in index.get("featuremaps", []):
        act = np.asarray(fm["mean_activation"], dtype=float)
        if act.size:
            out.append(
                _f(
                    f"{fm['layer']} on image #{fm['image']} ({fm['class']}): {fm['shape'][0]} maps of "
                    f"{fm['shape'][1]}×{fm['shape'][2]} pixels; the most active filter is "
                    f"{int(np.argmax(act))} "
                    f"(mean {act.max():.3f}), {int((act <= 0).sum())} have a mean at or below 0.",
                    f"featureviz/{_json_of(fm['figure'])}: mean_activation",
                )
            )
    d = index.get("dream")
    if d:
        final = d["octave_objective"][-1]
        out.append(
            _f(
                f"Deep Dream on {d['source']}: the mean activation of {d['layer']} rose from "
                f"{d['initial_objective']:.3f} to {final:.3f} over {d['octaves']} octaves × {d['steps']} "
                "steps.",
                f"featureviz/{_json_of(d['files'][0])}: initial_objective, octave_objective",
            )
        )
    return out
