"""Predictions for a (usually unlabeled) test set: a submission file, with ensembles and TTA.

``predict(runs, data, split="test")`` runs one model, or the mean of several models' softmax
probabilities (an ensemble), over every image of a split, batch by batch, optionally averaged over
test-time augmentation views (``flip``: the image and its mirror; ``tencrop``: four corner crops
and the centre crop, and their mirrors; see :mod:`cnnlens.evaluate.tta`)::

    p(k | x) = 1/(R V) * sum_r sum_v softmax(f_r(t_v(x)))_k        R runs, V views

The submission file has one row per input, in the input's own order: ``id,label`` for the course
CSV (FER2013's ``test.csv``), ``file,label`` for image folders (Food-11's ``testing/``), where
``label`` is the predicted class *index* (the course's Kaggle form); ``probs=True`` adds one
probability column per class, named by the class. Rows the loader could not read are an error
naming the row or file, or, with ``skip_bad_rows``, are listed in ``<out>.skipped.csv`` beside the
output: the file is never silently shorter than the input.

On a labeled split the accuracy of the ensemble and of each member is also computed and written
into each run's ``eval/predict-<split>-<tta>[-ensemble-<hash>].json``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data.base import ImageDataset, load_dataset
from .evaluate.core import predict_probs
from .evaluate.tta import TTA_MODES
from .io import CsvWriter, atomic_path, write_csv, write_json
from .registry import check_choice
from .train.run import Run, load_run, run_view
from .errors import CnnlensError, CnnlensTypeError

log = logging.getLogger(__name__)

LABEL_FORMS = ("index", "name")
SKIPPED_COLUMNS = ("where", "line", "id", "reason")
_FILE_KEYED = ("food11", "folder")
_SPLIT_DIRS = {"train": ("train", "val"), "training": ("train", "val"), "val": ("val",), "valid": ("val",),
               "validation": ("val",), "test": ("test",), "testing": ("test",), "evaluation": ("test",)}
_CSV_ROW = re.compile(r"^(?P<where>.+?) line (?P<line>\d+): (?P<why>.*)$", re.S)
_FILE_ROW = re.compile(r"^(?P<where>.+?): (?P<why>.*)$", re.S)


@dataclass(frozen=True)
class Predictions:
    """Predictions of one model or an ensemble on one split.

    Attributes:
        split, tta: what was predicted, with which test-time augmentation (``none``, ``flip``,
            ``tencrop``).
        key: name of the id column: ``"id"`` (CSV data) or ``"file"`` (image folders).
        ids: ``[n]`` identifiers in the input's own order (CSV ids, file names).
        indices: ``int64 [n]`` dataset indices of the rows.
        probs: ``float32 [n, K]`` mean softmax over runs and views; ``preds`` ``int64 [n]`` its argmax.
        labels: ``int64 [n]`` true labels, ``-1`` where unlabeled.
        classes: class names (``preds`` index into it).
        runs: the run directories of the ensemble members.
        member_probs_correct: ``[R]`` correctly predicted images per member (labeled splits only).
        skipped: inputs the loader skipped (``where, line, id, reason``), or ``None`` when skipping was
            not asked for (then nothing was skipped: bad input is an error).
        data: the dataset SPEC or source.
    """

    split: str
    tta: str
    key: str
    ids: list[str]
    indices: torch.Tensor
    probs: torch.Tensor
    preds: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    runs: list[str]
    member_correct: list[int] | None
    skipped: list[dict[str, str]] | None
    data: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labeled(self) -> bool:
        return len(self.labels) > 0 and bool((self.labels >= 0).all())

    @property
    def accuracy(self) -> float | None:
        """Accuracy of the (ensemble) prediction; ``None`` on an unlabeled split."""
        if not self.labeled:
            return None
        return int((self.preds == self.labels).sum()) / len(self.labels)

    @property
    def member_accuracy(self) -> list[float] | None:
        """Accuracy of each run alone (same TTA); ``None`` on an unlabeled split."""
        if not self.labeled or self.member_correct is None:
            return None
        return [c / len(self.labels) for c in self.member_correct]

    def metrics(self) -> dict[str, Any]:
        """The numbers written to ``RUN/eval/predict-*.json``."""
        members = self.member_accuracy
        return {
            "split": self.split, "tta": self.tta, "data": self.data, "n": len(self),
            "ensemble": len(self.runs) > 1,
            "accuracy": self.accuracy,
            "runs": [{"path": r, "accuracy": None if members is None else members[i]}
                     for i, r in enumerate(self.runs)],
            "skipped": None if self.skipped is None else len(self.skipped),
        }


# ---- runs and data ---------------------------------------------------------------------------------

def _as_runs(runs: Sequence[Run | str | Path] | Run | str | Path,
             device: str | torch.device | None, trust_code: bool = False) -> list[Run]:
    if isinstance(runs, (Run, str, Path)):
        runs = [runs]
    if not runs:
        raise CnnlensError("predict needs at least one run (a run directory written by `cnnlens train`)")
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = []
    for r in runs:
        if isinstance(r, Run):
            out.append(r)
        elif isinstance(r, (str, Path)):
            out.append(load_run(r, device=dev, trust_code=trust_code))
        else:
            raise CnnlensTypeError(f"runs must be Run objects or run directories; got {type(r).__name__}")
    check_compatible(out)
    return out


def check_compatible(runs: Sequence[Run]) -> None:
    """Raise a ValueError saying what differs unless all runs share classes and input shape."""
    ref = runs[0]
    for r in runs[1:]:
        if list(r.classes) != list(ref.classes):
            if sorted(r.classes) == sorted(ref.classes):
                how = (f"the same classes in a different order ({ref.path}: {', '.join(ref.classes)}; "
                       f"{r.path}: {', '.join(r.classes)})")
            else:
                only_a = [c for c in ref.classes if c not in r.classes]
                only_b = [c for c in r.classes if c not in ref.classes]
                how = (f"{len(ref.classes)} classes in {ref.path} and {len(r.classes)} in {r.path}; only in "
                       f"the first: {', '.join(only_a) or 'none'}; only in the second: "
                       f"{', '.join(only_b) or 'none'}")
            raise CnnlensError("the runs of an ensemble must share their classes, in the same order; they "
                             f"differ: {how}. Ensemble runs trained on the same dataset")
        if tuple(r.input_shape) != tuple(ref.input_shape):
            raise CnnlensError(f"the runs of an ensemble must share the input shape; {ref.path} takes "
                             f"{_chw(ref.input_shape)} images but {r.path} takes {_chw(r.input_shape)}. "
                             "Train them with the same --image-size (and channels)")


def _chw(shape: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in shape)


def load_data(spec: str | None, runs: Sequence[Run | str | Path], *, skip_bad_rows: bool = False,
              progress: Callable[[int, int], None] | None = None, trust_code: bool = False) -> ImageDataset:
    """Load ``spec`` (default: the first run's training data) the way the first run was trained on it.

    The run's loader options (seed and validation fraction, so ``val`` is the same split) are reused,
    and images are read at the run's input size and channels; the classes are named as the run's
    model names them (``model.json``).
    """
    run = runs[0] if isinstance(runs[0], Run) else load_run(runs[0], trust_code=trust_code)
    opts = run.config.data.loader_options()
    opts["skip_bad_rows"] = bool(skip_bad_rows)
    c, h, w = run.input_shape
    if h == w:
        opts["image_size"] = h
    opts["channels"] = c
    if progress is not None:
        opts["progress"] = progress
    return run_view(load_dataset(spec or run.config.data.spec, **opts), run)


# ---- prediction ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Batch:
    indices: torch.Tensor
    probs: torch.Tensor
    member_correct: list[int]


def _batches(runs: list[Run], ds: ImageDataset, idx: torch.Tensor, tta: str, batch_size: int,
             progress: Callable[[int, int], None] | None) -> Iterator[_Batch]:
    n = len(idx)
    labels = ds.labels[idx]
    for i in range(0, n, batch_size):
        bi = idx[i:i + batch_size]
        images = ds.images[bi]
        total = None
        correct = []
        for r in runs:
            p = predict_probs(r.model, images, r.mean, r.std, batch_size=len(bi), tta=tta)
            correct.append(int((p.argmax(1) == labels[i:i + batch_size]).sum()))
            total = p if total is None else total + p
        yield _Batch(bi, total / len(runs), correct)  # type: ignore[operator]
        if progress:
            progress(min(i + batch_size, n), n)


def predict(runs: Sequence[Run | str | Path] | Run | str | Path, data: str | ImageDataset | None = None,
            split: str = "test", tta: str | None = None, batch_size: int = 256,
            progress: Callable[[int, int], None] | None = None, *, out: str | Path | None = None,
            probs: bool = False, labels: str = "index", columns: Sequence[str] | None = None,
            skip_bad_rows: bool = False,
            device: str | torch.device | None = None, write_eval: bool = True,
            trust_code: bool = False) -> Predictions:
    """Predict every image of ``split`` with one run or the mean of several (an ensemble).

    Args:
        runs: run directories or :class:`Run` objects; several must share classes and input shape.
        data: a dataset SPEC (loaded as the first run was trained: see :func:`load_data`), an
            :class:`ImageDataset`, or ``None`` for the first run's own training data.
        split: the split to predict (``test``, ``val``, ...).
        tta: ``None``/``"none"``, ``"flip"`` or ``"tencrop"``: average the softmax over these views.
        batch_size: images per forward pass (times the number of TTA views).
        progress: ``(done, total)`` callback after each batch.
        out: write the submission CSV here as the batches come (atomically: the file appears,
            complete, at the end); see :func:`write_predictions` for the columns.
        probs, labels, columns: with ``out``: add probability columns; write the class ``index`` or
            ``name``; name the two first columns (default ``id,label`` or ``file,label``).
        skip_bad_rows: skip rows/files the loader cannot read (for a loaded ``data``: list what its
            loader skipped); they are listed in ``<out stem>.skipped.csv`` (written even when empty).
        device: where run directories are loaded (default: CUDA if available, else CPU). Given
            :class:`Run` objects stay where they are.
        write_eval: on a labeled split, write ``eval/predict-<split>-<tta>[...].json`` into each run.
        trust_code: allow loading run directories whose model is user code (see :func:`cnnlens.load_run`).

    Returns:
        :class:`Predictions`: ``probs float32 [n, K]`` in the split's order, and the accuracy on a
        labeled split. The runs' models come back in the mode they were given.
    """
    tta = tta or "none"
    check_choice("tta", tta, TTA_MODES)
    check_choice("labels", labels, LABEL_FORMS)
    _header("id", [], False, columns)  # bad column names fail before any work
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise CnnlensError(f"batch_size must be a positive integer; got {batch_size!r}")
    rs = _as_runs(runs, device, trust_code)
    if isinstance(data, ImageDataset):
        ds = data  # with skip_bad_rows, what its loader skipped is listed
    elif data is None or isinstance(data, str):
        ds = load_data(data, rs, skip_bad_rows=skip_bad_rows)
    else:
        raise CnnlensTypeError(f"data must be a dataset SPEC or an ImageDataset; got {type(data).__name__}")
    _check_data(rs[0], ds, split)
    idx = ds.indices(split)
    if len(idx) == 0:
        raise CnnlensError(f"split {split!r} of {ds.name!r} ({ds.source}) is empty; nothing to predict")
    ids = [ds.ids[i] for i in idx.tolist()] if ds.ids else [str(i) for i in idx.tolist()]
    key = "file" if ds.name in _FILE_KEYED else "id"
    classes = list(rs[0].classes)
    skipped = skipped_inputs(ds, split) if skip_bad_rows or ds.skipped else None
    parts: list[_Batch] = []
    if out is not None:
        out = Path(out)
        header = _header(key, classes, probs, columns)
        with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = CsvWriter(fh)
            w.writerow(header)
            start = 0
            for b in _batches(rs, ds, idx, tta, batch_size, progress):
                parts.append(b)
                w.writerows(_rows(ids[start:start + len(b.indices)], b.probs, classes, probs, labels))
                start += len(b.indices)
    else:
        parts = list(_batches(rs, ds, idx, tta, batch_size, progress))
    p = torch.cat([b.probs for b in parts])
    if p.shape != (len(idx), len(classes)):
        raise RuntimeError(f"internal error: {p.shape[0]} predictions for {len(idx)} inputs")
    pred = Predictions(
        split=split, tta=tta, key=key, ids=ids, indices=idx, probs=p, preds=p.argmax(1),
        labels=ds.labels[idx],
        classes=classes, runs=[str(r.path) for r in rs],
        member_correct=[sum(b.member_correct[j] for b in parts) for j in range(len(rs))],
        skipped=skipped, data=_describe(data, ds, rs[0]))
    if out is not None and skipped is not None:
        write_skipped(skipped, skipped_path(out))
    if skipped:
        log.warning("%d input(s) of split %r were skipped and are not in the predictions%s",
                    len(skipped), split,
                    f" (listed in {skipped_path(out)})" if out is not None else "")
    if write_eval and pred.labeled:
        write_eval_json(pred, rs)
    return pred


def _describe(data: str | ImageDataset | None, ds: ImageDataset, run: Run) -> str:
    if isinstance(data, str):
        return data
    return run.config.data.spec if data is None else f"{ds.name}:{ds.source}"


def _check_data(run: Run, ds: ImageDataset, split: str) -> None:
    shape = (ds.channels, *ds.size)
    if tuple(shape) != tuple(run.input_shape):
        raise CnnlensError(f"the images of {ds.name!r} ({ds.source}) are {_chw(shape)} but {run.path} takes "
                         f"{_chw(run.input_shape)}; load the data at the run's size (give a SPEC, not a "
                         "loaded dataset, and predict reads it at the run's size and channels)")
    labeled = bool((ds.labels[ds.indices(split)] >= 0).any())
    if list(ds.classes) != list(run.classes):
        if labeled:
            raise CnnlensError(f"split {split!r} of {ds.name!r} is labeled with classes {ds.classes} but "
                             f"{run.path} predicts {run.classes}; accuracy would compare different classes. "
                             "Predict data of the classes the run was trained on")
        log.warning("the dataset's classes %s differ from the run's %s; labels are the run's class indices",
                    ds.classes, run.classes)


# ---- writing ---------------------------------------------------------------------------------------

def _header(key: str, classes: list[str], probs: bool, columns: Sequence[str] | None = None) -> list[str]:
    if columns is not None:
        if (isinstance(columns, str) or len(columns) != 2
                or not all(isinstance(c, str) and c for c in columns)):
            raise CnnlensError(f"columns must be two names (id column, label column), e.g. ('Id', 'Category'); "
                             f"got {columns!r}")
        first = [columns[0], columns[1]]
    else:
        first = [key, "label"]
    if not probs:
        return first
    return [*first, *[c if c not in first else f"p_{c}" for c in classes]]


def _rows(ids: list[str], p: torch.Tensor, classes: list[str], probs: bool, labels: str) -> list[list[Any]]:
    preds = p.argmax(1).tolist()
    vals = p.tolist() if probs else None
    rows = []
    for j, (i, k) in enumerate(zip(ids, preds)):
        row: list[Any] = [i, k if labels == "index" else classes[k]]
        if vals is not None:
            row += [f"{v:.6f}" for v in vals[j]]
        rows.append(row)
    return rows


def write_predictions(pred: Predictions, out: str | Path, *, probs: bool = False, labels: str = "index",
                      columns: Sequence[str] | None = None) -> Path:
    """Write the submission CSV (atomically) and, when skipping was asked for, ``<stem>.skipped.csv``.

    Columns: ``id,label`` (CSV data) or ``file,label`` (image folders), one row per input in the
    input's order; ``label`` is the class index (``labels="index"``, the course's Kaggle form) or
    name; ``columns`` renames these two (e.g. ``("Id", "Category")``). ``probs=True`` adds one
    column per class (named by the class; ``p_<name>`` if a class has the name of one of the two
    first columns) with the probabilities to 6 decimals.
    """
    check_choice("labels", labels, LABEL_FORMS)
    out = Path(out)
    buf = io.StringIO()
    w = CsvWriter(buf)
    w.writerow(_header(pred.key, pred.classes, probs, columns))
    w.writerows(_rows(pred.ids, pred.probs, pred.classes, probs, labels))
    with atomic_path(out) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    if pred.skipped is not None:
        write_skipped(pred.skipped, skipped_path(out))
    return out


def skipped_path(out: str | Path) -> Path:
    """``predictions.csv`` -> ``predictions.skipped.csv`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}.skipped.csv")


def write_skipped(skipped: list[dict[str, str]], path: str | Path) -> Path:
    return write_csv(path, SKIPPED_COLUMNS, [[s[c] for c in SKIPPED_COLUMNS] for s in skipped])


def eval_name(pred: Predictions) -> str:
    """``predict-<split>-<tta>.json``; an ensemble adds ``-ensemble-<hash of its member paths>``."""
    name = f"predict-{pred.split}-{pred.tta}"
    if len(pred.runs) > 1:
        members = "\n".join(sorted(str(Path(r).resolve()) for r in pred.runs))
        h = hashlib.sha1(members.encode()).hexdigest()[:8]
        name += f"-ensemble-{h}"
    return name + ".json"


def write_eval_json(pred: Predictions, runs: Sequence[Run]) -> list[Path]:
    """Write :meth:`Predictions.metrics` into each run's ``eval/`` folder."""
    from .runlock import run_locks

    paths = []
    m = pred.metrics()
    with run_locks([Path(r.path) for r in runs], create=False):  # one writer per run
        for r in runs:
            paths.append(write_json(Path(r.path) / "eval" / eval_name(pred), m))
    return paths


# ---- what the loader skipped ----------------------------------------------------------------------

def skipped_inputs(ds: ImageDataset, split: str) -> list[dict[str, str]]:
    """The loader's skipped entries that belong to ``split`` (or whose split cannot be told), as
    ``{where, line, id, reason}``: a CSV row gives its line and, where it can be read, its id; an
    image file gives its path (its id is the file's name in the dataset's own terms)."""
    src = Path(ds.source) if ds.source else None
    folder = src if src is not None and src.is_dir() else src.parent if src is not None else None
    out = []
    for entry in ds.skipped:
        m = _CSV_ROW.match(entry)
        if m and folder is not None and (folder / m["where"]).is_file():
            f = folder / m["where"]
            line = int(m["line"])
            splits, rid = _csv_row_facts(f, line)
            if splits is None or split in splits:
                out.append({"where": m["where"], "line": str(line), "id": rid, "reason": m["why"]})
            continue
        m = _FILE_ROW.match(entry)
        where, why = (m["where"], m["why"]) if m else (entry, "")
        first = Path(where).parts[0].lower() if Path(where).parts else ""
        splits = _SPLIT_DIRS.get(first) if len(Path(where).parts) > 1 or first in _SPLIT_DIRS else None
        if splits is None or split in splits:
            rid = Path(where).name if ds.name == "food11" else where
            out.append({"where": where, "line": "", "id": rid, "reason": why})
    return out


def _csv_row_facts(path: Path, line: int) -> tuple[tuple[str, ...] | None, str]:
    """(splits the row belongs to, or None if unknown; the row's id) for 1-based ``line`` of a pixel CSV."""
    header: list[str] = []
    text = ""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        for n, raw in enumerate(fh, start=1):
            if n == 1:
                header = [c.strip().strip('"').strip().lower() for c in raw.rstrip("\r\n").split(",")]
            if n == line:
                text = raw.rstrip("\r\n")
                break
    fields = next(csv.reader([text]), []) if text else []

    def field(name: str) -> str | None:
        if name in header and header.index(name) < len(fields):
            return fields[header.index(name)].strip()
        return None

    if "id" in header:  # course test.csv: the test split, identified by its id column
        return ("test",), field("id") or ""
    if "usage" in header:  # Kaggle form: the Usage column says the split; ids are line numbers
        usage = {"training": ("train",), "publictest": ("val",), "privatetest": ("test",)}
        return usage.get((field("usage") or "").lower()), str(line)
    return ("train", "val"), str(line)  # course train.csv: ids are line numbers
