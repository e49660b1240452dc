"""The ``cnnlens`` command line. The only module that writes to the console.

Each command is a pair: ``_add_<name>(sub)`` declares its arguments (choices come from the
registries) and ``_run_<name>(args)`` does the work by calling the library. Add a command by adding
both and listing it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from .console import (ArgumentParser, Progress, console, debug_requested, err_console, print_bug,
                      print_error, print_table, safe, setup_logging)
from .errors import CnnlensError

if TYPE_CHECKING:
    from .explain.explore import ExploreConfig

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
    setup_logging(logging.DEBUG if verbose > 1 else logging.INFO)
    _quiet_third_party()


def _example(text: str) -> str:
    return f"example:\n  {text}"


def _parser_for(sub: argparse._SubParsersAction, name: str, help_: str, example: str
                ) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_, description=help_, epilog=_example(example),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_lock_arg(p: argparse.ArgumentParser) -> None:
    """``--break-lock`` for a command that writes into a run directory (docs/robustness.md)."""
    p.add_argument("--break-lock", action="store_true",
                   help="take over the run's write lock when it was left by a process on another host "
                        "(a lock of a process gone on this host is taken over anyway)")


def _written_runs(args: argparse.Namespace) -> list[Path]:
    """The run directories a command writes into, locked around it (``RUN/.cnnlens.lock``).

    train/run/demo lock inside :func:`cnnlens.workflow.train_run` / :func:`cnnlens.run` (their folder
    is resolved there); predict locks when it writes its numbers into the runs. ``explain --all
    --out-dir DIR`` locks RUN.
    """
    cmd = args.command
    if cmd in ("evaluate", "explain", "filters", "featuremaps", "dream", "trust", "report", "explore"):
        return [Path(args.run)]
    if cmd == "compare" and not args.out:
        return [Path(args.runs[0])]
    return []


@contextlib.contextmanager
def _locked(args: argparse.Namespace):
    from .runlock import run_locks

    with run_locks(_written_runs(args), break_lock=getattr(args, "break_lock", False), create=False):
        yield


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
        t.add_row(safe(e.name), safe(e.description))
    for pfx in METHODS.prefixes():
        t.add_row(safe(f"{pfx}:<Name>"), f"any {safe(pfx)} attribution class, through the same contract")
    print_table(t)
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
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, read as YAML, e.g. hidden=1800,1050 or io_list=[[1,28],[28,56]] (repeatable)")
    _add_trust_code(p)
    p.add_argument("--out", default=None, help="also write summary.json and summary.csv into this folder")
    p.add_argument("--tensorboard", default=None, metavar="LOGDIR",
                   help="also export the model graph to TensorBoard in LOGDIR (needs tensorboard)")


def _run_models(args: argparse.Namespace) -> int:
    from .models import MODELS

    if args.action == "list":
        t = Table("model", "architecture", title="models")
        for e in MODELS.entries():
            t.add_row(safe(e.name), safe(e.description))
        for pfx in MODELS.prefixes():
            t.add_row(safe(f"{pfx}:<name>"),
                      f"any {safe(pfx)} classification architecture, adapted to channels and classes")
        for form in MODELS.resolver_forms():
            t.add_row(safe(form), "your own model")
        print_table(t)
        return 0
    if not args.name:
        raise CnnlensError("models summary needs a model NAME, e.g. `cnnlens models summary compact`")
    from .models import create_model
    from .models.summary import summarize

    c, h, w = _parse_chw(args.input)
    kw = _model_options(args.model_option)
    if args.weights:
        kw["weights"] = args.weights
    m = create_model(args.name, in_channels=c, num_classes=args.classes, input_size=(h, w),
                     trust_code=args.trust_code, **kw)
    s = summarize(m, (c, h, w))
    t = Table("Layer (type)", "Output Shape", "Param #", "Trainable",
              title=f"{safe(args.name)} ({safe(s.model)}), input {c:d}x{h:d}x{w:d}, {args.classes:d} classes")
    for r in s.rows:
        shape = "-" if r.output_shape is None else "(None, " + ", ".join(map(str, r.output_shape)) + ")"
        t.add_row(f"{safe(r.name)} ({safe(r.type)})", safe(shape), f"{r.params:,}",
                  "" if r.params == 0 else "yes" if r.trainable else f"{r.trainable_params:,}")
    print_table(t)
    console.print(f"Total params: {s.total:,}\nTrainable params: {s.trainable:,}\n"
                  f"Non-trainable params: {s.non_trainable:,}\n"
                  f"Buffers (BatchNorm running statistics, not parameters): {s.buffers:,}\n"
                  f"Multiply-accumulates per image (Conv2d + Linear): {s.macs:,}")
    if args.out:
        out = Path(args.out)
        s.to_json(out / "summary.json")
        s.to_csv(out / "summary.csv")
        console.print(f"wrote {safe(out / 'summary.json')} and {safe(out / 'summary.csv')}")
    if args.tensorboard:
        from .models.tensorboard import export_graph

        try:
            path = export_graph(m, (c, h, w), args.tensorboard)
        except ImportError as e:
            print_error(e)
            return 2
        console.print(f"graph written to {safe(path)}; view it with: "
                      f"tensorboard --logdir {safe(args.tensorboard)}")
    return 0


def _parse_chw(s: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise CnnlensError(f"--input must look like CxHxW, e.g. 1x48x48; got {s!r}") from None
    return c, h, w



def _add_trust_code(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-code", action="store_true",
                   help="allow running the code of a model that is a user file (FILE.py:Class or TorchScript); "
                   "needed each time, since a run directory is data (docs/robustness.md)")


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


def _target_arg(v: str) -> str:
    """``--target``: ``pred``, ``label`` or a whole class index (``2.5`` or ``true`` is refused)."""
    if v in ("pred", "label") or v.lstrip("-").isdigit():
        return v
    raise argparse.ArgumentTypeError(f"takes pred, label or a class index (a whole number); got {v!r}")


def _finite_float(v: str) -> float:
    """A float option: a finite number (``inf`` and ``nan`` are refused, naming the flag)."""
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number; got {v!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"takes a finite number; got {v!r}")
    return x


def _add_train_args(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    from .config import OPTIMIZERS, RECIPES, SCHEDULERS

    p.add_argument("--data", required=data_required, metavar="SPEC",
                   help=f"dataset: {_data_choices()}, or a bare path (recognized by its contents)")
    p.add_argument("--model", default=None, metavar="NAME", help="model name (`cnnlens models list`); default compact")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, read as YAML, e.g. hidden=1800,1050 for mlp or io_list=[[1,28],[28,56]] "
                   "(repeatable)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="initial weights (.safetensors, or a torch.save state dict read with weights_only=True)")
    p.add_argument("--pretrained", action="store_true",
                   help="timm:/torchvision: models: download their default pretrained weights (network); "
                   "offline, pass --weights FILE")
    p.add_argument("--normalize", default=None, metavar="dataset|pretrained|none|MEAN,STD",
                   help="the model's input normalization (default: pretrained with --pretrained, else dataset)")
    _add_trust_code(p)
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/<data>-<model>)")
    p.add_argument("--config", metavar="FILE", help="YAML with data/model/train sections; flags override it")
    p.add_argument("--recipe", choices=list(RECIPES),
                   help="a training recipe (docs/training.md): fer2013, food11 (published), finetune (pretrained "
                   "weights); --config and flags override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=_finite_float)
    p.add_argument("--seed", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--scheduler", choices=SCHEDULERS)
    p.add_argument("--weight-decay", type=_finite_float)
    p.add_argument("--label-smoothing", type=_finite_float)
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    p.add_argument("--grad-clip", type=_finite_float)
    p.add_argument("--val-fraction", type=_finite_float, help="validation share where the data has no val split")
    p.add_argument("--image-size", type=int, help="resize images on load (Food-11, folders)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows/files and list them")
    p.add_argument("--skip-nonfinite", action="store_true",
                   help="skip batches whose loss is NaN/inf (counted in history.csv) instead of stopping")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.ckpt")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--accelerator", help="auto (default), cpu, gpu, ...")
    p.add_argument("--devices", type=_devices_arg, help="number of devices or 'auto'")
    p.add_argument("--strategy", help="e.g. ddp")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed")
    p.add_argument("--tensorboard", action="store_true", help="also export the model graph to RUN/tensorboard")
    _add_lock_arg(p)


def _model_options(pairs: list[str]) -> dict[str, object]:
    from .config import parse_model_options

    return parse_model_options(pairs)


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
        num_nodes=args.num_nodes, precision=args.precision, tensorboard=getattr(args, "tensorboard", False),
        weights=args.weights, trust_code=args.trust_code, skip_nonfinite=args.skip_nonfinite or None,
        normalize=getattr(args, "normalize", None), pretrained=getattr(args, "pretrained", False),
        break_lock=getattr(args, "break_lock", False))


def _train_from_args(args: argparse.Namespace, progress: bool = True):
    """Train as the flags say (:func:`cnnlens.workflow.train_run`, which holds the run's write lock)."""
    from .workflow import train_run

    run = train_run(**_train_kwargs(args, progress))
    if run is not None:
        _print_trained(run)
    return run


def _print_trained(run) -> None:
    best = run.meta["best_val_acc"]
    console.print(f"trained [b]{safe(run.config.model.name)}[/b] ({run.meta['params']:,} parameters): "
                  "best val accuracy "
                  f"{100 * best:.2f}% at epoch {run.meta['best_epoch']:d} -> {safe(run.path)}")


def _notify(event: str, value: object) -> None:
    """Print what :func:`cnnlens.run` reports as each step finishes."""
    if event == "trained":
        _print_trained(value)
    elif event == "evaluated":
        _print_eval(value)
    elif event == "compared":
        _print_compare(value)
    elif event == "submission":
        console.print(f"submission file (unlabeled test split): {safe(value)}")
    elif event == "report":
        console.print(f"report: [b]{safe(value)}[/b]")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "train", "train a model on a dataset (Lightning); writes a run directory",
                    "cnnlens train --data fer2013:data/fer2013.csv --model compact --epochs 30 --out runs/fer")
    _add_train_args(p)


