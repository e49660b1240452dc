"""`cnnlens methods`, `cnnlens models`, `cnnlens data`: what the registries hold and what a dataset holds."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..console import Progress, console, print_error, print_table, safe
from ..errors import CnnlensError
from .args import _add_trust_code, _finite_float, _model_options, _parse_chw, _parser_for


def _add_methods(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "methods", "explanation methods", "cnnlens methods list")
    p.add_argument("action", choices=["list"])


def _run_methods(args: argparse.Namespace) -> int:
    from ..explain import METHODS

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
    from ..models import MODELS

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
    from ..models import create_model
    from ..models.summary import summarize

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
        from ..models.tensorboard import export_graph

        try:
            path = export_graph(m, (c, h, w), args.tensorboard)
        except ImportError as e:
            print_error(e)
            return 2
        console.print(f"graph written to {safe(path)}; view it with: "
                      f"tensorboard --logdir {safe(args.tensorboard)}")
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    from ..data import DATASETS

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
    from ..data import load_dataset
    from ..report.fig_data import sample_grid

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
