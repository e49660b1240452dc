"""`cnnlens demo`, `run`, `train`, `import`: the commands that make a run directory."""

from __future__ import annotations

import argparse

from ..console import Progress, console, safe
from .analysis import _print_eval
from .args import (_add_lock_arg, _add_trust_code, _data_choices, _devices_arg, _finite_float, _names,
                   _model_options, _parser_for)
from .explore import _add_explore_args, _explore_from_args
from .output import _print_compare


def _add_train_args(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    from ..config import OPTIMIZERS, RECIPES, SCHEDULERS

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
    from ..workflow import train_run

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
    from ..importing import import_model

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


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "demo", "the whole pipeline on the bundled digits: train, evaluate, explain, visualize, "
                    "trust, report", "cnnlens demo --out runs/demo --fast")
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--fast", action="store_true", help="a short run (under a minute) that still writes every "
                   "artifact: 2 epochs and every analysis stage at reduced size")
    _add_explore_args(p)
    _add_lock_arg(p)


def _run_demo(args: argparse.Namespace) -> int:
    from ..workflow import run

    run("digits", "compact", out=args.out, force=True, epochs=2 if args.fast else 12, seed=0,
        sizes="fast" if args.fast else "demo", progress=True, break_lock=args.break_lock,
        progress_for=Progress, notify=_notify, explore=_explore_from_args(args))
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    from ..pipeline import SIZES

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
    from ..workflow import run

    run(**_train_kwargs(args), sizes=args.size, methods=_names(args.methods), per_class=args.per_class,
        skip=_names(args.skip) or (), baseline=args.baseline, split=args.split, progress_for=Progress,
        notify=_notify, explore=_explore_from_args(args))
    return 0