def _run_train(args: argparse.Namespace) -> int:
    _train_from_args(args)
    return 0


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "import", "a model trained elsewhere -> a run directory (no training); then evaluate, "
                    "explain, trust, report and predict work on it",
                    "cnnlens import net.py:Net --data fer2013:data/train.csv --weights net.pt --normalize none "
                    "--trust-code --out runs/theirs\n  cnnlens import torchvision:resnet18 --data food11:data/food11 "
                    "--weights resnet.safetensors --image-size 128 --out runs/resnet")
    p.add_argument("model", metavar="MODEL", help="a model name (`cnnlens models list`), torchvision:<name>, "
                   "FILE.py:ClassName or a TorchScript file")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help=f"the data to evaluate and explain it on: {_data_choices()}, or a bare path")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help=".safetensors, or a torch.save state dict (read with weights_only=True), loaded strictly")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="argument of the model's __init__, read as YAML, e.g. io_list=[[1,28],[28,56]] (repeatable)")
    p.add_argument("--normalize", default="dataset", metavar="dataset|pretrained|none|MEAN,STD",
                   help="the input normalization the model was trained with: dataset (train-split statistics, "
                   "default), pretrained (what timm:/torchvision: pretrained weights expect), none (raw pixels "
                   "in [0,1]), or MEAN,STD in [0,1] units (2 numbers, or C means "
                   "then C stds)")
    p.add_argument("--classes", default=None, metavar="A,B,...",
                   help="names of the model's outputs in order (default: the dataset's classes)")
    p.add_argument("--out", required=True, metavar="DIR", help="the run directory to write")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument("--val-fraction", type=_finite_float, help="validation share where the data has no val split")
    p.add_argument("--image-size", type=int, help="resize images on load (Food-11, folders)")
    p.add_argument("--seed", type=int, help="seed of the data split (default 0)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows/files and list them")
    _add_trust_code(p)


