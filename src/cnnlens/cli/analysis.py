"""`cnnlens evaluate`, `explain`, `trust`: the analysis commands on a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..console import Progress, console, print_table, safe
from ..errors import CnnlensError
from .args import _add_lock_arg, _add_trust_code, _device, _devices_arg, _names, _parser_for, _target_arg


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
    from ..pipeline import evaluate_run
    from ..train import load_run

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
    from ..explain import METHODS

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
    from ..pipeline import explain_run
    from ..train import load_run

    run = load_run(args.run, device=_device(), trust_code=args.trust_code)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.all:
        from ..explain.stream import explain_stream

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
    from ..data.splits import describe_splits

    console.print(f"explained {len(index['indices']):d} {safe(describe_splits(index['splits']))} image(s)")
    console.print(f"wrote maps and {safe(run.path / 'explain' / 'grid.png')}")
    return 0


def _forced(methods: list[str], force: bool) -> dict[str, dict[str, bool]] | None:
    """``--force-guided``: ``force=True`` for each chosen method that takes it (the guided ones)."""
    from ..explain import METHODS

    if not force:
        return None
    return {m: {"force": True} for m in methods if "force" in getattr(METHODS.get(m), "option_names", ())}


def _add_trust(sub: argparse._SubParsersAction) -> None:
    from ..explain import METHODS
    from ..metrics import TRUST_METRICS

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
    from ..fill import Fill

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
    from ..data.splits import label_split
    from ..metrics import FAST, TrustConfig
    from ..pipeline import trust_run
    from ..train import load_run

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
