"""`cnnlens filters`, `featuremaps`, `dream`: feature visualization of a run -> RUN/featureviz/."""

from __future__ import annotations

import argparse

from ..console import Progress, console, safe
from .args import _add_lock_arg, _add_trust_code, _device, _finite_float, _parser_for


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
    from ..featureviz.runs import filters_run, parse_channels
    from ..rundir import save_viz
    from ..train import load_run

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
    from ..featureviz.runs import featuremaps_run
    from ..rundir import save_viz
    from ..train import load_run

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
    from ..featureviz.runs import dream_run
    from ..rundir import save_viz
    from ..train import load_run

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