def _run_import(args: argparse.Namespace) -> int:
    from .importing import import_model

    data_opts = {k: v for k, v in (("val_fraction", args.val_fraction), ("image_size", args.image_size),
                                   ("seed", args.seed), ("skip_bad_rows", args.skip_bad_rows or None))
                 if v is not None}
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    run = import_model(args.model, args.data, out=args.out, weights=args.weights,
                       model_options=_model_options(args.model_option), normalize=args.normalize,
                       classes=classes, trust_code=args.trust_code, force=args.force, **data_opts)
    console.print(f"imported {safe(run.meta['model']['name'])} ({run.meta['params']:,} parameters, "
                  f"{len(run.classes):d} classes, normalization {safe(run.normalization)}) -> {safe(run.path)}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "evaluate", "accuracy, per-class metrics, confusion matrix -> RUN/eval/metrics.json",
                    "cnnlens evaluate runs/demo")
    p.add_argument("run", metavar="RUN")
    _add_trust_code(p)
    p.add_argument("--split", default=None, help="labeled split to evaluate (default: test if it is labeled, "
                   "else the labeled hold-out val)")
    p.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none",
                   help="test-time augmentation: average the softmax over flipped / ten-crop views")
    _add_lock_arg(p)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .pipeline import evaluate_run
    from .train import load_run

    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    with Progress("evaluating") as cb:
        res = evaluate_run(run, args.split, progress=cb, tta=args.tta)
    _print_eval(res)
    console.print(f"wrote {safe(run.path / 'eval' / 'metrics.json')}")
    return 0


def _print_eval(res) -> None:
    t = Table("class", "precision", "recall", "F1", "support",
              title=f"{safe(res.split)}: accuracy {100 * res.accuracy:.2f}%")
    for r in res.per_class():
        t.add_row(safe(r["class"]), f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
                  f"{r['support']:d}")
    print_table(t)
    pairs = res.confused_pairs(5)
    if pairs:
        console.print("most confused: " + "; ".join(f"{safe(p['true'])}→{safe(p['pred'])} ({p['count']:d})"
                                                    for p in pairs))


def _add_explain(sub: argparse._SubParsersAction) -> None:
    from .explain import METHODS

    p = _parser_for(sub, "explain", "attribution maps for chosen images -> RUN/explain/ (.npy and figures)",
                    "cnnlens explain runs/demo --methods saliency,gradcam --per-class 2")
    p.add_argument("run", metavar="RUN")
    _add_trust_code(p)
    p.add_argument("--methods", default="saliency,gradcam",
                   help=f"comma-separated, from: {', '.join(METHODS.names())}")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--per-class", type=int, default=1, help="correctly classified images per class of --split")
    g.add_argument("--images", help="comma-separated dataset indices, e.g. 3,17,42")
    g.add_argument("--all", action="store_true", help="every image of --split, streamed to --out-dir in chunks "
                   "(bounded memory; run the same command again to resume)")
    p.add_argument("--target", default="pred", type=_target_arg,
                   help="pred (default), label, or a class index K")
    p.add_argument("--layer", default=None, help="layer for CAM methods (default: the last Conv2d, or the residual block around it)")
    p.add_argument("--split", default=None, help="split of --per-class (default: test if it is labeled, else "
                   "the labeled hold-out val) and of --all (default test)")
    p.add_argument("--out-dir", default=None, metavar="DIR", help="folder for --all (default RUN/explain/all-SPLIT)")
    p.add_argument("--chunk-size", type=int, default=256, help="images per chunk for --all (default 256)")
    p.add_argument("--restart", action="store_true", help="with --all: discard what --out-dir holds and start again")
    p.add_argument("--force-guided", action="store_true", help="run guided_backprop, deconvnet and guided_gradcam "
                   "on a model that applies activations functionally (F.relu): a mixed result, with a warning")
    _add_lock_arg(p)


