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
        raise ValueError("models summary needs a model NAME, e.g. `cnnlens models summary compact`")
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
        raise ValueError(f"--input must look like CxHxW, e.g. 1x48x48; got {s!r}") from None
    return c, h, w


# Commands, in the order `cnnlens --help` lists them.
COMMANDS: list[tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]] = [
    (_add_methods, _run_methods),
    (_add_models, _run_models),
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
