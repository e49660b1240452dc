"""The ``cnnlens`` command line. The only package that writes to the console.

Each command is a pair: ``_add_<name>(sub)`` declares its arguments (choices come from the
registries) and ``_run_<name>(args)`` does the work by calling the library and prints the result.
The pairs live in one module per group of commands:

- ``cli/training.py``: demo, run, train, import (and the training flags, ``_add_train_args``)
- ``cli/analysis.py``: evaluate, explain, trust
- ``cli/visualize.py``: filters, featuremaps, dream
- ``cli/output.py``: report, compare, predict
- ``cli/info.py``: methods, models, data
- ``cli/args.py``: the argument helpers they share (``_parser_for``, ``_finite_float``, ...)

Add a command by writing its pair in the module of its group (or a new ``cli/<group>.py``), importing
the pair below and listing it in ``COMMANDS``; a command that writes into a run directory also goes
into ``_written_runs`` (its write lock). ``main`` and ``build_parser`` stay here.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from ..console import ArgumentParser, debug_requested, err_console, print_bug, print_error, setup_logging
from ..errors import CnnlensError
from .analysis import _add_evaluate, _add_explain, _add_trust, _run_evaluate, _run_explain, _run_trust
from .args import _example
from .explore import _add_explore, _run_explore
from .info import _add_data, _add_methods, _add_models, _run_data, _run_methods, _run_models
from .output import _add_compare, _add_predict, _add_report, _run_compare, _run_predict, _run_report
from .training import (_add_demo, _add_import, _add_run, _add_train, _run_demo, _run_import, _run_run,
                       _run_train)
from .visualize import (_add_dream, _add_featuremaps, _add_filters, _run_dream, _run_featuremaps,
                        _run_filters)

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
    from ..runlock import run_locks

    with run_locks(_written_runs(args), break_lock=getattr(args, "break_lock", False), create=False):
        yield


# The commands, in the order `cnnlens --help` lists them: register a new one here (one line).
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
    from .. import __version__

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


__all__ = ["COMMANDS", "build_parser", "main"]