def _run_explain(args: argparse.Namespace) -> int:
    from .pipeline import explain_run
    from .train import load_run

    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.all:
        from .explain.stream import explain_stream

        ds = run.dataset
        args.split = args.split or "test"
        out = Path(args.out_dir) if args.out_dir else run.path / "explain" / f"all-{args.split}"
        target: object = int(args.target) if args.target.lstrip("-").isdigit() else args.target
        with Progress(f"explaining {args.split}") as cb:
            res = explain_stream(run.model, ds.images, run.mean, run.std, methods, out, target=target,
                                 labels=ds.labels, indices=ds.indices(args.split), chunk_size=args.chunk_size,
                                 overwrite=args.restart, progress=cb, layer=args.layer,
                                 method_options=_forced(methods, args.force_guided))
        console.print(f"explained {res.manifest['settings']['n']:,} {safe(args.split)} images with "
                      f"{safe(', '.join(methods))} in {res.manifest['chunks']:d} chunks -> {safe(out)} "
                      "(read it with cnnlens.explain.read_stream)")
        return 0
    indices = None
    if args.images:
        try:
            indices = [int(v) for v in args.images.split(",") if v.strip()]
        except ValueError:
            raise CnnlensError(f"--images must be comma-separated integers; got {args.images!r}") from None
    with Progress("explaining") as cb:
        index = explain_run(run, methods, indices=indices, per_class=args.per_class, target=args.target,
                            progress=cb, layer=args.layer, split=args.split,
                            method_options=_forced(methods, args.force_guided))
    from .data.splits import describe_splits

    console.print(f"explained {len(index['indices']):d} {safe(describe_splits(index['splits']))} image(s)")
    console.print(f"wrote maps and {safe(run.path / 'explain' / 'grid.png')}")
    return 0


def _forced(methods: list[str], force: bool) -> dict[str, dict[str, bool]] | None:
    """``--force-guided``: ``force=True`` for each chosen method that takes it (the guided ones)."""
    from .explain import METHODS

    if not force:
        return None
    return {m: {"force": True} for m in methods if "force" in getattr(METHODS.get(m), "option_names", ())}


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "report", "write RUN/report/index.html from what the run holds (redraws only)",
                    "cnnlens report runs/demo --pdf")
    p.add_argument("run", metavar="RUN")
    _add_trust_code(p)
    p.add_argument("--pdf", action="store_true", help="also print the page to RUN/report/report.pdf with headless "
                   "Chromium (Debian: apt-get install chromium)")
    p.add_argument("--chromium", default=None, metavar="PATH",
                   help="Chromium executable for --pdf (default: $CNNLENS_CHROMIUM, else chromium on PATH)")
    p.add_argument("--split", default=None, help="split of the 'Where it fails' section; evaluated now if the run "
                   "holds no evaluation of it (default: the run's own evaluation)")
    _add_lock_arg(p)


def _run_report(args: argparse.Namespace) -> int:
    from .workflow import report_run

    page = report_run(args.run, split=args.split, trust_code=args.trust_code)
    console.print(f"report: {safe(page)}")
    if args.pdf:
        from .report.browser import print_pdf

        pdf = print_pdf(page, page.with_name("report.pdf"), executable=args.chromium)
        console.print(f"pdf: {safe(pdf)}")
    return 0


def _device():
    """Where a command runs a loaded run's model: CUDA when present, else the CPU
    ($CNNLENS_DEVICE overrides)."""
    from .device import default_device

    return default_device()


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "demo", "the whole pipeline on the bundled digits: train, evaluate, explain, visualize, "
                    "trust, report", "cnnlens demo --out runs/demo --fast")
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--fast", action="store_true", help="a short run (under a minute) that still writes every "
                   "artifact: 2 epochs and every analysis stage at reduced size")
    _add_explore_args(p)
    _add_lock_arg(p)


