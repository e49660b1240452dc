"""`cnnlens explore` and the explore stage's flags on `run`/`demo` (issue #21): the maps the report's
explorer shows (RUN/explore/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..console import Progress, console, safe
from .args import _add_lock_arg, _add_trust_code, _device, _names, _parser_for

if TYPE_CHECKING:
    from ..explain.explore import ExploreConfig


def _add_explore_args(p: argparse.ArgumentParser) -> None:
    """The explore stage's flags (``run``, ``demo``, ``explore``)."""
    from ..explain.explore import DEFAULT_METHODS, cheap_methods

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
    from ..explain.explore import ExploreConfig

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
    from ..stages.explore import explore_run
    from ..train import load_run

    cfg = _explore_from_args(args)
    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    with Progress("explore maps") as cb:
        rec = explore_run(run, None, cfg, split=args.split, progress=cb)
    sel = rec.selection
    console.print(f"{sel['n_images']:,} {safe(rec.split)} images ({sel['n_wrong_shown']:,} of {sel['n_wrong']:,} "
                  f"misclassified, {sel['n_wrong_left_out']:,} left out by --explore-wrong), "
                  f"{sel['n_entries']:,} (image, class) pairs x {len(rec.methods):d} methods")
    for note in rec.notes:
        console.print(f"[yellow]{safe(note)}[/yellow]")
    console.print(f"wrote {safe(Path(args.run) / 'explore' / 'explore.json')} ({rec.seconds:.1f} s)")
    return 0
