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
        out.append(_f(_balance(split, info["classes"], cnt), src + f": counts.{split}"))
    for s, per_class in info["counts"].items():
        none = [info["classes"][k] for k, v in enumerate(per_class) if v == 0]
        if none and sum(per_class) > 0:  # a labeled split without some class (unlabeled splits count nothing)
            out.append(
                _f(
                    f"The {s} split has no image of {_names(none)}: "
                    + ("the model cannot learn or predict " if s == "train" else "its numbers do not cover ")
                    + ("them." if len(none) > 1 else "it."),
                    src + f": counts.{s}",
                )
            )
    if info.get("skipped"):
        out.append(
            _f(f"{info['skipped']:,} rows or files could not be read and were skipped.", src + ": skipped")
        )
    return out


def _names(names: list[str], most: int = 6) -> str:
    shown = names[:most] + ([f"{len(names) - most} more"] if len(names) > most else [])
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _balance(split: str, classes: list[str], cnt: list[int]) -> str:
    """One sentence on the class balance of a split: every class equal, or the largest and smallest
    (all classes tied at either end are named)."""
    if len(cnt) == 1:
        return f"The {split} split has one class, {classes[0]} ({cnt[0]:,} images)."
    hi, lo = max(cnt), min(cnt)
    if hi == lo:
        return f"In the {split} split every class has {hi:,} images: the classes are balanced."
    top = [classes[k] for k, v in enumerate(cnt) if v == hi]
    low = [classes[k] for k, v in enumerate(cnt) if v == lo]
    ratio = f"an imbalance of {hi / lo:.2f}×" if lo else "an unbounded imbalance (a class has none)"
    largest = (f"the largest class is {top[0]} ({hi:,} images)" if len(top) == 1
               else f"the largest classes are {_names(top)} ({hi:,} images each)")
    smallest = (f"the smallest {low[0]} ({lo:,} images)" if len(low) == 1
                else f"the smallest {_names(low)} ({lo:,} each)")
    return f"In the {split} split {largest} and {smallest}: {ratio}."


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


_ACCURACY_OF = {"test": "Test accuracy", "val": "Validation accuracy", "train": "Training accuracy"}


def accuracy_name(split: str) -> str:
    """``"test"`` -> ``"Test accuracy"``, ``"val"`` -> ``"Validation accuracy"``; others ``"Accuracy on <split>"``."""
    return _ACCURACY_OF.get(split, f"Accuracy on {split}")


def split_note(split: str, info: dict[str, Any]) -> str | None:
    """Why the labeled split shown is ``split`` and not ``test`` (from ``data/counts.json``), or ``None``
    when it is ``test``."""
    if split == "test":
        return None
    if "test" not in info["splits"]:
        why = "the dataset has no test split"
    elif info["unlabeled"].get("test", 0) == info["size"]["test"]:
        why = f"the test split is unlabeled ({info['size']['test']:,} images)"
    elif info["unlabeled"].get("test", 0):
        why = f"{info['unlabeled']['test']:,} of the {info['size']['test']:,} test images are unlabeled"
    else:
        why = f"the {split} split was chosen (--split {split})"
    text = (f"Accuracy is measured on the labeled {split} split: {why}. Each section names the split its "
            "images come from.")
    if split == "val":
        text += (" The val split is the hold-out cut from the training data that also chose the saved epoch, "
                 "so its accuracy is optimistic.")
    return text