def _run_demo(args: argparse.Namespace) -> int:
    from .workflow import run

    run("digits", "compact", out=args.out, force=True, epochs=2 if args.fast else 12, seed=0,
        sizes="fast" if args.fast else "demo", progress=True, break_lock=args.break_lock,
        progress_for=Progress, notify=_notify, explore=_explore_from_args(args))
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    from .pipeline import SIZES

    p = _parser_for(sub, "run", "train -> evaluate -> explain -> visualize -> trust -> report, in one command",
                    "cnnlens run --data digits --model compact --baseline mlp --out runs/digits")
    _add_train_args(p)
    p.add_argument("--methods", default=None, help="gradient/CAM methods shown side by side per class "
                   f"(comma-separated; default {','.join(SIZES['run'].methods)})")
    p.add_argument("--per-class", type=int, default=None, help="correctly classified images per class "
                   "to explain (default 1)")
    p.add_argument("--split", default=None, help="labeled split that evaluation, explanations, trust and the "
                   "report use (default: test if it is labeled, else the labeled hold-out val); an unlabeled "
                   "test split also gets RUN/submission.csv")
    p.add_argument("--size", choices=list(SIZES), default="run",
                   help="how much work the analysis stages do (fast: a quick look; run: the default)")
    p.add_argument("--skip", default=None, metavar="STAGES",
                   help="comma-separated stages to leave out: explain, confused, lime, explore, featureviz, trust")
    p.add_argument("--baseline", choices=["mlp"], help="also train the parameter-matched DNN into RUN/baseline "
                   "and compare (RUN/compare)")
    _add_explore_args(p)


def _run_run(args: argparse.Namespace) -> int:
    from .workflow import run

    run(**_train_kwargs(args), sizes=args.size, methods=_names(args.methods), per_class=args.per_class,
        skip=_names(args.skip) or (), baseline=args.baseline, split=args.split, progress_for=Progress,
        notify=_notify, explore=_explore_from_args(args))
    return 0


def _names(csv: str | None) -> list[str] | None:
    """A comma-separated flag as a list (``None`` when absent)."""
    return None if csv is None else [v.strip() for v in csv.split(",") if v.strip()]


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "compare", "compare runs side by side (e.g. the CNN against its parameter-matched DNN)",
                    "cnnlens compare runs/cnn runs/dnn --out runs/compare")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", default=None, metavar="DIR", help="default: FIRST_RUN/compare")
    _add_trust_code(p)
    _add_lock_arg(p)


def _run_compare(args: argparse.Namespace) -> int:
    from .report.compare import compare_runs

    out = args.out or str(Path(args.runs[0]) / "compare")
    _print_compare(compare_runs(args.runs, out, trust_code=args.trust_code))
    console.print(f"wrote {safe(Path(out) / 'index.html')}")
    return 0


def _print_compare(res: dict) -> None:
    split = res["runs"][0].get("test_split", "test") if res["runs"] else "test"
    t = Table("run", "parameters", "ratio", "best val acc", f"{safe(split)} acc", title="comparison")
    for r in res["runs"]:
        t.add_row(safe(r["name"]), f"{r['params']:,}", f"{r['params_ratio']:.3f}",
                  f"{100 * r['best_val_acc']:.2f}%",
                  f"{100 * r['test_acc']:.2f}%")
    print_table(t)
    for line in res.get("findings", []):
        console.print(safe(line))


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
    p.add_argument("--val-fraction", type=_finite_float, default=0.1, help="validation fraction when cut (default 0.1)")
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
    console.print(f"{safe(ds.name)}: {len(ds):,} images {ds.channels:d}x{ds.size[0]:d}x{ds.size[1]:d} from "
                  f"{safe(ds.source)}")
    t = Table("class", *[safe(s) for s in splits], "total", title="images per class and split")
    counts = ds.counts()
    for k, name in enumerate(ds.classes):
        row = [counts[s][k] for s in splits]
        t.add_row(safe(name) if name == str(k) else f"{k:d} {safe(name)}", *(f"{v:,}" for v in row),
                  f"{sum(row):,}")
    unl = [int((ds.labels[ds.splits[s]] < 0).sum()) for s in splits]
    if any(unl):
        t.add_row("unlabeled", *(f"{v:,}" for v in unl), f"{sum(unl):,}")
    sizes = [len(ds.splits[s]) for s in splits]
    t.add_row("all", *(f"{v:,}" for v in sizes), f"{sum(sizes):,}", style="bold")
    print_table(t)
    console.print(f"mean {safe(tuple(round(m, 4) for m in ds.mean))}  "
                  f"std {safe(tuple(round(v, 4) for v in ds.std))} "
                  "(train split)")
    if ds.skipped:
        console.print(f"[yellow]skipped {len(ds.skipped):,}:[/yellow]")
        for line in ds.skipped[:20]:
            console.print(f"  {safe(line)}")
        if len(ds.skipped) > 20:
            console.print(f"  ... and {len(ds.skipped) - 20:,} more")
    else:
        console.print("skipped: 0")
    path = sample_grid(ds, Path(args.out) / "samples.png", per_class=args.per_class, seed=args.seed)
    console.print(f"sample grid: {safe(path)}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from .evaluate.tta import TTA_MODES

    p = _parser_for(sub, "predict", "a submission file for a test set: one row per input, ensembles and TTA",
                    "cnnlens predict runs/fer runs/fer-s1 --data fer2013:data/test.csv --out predictions.csv "
                    "--tta flip\n  cnnlens predict runs/digits --data digits --split val --out val.csv "
                    "--probs")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="one run, or several for an ensemble (mean of probabilities)")
    _add_trust_code(p)
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
    _add_lock_arg(p)


