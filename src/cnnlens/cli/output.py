"""`cnnlens report`, `compare`, `predict`: what a run directory gives back (a page, a comparison, a
submission file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..console import Progress, console, print_table, safe
from .args import _add_lock_arg, _add_trust_code, _data_choices, _parser_for


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
    from ..workflow import report_run

    page = report_run(args.run, split=args.split, trust_code=args.trust_code)
    console.print(f"report: {safe(page)}")
    if args.pdf:
        from ..report.browser import print_pdf

        pdf = print_pdf(page, page.with_name("report.pdf"), executable=args.chromium)
        console.print(f"pdf: {safe(pdf)}")
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = _parser_for(sub, "compare", "compare runs side by side (e.g. the CNN against its parameter-matched DNN)",
                    "cnnlens compare runs/cnn runs/dnn --out runs/compare")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", default=None, metavar="DIR", help="default: FIRST_RUN/compare")
    _add_trust_code(p)
    _add_lock_arg(p)


def _run_compare(args: argparse.Namespace) -> int:
    from ..report.compare import compare_runs

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


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from ..evaluate.tta import TTA_MODES

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

    from ..predict import load_data, predict, skipped_path
    from ..train import load_run

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs = [load_run(r, device=device, trust_code=args.trust_code) for r in args.runs]
    with Progress("decoding") as cb:
        ds = load_data(args.data, runs, skip_bad_rows=args.skip_bad_rows, progress=cb)
    with Progress("predicting") as cb:
        pred = predict(runs, ds, args.split, tta=args.tta, batch_size=args.batch_size, progress=cb,
                       out=args.out, probs=args.probs, labels=args.label, skip_bad_rows=args.skip_bad_rows,
                       columns=args.columns.split(",") if args.columns else None, write_eval=False)
    if pred.labeled:  # its numbers go into each run's eval/, under the run's write lock
        from ..predict import write_eval_json
        from ..runlock import run_locks

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
