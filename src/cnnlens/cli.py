"""The ``cnnlens`` command line. The only module that writes to the console.

Each command is a pair: ``_add_<name>(sub)`` declares its arguments (choices come from the
registries) and ``_run_<name>(args)`` does the work by calling the library. Add a command by adding
both and listing it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from .errors import CnnlensError

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)
log = logging.getLogger("cnnlens")


def _quiet_third_party() -> None:
    """Keep Lightning's tips and irrelevant warnings away from the user."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                 "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=r".*litlogger.*|.*litmodels.*|.*LitModels.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r".*The number of training batches .* is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"lightning\..*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pytorch_lightning\..*")
    os.environ.setdefault("POSSIBLE_USER_WARNINGS", "off")


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("cnnlens").setLevel(level)
    _quiet_third_party()


def _example(text: str) -> str:
    return f"example:\n  {text}"


def _parser_for(sub: argparse._SubParsersAction, name: str, help_: str, example: str
                ) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_, description=help_, epilog=_example(example),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


class Progress:
    """A rich progress bar the library can report into through a ``(done, total)`` callback."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RP, TimeElapsedColumn

        self._p = RP("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                     TimeElapsedColumn(), console=err_console, transient=True)
        self._label = label
        self._task = None

    def __enter__(self) -> Callable[[int, int], None]:
        self._p.__enter__()

        def update(done: int, total: int) -> None:
            if self._task is None:
                self._task = self._p.add_task(self._label, total=total)
            self._p.update(self._task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        self._p.__exit__(*exc)


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------

def _add_methods(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "methods", "explanation methods", "cnnlens methods list")
    p.add_argument("action", choices=["list"])


def _run_methods(args: argparse.Namespace) -> int:
    from .explain import METHODS

    t = Table("method", "what it computes", title="explanation methods")
    for e in METHODS.entries():
        t.add_row(e.name, e.description)
    for pfx in METHODS.prefixes():
        t.add_row(f"{pfx}:<Name>", f"any {pfx} attribution class, through the same contract")
    console.print(t)
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "models", "list the built-in models, or show one's layer table",
                    "cnnlens models summary compact --input 1x48x48 --classes 7\n"
                    "  cnnlens models summary torchvision:resnet18 --input 3x64x64 --tensorboard runs/tb")
    p.add_argument("action", choices=["list", "summary"])
    p.add_argument("name", nargs="?", help="model name (for summary): a registered name, "
                   "torchvision:<name>, FILE.py:ClassName or a TorchScript file")
    p.add_argument("--input", default="1x32x32", help="input shape CxHxW (default 1x32x32)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    p.add_argument("--weights", default=None, help="weights file (.safetensors, .pt) for torchvision/file models")
    p.add_argument("--out", default=None, help="also write summary.json and summary.csv into this folder")
    p.add_argument("--tensorboard", default=None, metavar="LOGDIR",
                   help="also export the model graph to TensorBoard in LOGDIR (needs tensorboard)")


def _run_models(args: argparse.Namespace) -> int:
    from .models import MODELS

    if args.action == "list":
        t = Table("model", "architecture", title="models")
        for e in MODELS.entries():
            t.add_row(e.name, e.description)
        for pfx in MODELS.prefixes():
            t.add_row(f"{pfx}:<name>", f"any {pfx} classification architecture, adapted to channels and classes")
        for form in MODELS.resolver_forms():
            t.add_row(form, "your own model")
        console.print(t)
        return 0
    if not args.name:
        raise CnnlensError("models summary needs a model NAME, e.g. `cnnlens models summary compact`")
    from .models import create_model
    from .models.summary import summarize

    c, h, w = _parse_chw(args.input)
    kw = {"weights": args.weights} if args.weights else {}
    m = create_model(args.name, in_channels=c, num_classes=args.classes, input_size=(h, w), **kw)
    s = summarize(m, (c, h, w))
    t = Table("Layer (type)", "Output Shape", "Param #", "Trainable",
              title=f"{args.name} ({s.model}), input {c}x{h}x{w}, {args.classes} classes")
    for r in s.rows:
        shape = "-" if r.output_shape is None else "(None, " + ", ".join(map(str, r.output_shape)) + ")"
        t.add_row(f"{r.name} ({r.type})", shape, f"{r.params:,}",
                  "" if r.params == 0 else "yes" if r.trainable else f"{r.trainable_params:,}")
    console.print(t)
    console.print(f"Total params: {s.total:,}\nTrainable params: {s.trainable:,}\n"
                  f"Non-trainable params: {s.non_trainable:,}\n"
                  f"Buffers (BatchNorm running statistics, not parameters): {s.buffers:,}\n"
                  f"Multiply-accumulates per image (Conv2d + Linear): {s.macs:,}")
    if args.out:
        out = Path(args.out)
        s.to_json(out / "summary.json")
        s.to_csv(out / "summary.csv")
        console.print(f"wrote {out / 'summary.json'} and {out / 'summary.csv'}")
    if args.tensorboard:
        from .models.tensorboard import export_graph

        try:
            path = export_graph(m, (c, h, w), args.tensorboard)
        except ImportError as e:
            err_console.print(f"[red]error:[/red] {e}")
            return 2
        console.print(f"graph written to {path}; view it with: tensorboard --logdir {args.tensorboard}")
    return 0


def _parse_chw(s: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise CnnlensError(f"--input must look like CxHxW, e.g. 1x48x48; got {s!r}") from None
    return c, h, w



def _data_choices() -> str:
    from .data import DATASETS

    return ", ".join([f"{n}:PATH" if n != "digits" and n != "planted" else n for n in DATASETS.names()])


def _devices_arg(v: str) -> int | str:
    """``--devices``: a positive number of devices, or ``auto``."""
    if v == "auto":
        return v
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"takes a positive number of devices or 'auto'; got {v!r}")
    return n


def _add_train_args(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    from .config import OPTIMIZERS, SCHEDULERS

    p.add_argument("--data", required=data_required, metavar="SPEC",
                   help=f"dataset: {_data_choices()}, or a bare path (recognized by its contents)")
    p.add_argument("--model", default=None, metavar="NAME", help="model name (`cnnlens models list`); default compact")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. hidden=1800,1050 for mlp (repeatable)")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/<data>-<model>)")
    p.add_argument("--config", metavar="FILE", help="YAML with data/model/train sections; flags override it")
    p.add_argument("--recipe", choices=["fer2013", "food11"],
                   help="a published training recipe (docs/training.md); --config and flags override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--scheduler", choices=SCHEDULERS)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--val-fraction", type=float, help="validation share where the data has no val split")
    p.add_argument("--image-size", type=int, help="resize images on load (Food-11, folders)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows/files and list them")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.ckpt")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--accelerator", help="auto (default), cpu, gpu, ...")
    p.add_argument("--devices", type=_devices_arg, help="number of devices or 'auto'")
    p.add_argument("--strategy", help="e.g. ddp")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed")
    p.add_argument("--tensorboard", action="store_true", help="also export the model graph to RUN/tensorboard")


def _model_options(pairs: list[str]) -> dict[str, object]:
    import yaml

    opts: dict[str, object] = {}
    for kv in pairs:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise CnnlensError(f"--model-option must be KEY=VALUE; got {kv!r}")
        opts[k] = v if "," in v else yaml.safe_load(v)
    return opts


def _train_kwargs(args: argparse.Namespace, progress: bool = True) -> dict[str, object]:
    """The training flags as keywords of :func:`cnnlens.workflow.train_run` (and :func:`cnnlens.run`)."""
    return dict(
        data=args.data, model=args.model, out=args.out, recipe=getattr(args, "recipe", None), config=args.config,
        val_fraction=args.val_fraction, image_size=args.image_size, skip_bad_rows=args.skip_bad_rows or None,
        seed=args.seed, resume=args.resume, force=args.force, progress=progress,
        model_options=_model_options(args.model_option) if args.model_option else None, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, scheduler=args.scheduler,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, early_stopping=args.early_stopping,
        grad_clip=args.grad_clip, accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
        num_nodes=args.num_nodes, precision=args.precision, tensorboard=getattr(args, "tensorboard", False))


def _train_from_args(args: argparse.Namespace, progress: bool = True):
    from .workflow import train_run

    run = train_run(**_train_kwargs(args, progress))
    if run is not None:
        _print_trained(run)
    return run


def _print_trained(run) -> None:
    best = run.meta["best_val_acc"]
    console.print(f"trained [b]{run.config.model.name}[/b] ({run.meta['params']:,} parameters): best val accuracy "
                  f"{100 * best:.2f}% at epoch {run.meta['best_epoch']} -> {run.path}")


def _notify(event: str, value: object) -> None:
    """Print what :func:`cnnlens.run` reports as each step finishes."""
    if event == "trained":
        _print_trained(value)
    elif event == "evaluated":
        _print_eval(value)
    elif event == "compared":
        _print_compare(value)
    elif event == "report":
        console.print(f"report: [b]{value}[/b]")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "train", "train a model on a dataset (Lightning); writes a run directory",
                    "cnnlens train --data fer2013:data/fer2013.csv --model compact --epochs 30 --out runs/fer")
    _add_train_args(p)


def _run_train(args: argparse.Namespace) -> int:
    _train_from_args(args)
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "evaluate", "accuracy, per-class metrics, confusion matrix -> RUN/eval/metrics.json",
                    "cnnlens evaluate runs/demo")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--split", default="test")
    p.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none",
                   help="test-time augmentation: average the softmax over flipped / ten-crop views")


def _run_evaluate(args: argparse.Namespace) -> int:
    from .pipeline import evaluate_run
    from .train import load_run

    run = load_run(args.run)
    with Progress("evaluating") as cb:
        res = evaluate_run(run, args.split, progress=cb, tta=args.tta)
    _print_eval(res)
    console.print(f"wrote {run.path / 'eval' / 'metrics.json'}")
    return 0


def _print_eval(res) -> None:
    t = Table("class", "precision", "recall", "F1", "support", title=f"{res.split}: accuracy {100 * res.accuracy:.2f}%")
    for r in res.per_class():
        t.add_row(r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"]))
    console.print(t)
    pairs = res.confused_pairs(5)
    if pairs:
        console.print("most confused: " + "; ".join(f"{p['true']}→{p['pred']} ({p['count']})" for p in pairs))


def _add_explain(sub: argparse._SubParsersAction) -> None:
    from .explain import METHODS

    p = _parser_for(sub, "explain", "attribution maps for chosen images -> RUN/explain/ (.npy and figures)",
                    "cnnlens explain runs/demo --methods saliency,gradcam --per-class 2")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--methods", default="saliency,gradcam",
                   help=f"comma-separated, from: {', '.join(METHODS.names())}")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--per-class", type=int, default=1, help="correctly classified test images per class")
    g.add_argument("--images", help="comma-separated dataset indices, e.g. 3,17,42")
    g.add_argument("--all", action="store_true", help="every image of --split, streamed to --out-dir in chunks "
                   "(bounded memory; run the same command again to resume)")
    p.add_argument("--target", default="pred", help="pred (default), label, or a class index K")
    p.add_argument("--layer", default=None, help="layer for CAM methods (default: the last Conv2d, or the residual block around it)")
    p.add_argument("--split", default="test", help="split for --all (default test)")
    p.add_argument("--out-dir", default=None, metavar="DIR", help="folder for --all (default RUN/explain/all-SPLIT)")
    p.add_argument("--chunk-size", type=int, default=256, help="images per chunk for --all (default 256)")
    p.add_argument("--restart", action="store_true", help="with --all: discard what --out-dir holds and start again")


def _run_explain(args: argparse.Namespace) -> int:
    from .pipeline import explain_run
    from .train import load_run

    run = load_run(args.run)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.all:
        from .explain.stream import explain_stream

        ds = run.dataset
        out = Path(args.out_dir) if args.out_dir else run.path / "explain" / f"all-{args.split}"
        target: object = int(args.target) if args.target.lstrip("-").isdigit() else args.target
        with Progress(f"explaining {args.split}") as cb:
            res = explain_stream(run.model, ds.images, run.mean, run.std, methods, out, target=target,
                                 labels=ds.labels, indices=ds.indices(args.split), chunk_size=args.chunk_size,
                                 overwrite=args.restart, progress=cb, layer=args.layer)
        console.print(f"explained {res.manifest['settings']['n']:,} {args.split} images with {', '.join(methods)}"
                      f" in {res.manifest['chunks']} chunks -> {out} (read it with cnnlens.explain.read_stream)")
        return 0
    indices = None
    if args.images:
        try:
            indices = [int(v) for v in args.images.split(",") if v.strip()]
        except ValueError:
            raise CnnlensError(f"--images must be comma-separated integers; got {args.images!r}") from None
    with Progress("explaining") as cb:
        explain_run(run, methods, indices=indices, per_class=args.per_class, target=args.target, progress=cb,
                    layer=args.layer)
    console.print(f"wrote maps and {run.path / 'explain' / 'grid.png'}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "report", "write RUN/report/index.html from what the run holds (redraws only)",
                    "cnnlens report runs/demo --pdf")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--pdf", action="store_true", help="also print the page to RUN/report/report.pdf with headless "
                   "Chromium (Debian: apt-get install chromium)")
    p.add_argument("--chromium", default=None, metavar="PATH",
                   help="Chromium executable for --pdf (default: $CNNLENS_CHROMIUM, else chromium on PATH)")


def _run_report(args: argparse.Namespace) -> int:
    from .workflow import report_run

    page = report_run(args.run)
    console.print(f"report: {page}")
    if args.pdf:
        from .report.browser import print_pdf

        pdf = print_pdf(page, page.with_name("report.pdf"), executable=args.chromium)
        console.print(f"pdf: {pdf}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "demo", "the whole pipeline on the bundled digits: train, evaluate, explain, visualize, "
                    "trust, report", "cnnlens demo --out runs/demo --fast")
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--fast", action="store_true", help="a short run (under a minute) that still writes every "
                   "artifact: 2 epochs and every analysis stage at reduced size")


def _run_demo(args: argparse.Namespace) -> int:
    from .workflow import run

    run("digits", "compact", out=args.out, force=True, epochs=2 if args.fast else 12, seed=0,
        sizes="fast" if args.fast else "demo", progress=True, progress_for=Progress, notify=_notify)
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    from .pipeline import SIZES

    p = _parser_for(sub, "run", "train -> evaluate -> explain -> visualize -> trust -> report, in one command",
                    "cnnlens run --data digits --model compact --baseline mlp --out runs/digits")
    _add_train_args(p)
    p.add_argument("--methods", default=None, help="gradient/CAM methods shown side by side per class "
                   f"(comma-separated; default {','.join(SIZES['run'].methods)})")
    p.add_argument("--per-class", type=int, default=None, help="correctly classified test images per class "
                   "to explain (default 1)")
    p.add_argument("--size", choices=list(SIZES), default="run",
                   help="how much work the analysis stages do (fast: a quick look; run: the default)")
    p.add_argument("--skip", default=None, metavar="STAGES",
                   help="comma-separated stages to leave out: explain, confused, lime, featureviz, trust")
    p.add_argument("--baseline", choices=["mlp"], help="also train the parameter-matched DNN into RUN/baseline "
                   "and compare (RUN/compare)")


def _run_run(args: argparse.Namespace) -> int:
    from .workflow import run

    run(**_train_kwargs(args), sizes=args.size, methods=_names(args.methods), per_class=args.per_class,
        skip=_names(args.skip) or (), baseline=args.baseline, progress_for=Progress, notify=_notify)
    return 0


def _names(csv: str | None) -> list[str] | None:
    """A comma-separated flag as a list (``None`` when absent)."""
    return None if csv is None else [v.strip() for v in csv.split(",") if v.strip()]


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "compare", "compare runs side by side (e.g. the CNN against its parameter-matched DNN)",
                    "cnnlens compare runs/cnn runs/dnn --out runs/compare")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", default=None, metavar="DIR", help="default: FIRST_RUN/compare")


def _run_compare(args: argparse.Namespace) -> int:
    from .report.compare import compare_runs

    out = args.out or str(Path(args.runs[0]) / "compare")
    _print_compare(compare_runs(args.runs, out))
    console.print(f"wrote {Path(out) / 'index.html'}")
    return 0


def _print_compare(res: dict) -> None:
    t = Table("run", "parameters", "ratio", "best val acc", "test acc", title="comparison")
    for r in res["runs"]:
        t.add_row(r["name"], f"{r['params']:,}", f"{r['params_ratio']:.3f}", f"{100 * r['best_val_acc']:.2f}%",
                  f"{100 * r['test_acc']:.2f}%")
    console.print(t)
    for line in res.get("findings", []):
        console.print(line)


def _add_data(sub: argparse._SubParsersAction) -> None:
    from .data import DATASETS

    p = _parser_for(sub, "data", "inspect a dataset: counts per class and split, skipped rows, sample grid",
                    "cnnlens data inspect fer2013:data/fer2013.csv --out runs/fer-data")
    p.add_argument("action", choices=["inspect"])
    p.add_argument("spec", metavar="SPEC", help="dataset: " + ", ".join(
        n if n in ("digits", "planted") else f"{n}:PATH" for n in DATASETS.names()) + ", or a bare path")
    p.add_argument("--out", default="data-inspect", help="folder for samples.png (default ./data-inspect)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip and list bad rows/files instead of failing")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this side (folder data)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation fraction when cut (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of the sample choice")
    p.add_argument("--per-class", type=int, default=8, help="sample images per class in the grid (default 8)")


def _run_data(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .report.fig_data import sample_grid

    opts: dict[str, object] = {"skip_bad_rows": args.skip_bad_rows, "val_fraction": args.val_fraction,
                               "seed": args.seed}
    if args.image_size is not None:
        opts["image_size"] = args.image_size
    with Progress("decoding") as progress:
        ds = load_dataset(args.spec, progress=progress, **opts)
    splits = list(ds.splits)
    console.print(f"{ds.name}: {len(ds):,} images {ds.channels}x{ds.size[0]}x{ds.size[1]} from {ds.source}",
                  markup=False)
    t = Table("class", *splits, "total", title="images per class and split")
    counts = ds.counts()
    for k, name in enumerate(ds.classes):
        row = [counts[s][k] for s in splits]
        t.add_row(name if name == str(k) else f"{k} {name}", *(f"{v:,}" for v in row), f"{sum(row):,}")
    unl = [int((ds.labels[ds.splits[s]] < 0).sum()) for s in splits]
    if any(unl):
        t.add_row("unlabeled", *(f"{v:,}" for v in unl), f"{sum(unl):,}")
    sizes = [len(ds.splits[s]) for s in splits]
    t.add_row("all", *(f"{v:,}" for v in sizes), f"{sum(sizes):,}", style="bold")
    console.print(t)
    console.print(f"mean {tuple(round(m, 4) for m in ds.mean)}  std {tuple(round(v, 4) for v in ds.std)} "
                  "(train split)")
    if ds.skipped:
        console.print(f"[yellow]skipped {len(ds.skipped):,}:[/yellow]")
        for line in ds.skipped[:20]:
            console.print(f"  {line}", markup=False)
        if len(ds.skipped) > 20:
            console.print(f"  ... and {len(ds.skipped) - 20:,} more")
    else:
        console.print("skipped: 0")
    path = sample_grid(ds, Path(args.out) / "samples.png", per_class=args.per_class, seed=args.seed)
    console.print(f"sample grid: {path}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from .evaluate.tta import TTA_MODES

    p = _parser_for(sub, "predict", "a submission file for a test set: one row per input, ensembles and TTA",
                    "cnnlens predict runs/fer runs/fer-s1 --data fer2013:data/test.csv --out predictions.csv "
                    "--tta flip\n  cnnlens predict runs/digits --data digits --split val --out val.csv "
                    "--probs")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="one run, or several for an ensemble (mean of probabilities)")
    p.add_argument("--data", metavar="SPEC", default=None,
                   help=f"dataset: {_data_choices()}, or a bare path; default: the first run's training data")
    p.add_argument("--split", default="test", help="split to predict (default test)")
    p.add_argument("--out", required=True, metavar="CSV", help="the predictions file to write")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: average the softmax over flipped / ten-crop views")
    p.add_argument("--probs", action="store_true", help="add one probability column per class")
    p.add_argument("--label", choices=["index", "name"], default="index",
                   help="write the predicted class index (default, the course's Kaggle form) or name")
    p.add_argument("--columns", default=None, metavar="ID,LABEL",
                   help="names of the two first columns (default id,label or file,label), e.g. Id,Category")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip unreadable rows/files and list them in OUT_STEM.skipped.csv")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")


def _run_predict(args: argparse.Namespace) -> int:
    import torch

    from .predict import load_data, predict, skipped_path
    from .train import load_run

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs = [load_run(r, device=device) for r in args.runs]
    with Progress("decoding") as cb:
        ds = load_data(args.data, runs, skip_bad_rows=args.skip_bad_rows, progress=cb)
    with Progress("predicting") as cb:
        pred = predict(runs, ds, args.split, tta=args.tta, batch_size=args.batch_size, progress=cb,
                       out=args.out, probs=args.probs, labels=args.label, skip_bad_rows=args.skip_bad_rows,
                       columns=args.columns.split(",") if args.columns else None)
    what = f"{len(runs)}-run ensemble" if len(runs) > 1 else "1 run"
    console.print(f"wrote {len(pred):,} rows ({what}, tta {pred.tta}) to {args.out}", markup=False)
    if pred.skipped:
        console.print(f"[yellow]skipped {len(pred.skipped):,} input(s)[/yellow], listed in "
                      f"{skipped_path(args.out)}")
    elif args.skip_bad_rows:
        console.print(f"skipped 0 inputs ({skipped_path(args.out)} is empty)")
    if pred.accuracy is not None:
        t = Table("run", "accuracy", title=f"{pred.split} split, {len(pred):,} images, tta {pred.tta}")
        for r, a in zip(pred.runs, pred.member_accuracy or []):
            t.add_row(r, f"{100 * a:.2f}%")
        if len(runs) > 1:
            t.add_row("ensemble (mean of probabilities)", f"{100 * pred.accuracy:.2f}%", style="bold")
        console.print(t)
        console.print("the numbers are written to RUN/eval/ of each run")
    return 0


def _add_filters(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "filters", "activation maximization: what each filter of a layer responds to, "
                    "beside its top dataset patches -> RUN/featureviz/",
                    "cnnlens filters runs/demo --layer cnn.4 --channels 0-15")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--layer", required=True, help="layer name (e.g. cnn.4) or index into the leaf layers")
    p.add_argument("--channels", help="filters to show, e.g. 0,3,7 or 0-15 (default: all)")
    p.add_argument("--steps", type=int, default=256, help="optimization steps (default 256)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--examples", type=int, default=4, help="dataset patches per filter (default 4)")
    p.add_argument("--seed", type=int, default=0)


def _run_filters(args: argparse.Namespace) -> int:
    from .featureviz.runs import filters_run, parse_channels
    from .rundir import save_viz
    from .train import load_run

    run = load_run(args.run)
    with Progress("rendering filters") as cb:
        info = save_viz(run.path, filters_run(run, args.layer, parse_channels(args.channels), steps=args.steps, lr=args.lr,
                           seed=args.seed, examples=args.examples, progress=cb))
    console.print(f"{len(info['channels'])} filters of {info['layer']}: "
                  f"{info['reached_dataset_max']:.0%} reach their dataset maximum")
    console.print(f"wrote {run.path / 'featureviz' / info['figure']}")
    return 0


def _add_featuremaps(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "featuremaps", "every filter's output of a layer for one image -> RUN/featureviz/",
                    "cnnlens featuremaps runs/demo --layer cnn.0 --image 3")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--layer", required=True, help="layer name (e.g. cnn.0) or index into the leaf layers")
    p.add_argument("--image", type=int, required=True, help="dataset index of the image")


def _run_featuremaps(args: argparse.Namespace) -> int:
    from .featureviz.runs import featuremaps_run
    from .rundir import save_viz
    from .train import load_run

    run = load_run(args.run)
    info = save_viz(run.path, featuremaps_run(run, args.layer, args.image))
    fig = run.path / "featureviz" / info["figure"]
    console.print(f"wrote {fig} ({info['shape'][0]} maps of {info['layer']})")
    return 0


def _add_dream(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "dream", "Deep Dream on an image: snapshots strip + animated GIF -> RUN/featureviz/",
                    "cnnlens dream runs/demo --image 5 --layer cnn.8 --channel 3 --lr 12 "
                    "--weight-decay 1e-4 --every 10")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--image", required=True, help="dataset index or an image file")
    p.add_argument("--layer", required=True, help="layer name or index into the leaf layers (e.g. 34)")
    p.add_argument("--channel", type=int, help="filter to amplify (default: the whole layer)")
    p.add_argument("--octaves", type=int, default=3, help="number of scales (default 3)")
    p.add_argument("--octave-scale", type=float, default=1.4, help="ratio between scales (default 1.4)")
    p.add_argument("--steps", type=int, default=20, help="steps per octave (default 20)")
    p.add_argument("--every", type=int, default=10, help="snapshot every N steps (default 10)")
    p.add_argument("--lr", type=float, default=4.0, help="mean step in grey levels 0-255 (default 4)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="pull towards the dataset mean (default 0)")
    p.add_argument("--seed", type=int, default=0)


def _run_dream(args: argparse.Namespace) -> int:
    from .featureviz.runs import dream_run
    from .rundir import save_viz
    from .train import load_run

    run = load_run(args.run)
    with Progress("dreaming") as cb:
        info = save_viz(run.path, dream_run(run, args.image, args.layer, args.channel, steps=args.steps,
                                            every=args.every, octaves=args.octaves,
                                            octave_scale=args.octave_scale, lr=args.lr,
                                            weight_decay=args.weight_decay, seed=args.seed, progress=cb))
    obj = ", ".join(f"{v:.3g}" for v in info["octave_objective"])
    console.print(f"objective {info['initial_objective']:.3g} -> {obj} (per octave)")
    console.print(f"wrote {', '.join(str(run.path / 'featureviz' / f) for f in info['files'])}")
    return 0


def _add_trust(sub: argparse._SubParsersAction) -> None:
    from .explain import METHODS
    from .metrics import TRUST_METRICS

    p = _parser_for(sub, "trust", "trust scores per explanation method -> RUN/trust/scores.json and a table",
                    "cnnlens trust runs/demo --methods saliency,gradcam --n-images 32")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated (default: all registered), from: {', '.join(METHODS.names())}; "
                        "the controls are always scored")
    p.add_argument("--fast", action="store_true",
                   help="quick protocol: 16 images, 20 deletion steps, no per-layer curve, "
                        "methods of cost <= 64 "
                        "(gradient and CAM; flags override)")
    p.add_argument("--n-images", type=int, default=None,
                   help="test images scored (default 32; 16 with --fast)")
    p.add_argument("--split", default="test", help="split the images are drawn from (default test)")
    p.add_argument("--steps", type=int, default=None,
                   help="deletion/insertion steps (default 50; 20 with --fast)")
    p.add_argument("--substrate", default="mean", choices=["mean", "blur", "zeros"],
                   help="what deleted pixels become (default mean)")
    p.add_argument("--independent", action="store_true", help="also randomize one layer at a time (slower)")
    p.add_argument("--max-cost", type=int, default=None,
                   help="with the default methods, leave out those costing more passes per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devices", type=_devices_arg,
                   help="split the images across N devices/processes (Lightning), or 'auto'")
    p.add_argument("--strategy", help="e.g. ddp (with --devices > 1)")
    p.add_argument("--accelerator", help="where the processes run: auto, cpu, gpu, ... (with --devices)")
    p.add_argument("--num-nodes", type=int, help="machines (with --devices; e.g. under SLURM)")
    p.epilog += "\ntests: " + "; ".join(f"{e.name}: {e.description}" for e in TRUST_METRICS.entries())


def _run_trust(args: argparse.Namespace) -> int:
    from .metrics import FAST
    from .pipeline import trust_run
    from .train import load_run

    preset = dict(FAST) if args.fast else {"n_images": 32, "steps": 50, "cascade": True}
    for k in ("n_images", "steps", "max_cost"):
        if getattr(args, k) is not None:
            preset[k] = getattr(args, k)
    run = load_run(args.run)
    with Progress("scoring methods") as cb:
        rep = trust_run(run, _names(args.methods), progress=cb, split=args.split, seed=args.seed,
                        substrate=args.substrate, independent=args.independent, devices=args.devices,
                        strategy=args.strategy, accelerator=args.accelerator, num_nodes=args.num_nodes, **preset)
    if rep is None:  # not global rank 0: rank 0 gathers, writes and prints
        return 0
    header, rows = rep.table()
    t = Table(*header[:-1], title=f"trust: {rep.n_images} {args.split} images, true class explained "
                                   f"(model accuracy on them {100 * rep.accuracy:.0f}%)")
    for r in rows:
        t.add_row(*[f"[red]{v}[/red]" if v == "FAIL" else v for v in r[:-1]])
    console.print(t)
    for r in rows:
        console.print(r[-1])
    for m, why in rep.skipped:
        console.print(f"[yellow]skipped {m}[/yellow]: {why}")
    console.print(f"wrote {run.path / 'trust' / 'scores.json'} ({rep.seconds:.1f} s)")
    return 0


# Commands, in the order `cnnlens --help` lists them.
COMMANDS: list[tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]] = [
    (_add_demo, _run_demo),
    (_add_run, _run_run),
    (_add_train, _run_train),
    (_add_evaluate, _run_evaluate),
    (_add_explain, _run_explain),
    (_add_filters, _run_filters), (_add_featuremaps, _run_featuremaps), (_add_dream, _run_dream),
    (_add_report, _run_report),
    (_add_compare, _run_compare),
    (_add_trust, _run_trust),
    (_add_methods, _run_methods),
    (_add_models, _run_models),
    (_add_data, _run_data),
    (_add_predict, _run_predict),
]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="cnnlens", description="Train an image classifier and explain it, end to end.",
        epilog=_example("cnnlens demo --out runs/demo"), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnnlens {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    for add, run in COMMANDS:
        before = set(sub.choices)
        add(sub)
        for name in set(sub.choices) - before:
            runners[name] = run
    return parser, runners


def main(argv: list[str] | None = None) -> int:
    parser, runners = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed the usage error (exit 2) or --help (exit 0)
        return e.code if isinstance(e.code, int) else 2
    if not args.command:
        parser.print_help()
        return 2
    _setup_logging(0 if args.quiet else args.verbose)
    if args.quiet:
        logging.getLogger("cnnlens").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    try:
        rc = runners[args.command](args)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, OSError) as e:
        err_console.print(f"[red]error:[/red] {e}")
        return 2
    log.debug("%s took %.1f s", args.command, time.perf_counter() - t0)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