def _run_predict(args: argparse.Namespace) -> int:
    import torch

    from .predict import load_data, predict, skipped_path
    from .train import load_run

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs = [load_run(r, device=device, trust_code=args.trust_code) for r in args.runs]
    with Progress("decoding") as cb:
        ds = load_data(args.data, runs, skip_bad_rows=args.skip_bad_rows, progress=cb)
    with Progress("predicting") as cb:
        pred = predict(runs, ds, args.split, tta=args.tta, batch_size=args.batch_size, progress=cb,
                       out=args.out, probs=args.probs, labels=args.label, skip_bad_rows=args.skip_bad_rows,
                       columns=args.columns.split(",") if args.columns else None, write_eval=False)
    if pred.labeled:  # its numbers go into each run's eval/, under the run's write lock
        from .predict import write_eval_json
        from .runlock import run_locks

        with run_locks([r.path for r in runs], break_lock=args.break_lock, create=False):
            write_eval_json(pred, runs)
    what = f"{len(runs)}-run ensemble" if len(runs) > 1 else "1 run"
    console.print(f"wrote {len(pred):,} rows ({safe(what)}, tta {safe(pred.tta)}) to {safe(args.out)}")
    if pred.skipped:
        console.print(f"[yellow]skipped {len(pred.skipped):,} input(s)[/yellow], listed in "
                      f"{safe(skipped_path(args.out))}")
    elif args.skip_bad_rows:
        console.print(f"skipped 0 inputs ({safe(skipped_path(args.out))} is empty)")
    if pred.accuracy is not None:
        t = Table("run", "accuracy",
                  title=f"{safe(pred.split)} split, {len(pred):,} images, tta {safe(pred.tta)}")
        for r, a in zip(pred.runs, pred.member_accuracy or []):
            t.add_row(safe(r), f"{100 * a:.2f}%")
        if len(runs) > 1:
            t.add_row("ensemble (mean of probabilities)", f"{100 * pred.accuracy:.2f}%", style="bold")
        print_table(t)
        console.print("the numbers are written to RUN/eval/ of each run")
    return 0


