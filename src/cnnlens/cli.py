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
                    "cnnlens models summary compact --input 1x48x48 --classes 7")
    p.add_argument("action", choices=["list", "summary"])
    p.add_argument("name", nargs="?", help="model name (for summary)")
    p.add_argument("--input", default="1x32x32", help="input shape CxHxW (default 1x32x32)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")


def _run_models(args: argparse.Namespace) -> int:
    from .models import MODELS

    if args.action == "list":
        t = Table("model", "architecture", title="models")
        for e in MODELS.entries():
            t.add_row(e.name, e.description)
        for pfx in MODELS.prefixes():
            t.add_row(f"{pfx}:<name>", f"{pfx} architecture")
        console.print(t)
        return 0
    if not args.name:
        raise ValueError("models summary needs a model NAME, e.g. `cnnlens models summary compact`")
    from .models import count_params, create_model

    c, h, w = _parse_chw(args.input)
    m = create_model(args.name, in_channels=c, num_classes=args.classes, input_size=(h, w))
    console.print(m)
    console.print(f"parameters: {count_params(m):,}")
    return 0


def _parse_chw(s: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise ValueError(f"--input must look like CxHxW, e.g. 1x48x48; got {s!r}") from None
    return c, h, w


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


# Commands, in the order `cnnlens --help` lists them.
COMMANDS: list[tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]] = [
    (_add_methods, _run_methods),
    (_add_models, _run_models),
    (_add_data, _run_data),
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
    args = parser.parse_args(argv)
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