def eval_findings(m: dict[str, Any], source: str = "eval/metrics.json") -> list[Finding]:
    src = source
    split = m["split"]
    pc = sorted(m["per_class"], key=lambda r: (-r["recall"], r["class"]))
    out = [
        _f(
            f"{accuracy_name(split)} is {_pct(m['accuracy'])} on {m['n']:,} {split} images "
            f"(macro F1 {m['macro_f1']:.3f}).",
            src + ": split, accuracy, macro_f1",
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
        out.append(_f(f"No {split} image was misclassified.", src + ": confusion"))
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
            f"{len(meta['indices'])} misclassified {meta.get('split', 'test')} images from the "
            f"{len(meta['pairs'])} most-confused "
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
            f"{len(methods)} methods scored on {scores['n_images']} {scores.get('options', {}).get('split', 'test')} "
            "images against a random and an edge "
            f"control, with {len(tests)} tests ({', '.join(tests)}).",
            src + ": n_images, tests",
        )
    ]
    from ..metrics.results import declarations

    decl = declarations(scores)
    out += [_f(n, src + ": notes, chance") for n in scores.get("notes", [])]
    clean = [m for m, v in methods.items() if all(v["passed"].get(t) for t in tests)]
    if clean:
        out.append(_f(f"Passed every test: {', '.join(clean)}.", src + ": methods.*.passed"))
    for t in tests:
        failed = [m for m, v in methods.items() if v["passed"].get(t) is False]
        if failed:
            key = decl[t]["keys"][0]
            vals = ", ".join(
                f"{m} {methods[m]['scores'][key]['mean']:.3f}" for m in failed if key in methods[m]["scores"]
            )
            out.append(
                _f(f"Failed {t}: {', '.join(failed)} ({key}: {vals}).", src + f": methods.*.scores.{key}")
            )
    for s in scores.get("skipped", []):
        out.append(_f(f"{s['method']} could not be scored: {s['reason']}", src + ": skipped"))
    return out


def image_of(fm: dict[str, Any]) -> str:
    """``"val image #12"`` for a feature-map record that names its split, else ``"image #12"``."""
    split = fm.get("split")
    return f"{split} image #{fm['image']}" if split and split != "?" else f"image #{fm['image']}"


def explained_images(index: dict[str, Any]) -> str:
    """What the explained images of ``explain/explanations.json`` are, as true as the file allows:
    how they were chosen, their split(s), how many were correctly classified, which class was explained.

    >>> explained_images({"indices": [0, 1], "labels": [1, 2], "predicted": [1, 0], "targets": [1, 0],
    ...                   "selection": "given", "splits": ["train", "train"]})
    '2 train images chosen by index (1 correctly classified, 1 misclassified), each explained for its predicted class'
    """
    n = len(index["indices"])
    splits = index.get("splits")
    where = ""
    if splits:
        seen = list(dict.fromkeys(s for s in splits if s != "?"))
        where = (" and ".join(seen) + " ") if seen else ""  # a file older than the record names no split
    labels, pred, targets = index.get("labels"), index.get("predicted"), index["targets"]
    if labels is not None and pred is not None and all(lb is not None and lb >= 0 for lb in labels):
        right = sum(int(a == b) for a, b in zip(labels, pred))
        if right == n:
            state = "correctly classified "
            tally = ""
        elif right == 0:
            state = "misclassified "
            tally = ""
        else:
            state, tally = "", f" ({right} correctly classified, {n - right} misclassified)"
    else:
        state, tally = "", " (unlabeled: correctness unknown)" if labels is not None else ""
    how = {"correct": " (per class in order, the first of each class in the split)",
           "given": " chosen by index"}.get(index.get("selection") or "correct", "")
    if pred is not None and list(targets) == list(pred):
        cls = "its predicted class"
    elif labels is not None and list(targets) == list(labels):
        cls = "its true class"
    else:
        names = index.get("classes")
        cls = "class " + ", ".join(dict.fromkeys(names[t] if names else str(t) for t in targets))
    return f"{n} {state}{where}image{'s' if n != 1 else ''}{how}{tally}, each explained for {cls}"


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
                    f"{fm['layer']} on {image_of(fm)} ({fm['class']}): {fm['shape'][0]} maps of "
                    f"{fm['shape'][1]}×{fm['shape'][2]} pixels; the most active filter is "
                    f"{int(np.argmax(act))} "
                    f"(mean {act.max():.3f}), {int((act <= 0).sum())} have a mean at or below 0.",
                    f"featureviz/{_json_of(fm['figure'])}: mean_activation",
                )
            )
    for note in index.get("notes", []):  # what was left out, and why
        out.append(_f(note, "featureviz/featureviz.json: notes"))
    for d in index.get("dreams") or ([index["dream"]] if index.get("dream") else []):
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