def _add_filters(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "filters", "activation maximization: what each filter of a layer responds to, "
                    "beside its top dataset patches -> RUN/featureviz/",
                    "cnnlens filters runs/demo --layer cnn.4 --channels 0-15")
    p.add_argument("run", metavar="RUN")
    _add_trust_code(p)
    p.add_argument("--layer", required=True, help="layer name (e.g. cnn.4) or index into the leaf layers")
    p.add_argument("--channels", help="filters to show, e.g. 0,3,7 or 0-15 (default: all)")
    p.add_argument("--steps", type=int, default=256, help="optimization steps (default 256)")
    p.add_argument("--lr", type=_finite_float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--examples", type=int, default=4, help="dataset patches per filter (default 4)")
    p.add_argument("--seed", type=int, default=0)
    _add_lock_arg(p)


def _run_filters(args: argparse.Namespace) -> int:
    from .featureviz.runs import filters_run, parse_channels
    from .rundir import save_viz
    from .train import load_run

    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    with Progress("rendering filters") as cb:
        info = save_viz(run.path, filters_run(run, args.layer, parse_channels(args.channels), steps=args.steps,
                                              lr=args.lr, seed=args.seed, examples=args.examples, progress=cb))
    console.print(f"{len(info['channels']):d} filters of {safe(info['layer'])}: "
                  f"{info['reached_dataset_max']:.0%} reach their dataset maximum")
    console.print(f"wrote {safe(run.path / 'featureviz' / info['figure'])}")
    return 0


def _add_featuremaps(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "featuremaps", "every filter's output of a layer for one image -> RUN/featureviz/",
                    "cnnlens featuremaps runs/demo --layer cnn.0 --image 3")
    p.add_argument("run", metavar="RUN")
    _add_trust_code(p)
    p.add_argument("--layer", required=True, help="layer name (e.g. cnn.0) or index into the leaf layers")
    p.add_argument("--image", type=int, required=True, help="dataset index of the image")
    _add_lock_arg(p)


def _run_featuremaps(args: argparse.Namespace) -> int:
    from .featureviz.runs import featuremaps_run
    from .rundir import save_viz
    from .train import load_run

    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    info = save_viz(run.path, featuremaps_run(run, args.layer, args.image))
    fig = run.path / "featureviz" / info["figure"]
    console.print(f"wrote {safe(fig)} ({info['shape'][0]:d} maps of {safe(info['layer'])})")
    return 0


def _add_dream(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "dream", "Deep Dream on an image: snapshots strip + animated GIF -> RUN/featureviz/",
                    "cnnlens dream runs/demo --image 5 --layer cnn.8 --channel 3 --lr 12 "
                    "--weight-decay 1e-4 --every 10")
    p.add_argument("run", metavar="RUN")
    _add_trust_code(p)
    p.add_argument("--image", required=True, help="dataset index or an image file")
    p.add_argument("--layer", required=True, help="layer name or index into the leaf layers (e.g. 34)")
    p.add_argument("--channel", type=int, help="filter to amplify (default: the whole layer)")
    p.add_argument("--octaves", type=int, default=3, help="number of scales (default 3)")
    p.add_argument("--octave-scale", type=_finite_float, default=1.4, help="ratio between scales (default 1.4)")
    p.add_argument("--steps", type=int, default=20, help="steps per octave (default 20)")
    p.add_argument("--every", type=int, default=10, help="snapshot every N steps (default 10)")
    p.add_argument("--lr", type=_finite_float, default=4.0, help="mean step in grey levels 0-255 (default 4)")
    p.add_argument("--weight-decay", type=_finite_float, default=0.0,
                   help="pull towards the dataset mean (default 0)")
    p.add_argument("--seed", type=int, default=0)
    _add_lock_arg(p)


def _run_dream(args: argparse.Namespace) -> int:
    from .featureviz.runs import dream_run
    from .rundir import save_viz
    from .train import load_run

    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    with Progress("dreaming") as cb:
        info = save_viz(run.path, dream_run(run, args.image, args.layer, args.channel, steps=args.steps,
                                            every=args.every, octaves=args.octaves,
                                            octave_scale=args.octave_scale, lr=args.lr,
                                            weight_decay=args.weight_decay, seed=args.seed, progress=cb))
    obj = ", ".join(f"{v:.3g}" for v in info["octave_objective"])
    console.print(f"objective {info['initial_objective']:.3g} -> {safe(obj)} (per octave)")
    console.print(f"wrote {safe(', '.join(str(run.path / 'featureviz' / f) for f in info['files']))}")
    return 0


def _add_trust(sub: argparse._SubParsersAction) -> None:
    from .explain import METHODS
    from .metrics import TRUST_METRICS

    p = _parser_for(sub, "trust", "trust scores per explanation method -> RUN/trust/scores.json and a table",
                    "cnnlens trust runs/demo --methods saliency,gradcam --n-images 32")
    p.add_argument("run", metavar="RUN")
    _add_trust_code(p)
    p.add_argument("--methods", default=None,
                   help=f"comma-separated (default: all registered), from: {', '.join(METHODS.names())}; "
                        "the controls are always scored")
    p.add_argument("--fast", action="store_true",
                   help="quick protocol: 16 images, 20 deletion steps, no per-layer curve, "
                        "methods of cost <= 64 "
                        "(gradient and CAM; flags override)")
    p.add_argument("--n-images", type=int, default=None,
                   help="images scored (default 32; 16 with --fast)")
    p.add_argument("--split", default=None, help="labeled split the images are drawn from (default: "
                   "test if it is labeled, else the labeled hold-out val)")
    p.add_argument("--steps", type=int, default=None,
                   help="deletion/insertion steps (default 50; 20 with --fast)")
    from .fill import Fill

    names = [f.value for f in Fill if f is not Fill.SEGMENT_MEAN]
    p.add_argument("--substrate", default=Fill.DATASET_MEAN.value, choices=[*names, "mean", "zeros"],
                   help=f"what deleted pixels become: {', '.join(names)} (default dataset_mean; the older "
                        "'mean' is dataset_mean and 'zeros' is black)")
    p.add_argument("--independent", action="store_true", help="also randomize one layer at a time (slower)")
    p.add_argument("--max-cost", type=int, default=None,
                   help="with the default methods, leave out those costing more passes per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devices", type=_devices_arg,
                   help="split the images across N devices/processes (Lightning), or 'auto'")
    p.add_argument("--strategy", help="e.g. ddp (with --devices > 1)")
    p.add_argument("--accelerator", help="where the processes run: auto, cpu, gpu, ... (with --devices)")
    p.add_argument("--num-nodes", type=int, help="machines (with --devices; e.g. under SLURM)")
    _add_lock_arg(p)
    p.epilog += "\ntests: " + "; ".join(f"{e.name}: {e.description}" for e in TRUST_METRICS.entries())


def _run_trust(args: argparse.Namespace) -> int:
    from .data.splits import label_split
    from .metrics import FAST, TrustConfig
    from .pipeline import trust_run
    from .train import load_run

    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    args.split = label_split(run.dataset, args.split)  # dataset normalized as the model expects (model.json)
    cfg = FAST if args.fast else TrustConfig()
    cfg = cfg.replace(split=args.split, seed=args.seed, substrate=args.substrate, independent=args.independent,
                      **{k: getattr(args, k) for k in ("n_images", "steps", "max_cost")
                         if getattr(args, k) is not None})
    with Progress("scoring methods") as cb:  # trust_run writes RUN/trust/ and draws randomization.png
        rep = trust_run(run, _names(args.methods), cfg.n_images, cfg.steps, progress=cb, split=args.split,
                        config=cfg, devices=args.devices, strategy=args.strategy, accelerator=args.accelerator,
                        num_nodes=args.num_nodes)
    if rep is None:  # not global rank 0: rank 0 gathers, writes and prints
        return 0
    header, rows = rep.table()
    t = Table(*[safe(h) for h in header[:-1]], title=f"trust: {rep.n_images:d} {safe(args.split)} images, "
              f"true class explained (model accuracy on them {100 * rep.accuracy:.0f}%)")
    for r in rows:
        t.add_row(*[f"[red]{safe(v)}[/red]" if v == "FAIL" else safe(v) for v in r[:-1]])
    print_table(t)
    for note in rep.notes:  # one line each, never wrapped (copyable whole)
        console.print(f"[yellow]{safe(note)}[/yellow]")
    for r in rows:
        console.print(safe(r[-1]))
    for m, why in rep.skipped:
        console.print(f"[yellow]skipped {safe(m)}[/yellow]: {safe(why)}")
    console.print(f"wrote {safe(run.path / 'trust' / 'scores.json')} ({rep.seconds:.1f} s)")
    return 0


# ---- explore (issue #21): the report explorer's maps; one block, hooked in by a few lines ----------

def _add_explore_args(p: argparse.ArgumentParser) -> None:
    """The explore stage's flags (``run``, ``demo``, ``explore``)."""
    from .explain.explore import DEFAULT_METHODS, cheap_methods

    g = p.add_argument_group("explorer (RUN/explore/: the maps the report's explorer shows)")
    g.add_argument("--explore-wrong", type=int, default=None, metavar="N",
                   help="misclassified images shown at most, most confident mistakes first (default 200)")
    g.add_argument("--explore-correct", type=int, default=None, metavar="N",
                   help="correctly classified images per class (default 3)")
    g.add_argument("--explore-top", type=int, default=None, metavar="K",
                   help="most probable classes explained per image, besides true and predicted (default 3)")
    g.add_argument("--explore-methods", default=None, metavar="A,B",
                   help=f"gradient/CAM methods (default {','.join(DEFAULT_METHODS)}; any of "
                        f"{', '.join(cheap_methods())})")
    if p.prog.split()[-1] != "explore":
        g.add_argument("--no-explore", action="store_true", help="leave the explore stage out")


def _explore_from_args(args: argparse.Namespace) -> ExploreConfig:
    from .explain.explore import ExploreConfig

    kw: dict[str, object] = {k: v for k, v in (("wrong_cap", args.explore_wrong),
                                               ("correct_per_class", args.explore_correct),
                                               ("top_k", args.explore_top)) if v is not None}
    if args.explore_methods is not None:
        kw["methods"] = tuple(_names(args.explore_methods) or ())
    return ExploreConfig(enabled=not getattr(args, "no_explore", False), **kw)  # type: ignore[arg-type]


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "explore", "the maps the report's explorer shows (every mistake up to a cap, correct "
                    "images per class; true, predicted and top-k classes) -> RUN/explore/",
                    "cnnlens explore runs/demo --explore-wrong 50 --explore-methods saliency,gradcam")
    p.add_argument("run", metavar="RUN")
    _add_trust_code(p)
    p.add_argument("--split", default=None, help="labeled split (default: test if labeled, else val)")
    _add_explore_args(p)
    _add_lock_arg(p)


def _run_explore(args: argparse.Namespace) -> int:
    from .explore_stage import explore_run
    from .train import load_run

    cfg = _explore_from_args(args)
    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    with Progress("explore maps") as cb:
        rec = explore_run(run, None, cfg, split=args.split, progress=cb)
    sel = rec.selection
    console.print(f"{sel['n_images']:,} {safe(rec.split)} images ({sel['n_wrong_shown']:,} of {sel['n_wrong']:,} "
                  f"misclassified, {sel['n_wrong_left_out']:,} left out by --explore-wrong), "
                  f"{sel['n_entries']:,} (image, class) pairs x {len(rec.methods)} methods")
    for note in rec.notes:
        console.print(f"[yellow]{safe(note)}[/yellow]")
    console.print(f"wrote {safe(Path(args.run) / 'explore' / 'explore.json')} ({rec.seconds:.1f} s)")
    return 0


# Commands, in the order `cnnlens --help` lists them.
COMMANDS: list[tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]] = [
    (_add_demo, _run_demo),
    (_add_run, _run_run),
    (_add_train, _run_train),
    (_add_import, _run_import),
    (_add_evaluate, _run_evaluate),
    (_add_explain, _run_explain),
    (_add_filters, _run_filters), (_add_featuremaps, _run_featuremaps), (_add_dream, _run_dream),
    (_add_report, _run_report),
    (_add_compare, _run_compare),
    (_add_trust, _run_trust),
    (_add_explore, _run_explore),
    (_add_methods, _run_methods),
    (_add_models, _run_models),
    (_add_data, _run_data),
    (_add_predict, _run_predict),
]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    from . import __version__

    parser = ArgumentParser(
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
        with _locked(args):  # the write lock of the run directories the command writes into
            rc = runners[args.command](args)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        return 130
    except (CnnlensError, OSError) as e:  # the user's input, or the environment (disk, permissions)
        print_error(e)
        return 2
    except Exception as e:  # anything else is a bug in cnnlens: say so, never blame the input
        print_bug(e, show_traceback=debug_requested(args.verbose))
        return 1
    log.debug("%s took %.1f s", args.command, time.perf_counter() - t0)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
