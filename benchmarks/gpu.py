"""Every stage of cnnlens against its named peer, on one device: the GPU check of issue #22.

    python benchmarks/gpu.py --out gpu.json                  # on a GPU machine (default device: cuda)
    python benchmarks/gpu.py --smoke --device cpu --out s.json   # CI: tiny sizes, every code path, < 60 s

Each stage runs cnnlens and its peer on the same model, data and batch, in one process; times are
medians of repeats (interleaved where the stage's own benchmark interleaves); CUDA work is
synchronized before a clock is read. For each stage the peak memory: ``torch.cuda.max_memory_allocated``
on CUDA (reset at the stage's start), on the CPU the process's peak resident set so far (a high-water
mark: it never goes down, so only the first stage's figure is that stage's alone).

* train: ``cnnlens.train`` (the library call ``cnnlens train`` makes; Lightning) against a hand-written
  PyTorch loop (same model, Adam 1e-3, batch, data kept on the CPU and sent per batch, one validation
  pass per epoch); FER2013-sized data (35,887 images of 48x48) written as the Kaggle CSV
  (``emotion,pixels,Usage``) and parsed by cnnlens; models ``compact`` and ``vgg``; variants float32,
  bf16-mixed, channels-last, torch.compile and their combinations (``--variants``). Throughput is
  training images per second of an epoch (its train and validation passes), epochs after the first.
* augment: ``cnnlens.data.augment`` on the device against torchvision per-sample transforms in a
  DataLoader with workers (benchmarks/data.py part c).
* explain: per-image time of every method against Captum and pytorch-grad-cam at batch 256
  (benchmarks/explain.py).
* lime: 1,000 samples per image, against the lime package (benchmarks/lime.py's pieces).
* featureviz: 64 filters rendered in one batch against 64 single runs (benchmarks/featureviz.py).
* trust: deletion curves batched against the per-image loop (benchmarks/trust.py), and the fast trust
  protocol (``FAST``) end to end.

``--smoke`` shrinks every size (a few hundred images, 2 epochs, batch 4, 50 LIME samples, 4 filters,
...): a check that the script runs, not a measurement. The goals (docs/benchmarks.md, "GPU") are checked
and printed at the end; the JSON (``--out``) holds every number.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # lime and pytorch-grad-cam draw progress bars
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see benchmarks/lime.py: spinning BLAS threads
HERE = Path(__file__).resolve().parent
# benchmarks/lime.py must not shadow the lime package: this folder leaves sys.path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import cnnlens  # noqa: E402
from cnnlens.device import describe_device  # noqa: E402

STAGES = ("train", "augment", "explain", "lime", "featureviz", "trust")
VARIANTS = (
    "float32",
    "bf16-mixed",
    "channels-last",
    "bf16-mixed+channels-last",
    "compile",
    "bf16-mixed+channels-last+compile",
)


def bench(name: str) -> Any:
    """benchmarks/<name>.py as a module (under another name: ``lime`` must stay the lime package)."""
    spec = importlib.util.spec_from_file_location(f"cnnlens_bench_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def peak_memory(device: torch.device, into: dict[str, Any]) -> Iterator[None]:
    """Record the stage's peak memory into ``into["peak_memory"]``."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        if device.type == "cuda":
            sync(device)
            into["peak_memory"] = {
                "kind": "torch.cuda.max_memory_allocated",
                "mib": torch.cuda.max_memory_allocated(device) / 2**20,
            }
        else:
            kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            into["peak_memory"] = {"kind": "process peak RSS so far (CPU)", "mib": kib / 1024}


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n### {title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in r) + " |")


# ---- train -------------------------------------------------------------------------------------


SMOKE_OPTIONS = {"compact": dict(widths=(8, 16, 16), fc=(32,)), "vgg": dict(stages=(8, 8, 8), dense=32)}
"""Narrow models for --smoke (the same classes and code paths, a fraction of the arithmetic)."""


def make_model(name: str, variant: str, backend: str, options: dict[str, Any]) -> torch.nn.Module:
    torch.manual_seed(0)
    m = cnnlens.create_model(name, in_channels=1, num_classes=7, input_size=48, **options)
    if "channels-last" in variant:
        m = m.to(memory_format=torch.channels_last)
    if "compile" in variant:
        m = torch.compile(m, backend=backend)
    return m


def hand_loop(
    model: torch.nn.Module,
    data: dict[str, torch.Tensor],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    epochs: int,
    batch: int,
    variant: str,
    device: torch.device,
) -> list[float]:
    """The loop a PyTorch user writes: seconds of each epoch (train pass + validation pass)."""
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    fmt = torch.channels_last if "channels-last" in variant else torch.contiguous_format
    bf16 = "bf16-mixed" in variant
    pin = device.type == "cuda"
    xtr, ytr = (data["xtr"].pin_memory(), data["ytr"].pin_memory()) if pin else (data["xtr"], data["ytr"])

    def prep(u8: torch.Tensor) -> torch.Tensor:
        x = u8.to(device, non_blocking=True).float().div_(255.0)
        return ((x - m) / s).contiguous(memory_format=fmt)

    times = []
    n = len(ytr)
    for ep in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(ep))
        correct = torch.zeros((), device=device)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            x, y = prep(xtr[idx]), ytr[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += (logits.argmax(1) == y).sum()
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(data["yva"]), batch):
                y = data["yva"][i : i + batch].to(device)
                correct += (model(prep(data["xva"][i : i + batch])).argmax(1) == y).sum()
        float(correct)  # the metric read back, as a user's loop prints it
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


@contextlib.contextmanager
def torch_flags() -> Iterator[None]:
    """Lightning sets deterministic algorithms and cuDNN flags for the process: restored afterwards,
    so the hand loop runs with PyTorch's defaults."""
    det, warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    bench_flag, cudnn_det = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = bench_flag, cudnn_det


def stage_train(device: torch.device, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    data_mod = bench("data")
    csv = tmp / "fer2013.csv"
    t = time.perf_counter()
    data_mod.write_fer_csv(csv, n=a.train_images)
    written = time.perf_counter() - t
    t = time.perf_counter()
    ds = cnnlens.load_dataset(str(csv))
    parsed = time.perf_counter() - t
    xtr, ytr = ds.split("train")
    xva, yva = ds.split("val")
    data = {"xtr": xtr, "ytr": ytr, "xva": xva, "yva": yva}
    print(
        f"FER2013 CSV: {a.train_images:,} rows written in {written:.1f} s, parsed by cnnlens in "
        f"{parsed:.1f} s (train {len(ytr):,}, val {len(yva):,})",
        flush=True,
    )
    accel = "gpu" if device.type == "cuda" else "cpu"
    rows, out = [], []
    for model_name in a.models.split(","):
        opts = SMOKE_OPTIONS.get(model_name, {}) if a.smoke else {}
        variants = (
            a.variants.split(",") if model_name == a.models.split(",")[0] or not a.smoke else ["float32"]
        )
        for variant in variants:
            bad = set(variant.split("+")) - {"float32", "bf16-mixed", "channels-last", "compile"}
            if bad:
                raise SystemExit(f"unknown variant part(s) {sorted(bad)} in {variant!r}")
            prec = "bf16-mixed" if "bf16-mixed" in variant else "32-true"
            ours: list[float] = []
            hand: list[float] = []
            for r in range(a.train_repeats):
                with torch_flags():
                    run = cnnlens.train(
                        ds,
                        make_model(model_name, variant, a.compile_backend, opts),
                        out=tmp / f"run-{model_name}-{variant}-{r}",
                        epochs=a.epochs,
                        batch_size=a.batch,
                        seed=0,
                        precision=prec,
                        accelerator=accel,
                        devices=1,
                        force=True,
                    )
                ours += [float(h["seconds"]) for h in run.history[1:]]
                hand += hand_loop(
                    make_model(model_name, variant, a.compile_backend, opts),
                    data,
                    ds.mean,
                    ds.std,
                    a.epochs,
                    a.batch,
                    variant,
                    device,
                )[1:]
            o, h = len(ytr) / statistics.median(ours), len(ytr) / statistics.median(hand)
            out.append(
                {
                    "model": model_name,
                    "options": opts,
                    "variant": variant,
                    "cnnlens_img_s": o,
                    "hand_loop_img_s": h,
                    "hand_over_cnnlens": h / o,
                    "cnnlens_epoch_s": ours,
                    "hand_loop_epoch_s": hand,
                }
            )
            rows.append([model_name, variant, o, h, h / o])
            print(f"  {model_name} {variant}: cnnlens {o:,.0f} img/s, hand loop {h:,.0f} img/s", flush=True)
    table(
        f"train: images/s, batch {a.batch}, {a.epochs} epochs x {a.train_repeats} repeats (first epoch "
        "of each dropped)",
        ["model", "variant", "cnnlens.train", "hand-written loop", "hand / cnnlens"],
        rows,
    )
    return {
        "images": a.train_images,
        "train_images": len(ytr),
        "val_images": len(yva),
        "csv_write_s": written,
        "csv_parse_s": parsed,
        "batch": a.batch,
        "epochs": a.epochs,
        "repeats": a.train_repeats,
        "compile_backend": a.compile_backend,
        "rows": out,
    }


# ---- augment -----------------------------------------------------------------------------------


def stage_augment(device: torch.device, a: argparse.Namespace) -> dict[str, Any]:
    res = bench("data").part_c(a.repeats, a.aug_steps, a.batch, str(device), a.workers)
    res["cnnlens_over_torchvision"] = res["cnnlens_img_s"] / res["torchvision_img_s"]
    table(
        "augment: train-step images/s (compact, 1x48x48)",
        [
            "cnnlens augment_batch (device)",
            f"torchvision per-sample, DataLoader {a.workers} workers",
            "cnnlens / torchvision",
        ],
        [[res["cnnlens_img_s"], res["torchvision_img_s"], res["cnnlens_over_torchvision"]]],
    )
    return res


# ---- explain -----------------------------------------------------------------------------------


def stage_explain(device: torch.device, a: argparse.Namespace) -> dict[str, Any]:
    ex = bench("explain")
    out = []
    for label, model, shape in ex.models(a.explain_models.split(",")):
        out.append(
            ex.bench_model(
                label,
                model,
                shape,
                a.explain_batch,
                a.repeats,
                str(device),
                a.ig_steps,
                a.nt_samples,
                a.score_batch,
            )
        )
    return {
        "batch": a.explain_batch,
        "score_batch": a.score_batch,
        "ig_steps": a.ig_steps,
        "nt_samples": a.nt_samples,
        "models": out,
    }


# ---- lime --------------------------------------------------------------------------------------


def stage_lime(device: torch.device, a: argparse.Namespace) -> dict[str, Any]:
    lm = bench("lime")
    from cnnlens.data.base import normalize
    from cnnlens.explain.scoring import auto_batch_size
    from cnnlens.explain.segmentation import segment

    imgs, labels = lm.faces_48()
    model, mean, std = lm.train_compact(imgs, labels, 2, a.lime_train_steps, 0)
    model = model.to(device).eval()
    pick = torch.cat([torch.arange(0, 100, 10), torch.arange(105, 200, 10)])[: a.lime_images]
    u8 = imgs[pick]
    x = normalize(u8, mean, std)
    segs = [segment(u, "slic") for u in u8.float() / 255]
    with torch.no_grad():
        targets = model(x.to(device)).argmax(1).tolist()
    x01 = [u[0].double().numpy() / 255.0 for u in u8]
    bs = auto_batch_size((1, 48, 48), device)
    n = a.lime_samples
    contenders: dict[str, Callable[[int], object]] = {
        "cnnlens float32": lambda i: lm.cnnlens_lime(
            model, x[i : i + 1].to(device), segs[i], n, 0, "float32"
        ),
        "cnnlens bfloat16": lambda i: lm.cnnlens_lime(
            model, x[i : i + 1].to(device), segs[i], n, 0, "bfloat16"
        ),
        "lime package": lambda i: lm.lime_package(
            model, x01[i], segs[i].numpy(), targets[i], n, bs, 0, mean, std, device
        ),
    }
    for fn in contenders.values():  # warm-up
        fn(0)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    rng = random.Random(0)
    for _ in range(a.repeats):
        for i in range(len(u8)):
            keys = list(contenders)
            rng.shuffle(keys)
            for k in keys:
                sync(device)
                t = time.perf_counter()
                contenders[k](i)
                sync(device)
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    peer = med["lime package"]
    table(
        f"lime: seconds per image, {n} samples, {len(u8)} images x {a.repeats} repeats (48x48 grey faces)",
        ["contender", "s / image", "speed-up vs lime package"],
        [[k, v, peer / v] for k, v in med.items()],
    )
    return {
        "samples": n,
        "images": len(u8),
        "lime_batch_size": bs,
        "median_s": med,
        "speedup_f32": peer / med["cnnlens float32"],
        "speedup_bf16": peer / med["cnnlens bfloat16"],
    }


# ---- featureviz --------------------------------------------------------------------------------


def stage_featureviz(device: torch.device, a: argparse.Namespace) -> dict[str, Any]:
    return bench("featureviz").speed(a.repeats, a.fv_steps, str(device), a.filters)


# ---- trust -------------------------------------------------------------------------------------


def stage_trust(device: torch.device, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from cnnlens.metrics import FAST, perturbation_curves, run_trust

    tr = bench("trust")
    if a.trust_epochs:
        with torch_flags():
            run = cnnlens.train(
                "digits",
                "compact",
                out=tmp / "digits",
                epochs=a.trust_epochs,
                seed=0,
                accelerator="gpu" if device.type == "cuda" else "cpu",
                devices=1,
                force=True,
            )
        model, ds = run.model, run.dataset
    else:  # --smoke: an untrained model (the protocol's code paths are the same)
        ds = cnnlens.load_dataset("digits")
        torch.manual_seed(0)
        model = cnnlens.create_model(
            "compact", in_channels=ds.channels, num_classes=ds.num_classes, input_size=ds.size
        )
    model = model.to(device).eval()
    idx = ds.indices("test")[: a.trust_images]
    x, y = ds.normalize(ds.images[idx]).to(device), ds.labels[idx].to(device)
    maps = cnnlens.explain(model, x, "saliency", target=y).maps
    steps = a.trust_steps
    fns = {
        "cnnlens perturbation_curves": lambda: perturbation_curves(
            model, x, maps, y, "deletion", steps=steps, substrate="mean"
        ),
        "per-image reference loop": lambda: tr.reference_deletion(model, x, maps, y, steps),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(a.repeats):
        for k, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    cfg = FAST if not a.smoke else FAST.replace(n_images=a.trust_images, steps=steps)
    methods = a.trust_methods.split(",") if a.trust_methods else None
    if not a.smoke:
        run_trust(model, ds, methods, config=cfg)  # warm-up
    sync(device)
    t = time.perf_counter()
    rep = run_trust(model, ds, methods, config=cfg)
    sync(device)
    fast_s = time.perf_counter() - t
    ref = med["per-image reference loop"]
    table(
        f"trust: deletion curves of {len(x)} images x {steps + 1} points; fast protocol end to end",
        ["what", "seconds", "speed-up vs per-image loop"],
        [[k, v, ref / v] for k, v in med.items()]
        + [
            [
                f"run_trust FAST ({cfg.n_images} images, {cfg.steps} steps, {len(rep.methods)} maps)",
                fast_s,
                "-",
            ]
        ],
    )
    return {
        "images": len(x),
        "steps": steps,
        "median_s": med,
        "curves_speedup": ref / med["cnnlens perturbation_curves"],
        "fast_protocol_s": fast_s,
        "fast_images": cfg.n_images,
        "fast_steps": cfg.steps,
        "fast_methods": list(rep.methods),
    }


# ---- goals and main ----------------------------------------------------------------------------


def goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, each with the measured value and whether it is met."""
    g: list[dict[str, Any]] = []
    st = res["stages"]
    for r in st.get("train", {}).get("rows", []):
        g.append(
            {
                "goal": f"train {r['model']} {r['variant']}: cnnlens within 1.1x of the hand loop",
                "value": r["hand_over_cnnlens"],
                "met": r["hand_over_cnnlens"] <= 1.1,
            }
        )
    if "lime" in st:
        v = max(st["lime"]["speedup_f32"], st["lime"]["speedup_bf16"])
        g.append({"goal": "LIME >= 20x the lime package", "value": v, "met": v >= 20})
    if "featureviz" in st:
        v = st["featureviz"]["speedup"]
        g.append({"goal": "batched filters >= 10x one at a time", "value": v, "met": v >= 10})
    for m in st.get("explain", {}).get("models", []):
        for r in m["rows"]:
            if r["peer"] in ("captum", "pytorch-grad-cam"):
                v = r["cnnlens_ms"] / r["peer_ms"]
                g.append(
                    {
                        "goal": f"explain {m['model']} {r['method']} at or below {r['peer']}",
                        "value": v,
                        "met": v <= 1.0,
                    }
                )
    return g


SMOKE = dict(
    train_images=30,
    models="compact,vgg",
    variants="float32,bf16-mixed+channels-last+compile",
    epochs=2,
    train_repeats=1,
    batch=8,
    compile_backend="eager",
    aug_steps=2,
    workers=2,
    repeats=1,
    explain_models="compact",
    explain_batch=1,
    score_batch=1,
    ig_steps=2,
    nt_samples=2,
    lime_samples=30,
    lime_images=1,
    lime_train_steps=2,
    fv_steps=1,
    filters=2,
    trust_epochs=0,
    trust_images=2,
    trust_steps=4,
    trust_methods="saliency",
)
"""--smoke's sizes (an option given on the command line wins). On the smoke the first model takes every
variant and the others float32 only; the fast protocol runs once (no warm-up) with ``trust_methods``."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--out", default=None, metavar="FILE", help="write every number as JSON")
    ap.add_argument(
        "--smoke", action="store_true", help="tiny sizes, every code path: a check, not a measurement"
    )
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-images", type=int, default=35_887)
    ap.add_argument("--models", default="compact,vgg")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="'+'-joined parts of float32, bf16-mixed, channels-last, compile",
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-repeats", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256, help="training and augmentation batch")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--aug-steps", type=int, default=50)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--explain-models", default="compact,resnet")
    ap.add_argument("--explain-batch", type=int, default=256)
    ap.add_argument("--score-batch", type=int, default=16, help="images of the ScoreCAM rows")
    ap.add_argument("--ig-steps", type=int, default=32)
    ap.add_argument("--nt-samples", type=int, default=8)
    ap.add_argument("--lime-samples", type=int, default=1000)
    ap.add_argument("--lime-images", type=int, default=4)
    ap.add_argument("--lime-train-steps", type=int, default=30)
    ap.add_argument("--fv-steps", type=int, default=32)
    ap.add_argument("--filters", type=int, default=64)
    ap.add_argument(
        "--trust-epochs", type=int, default=3, help="digits training of the trust model (0: untrained)"
    )
    ap.add_argument("--trust-images", type=int, default=32)
    ap.add_argument("--trust-steps", type=int, default=64)
    ap.add_argument(
        "--trust-methods", default=None, help="methods of the fast protocol (default: FAST's choice)"
    )
    a = ap.parse_args()
    if a.smoke:
        given = {k for k in vars(a) if f"--{k.replace('_', '-')}" in sys.argv}
        for k, v in SMOKE.items():
            if k not in given:
                setattr(a, k, v)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device; use --device cpu")
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(STAGES)}")
    res: dict[str, Any] = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "smoke": a.smoke,
        "settings": vars(a),
        "stages": {},
    }
    print(
        f"{'SMOKE RUN (tiny sizes; not a measurement): ' if a.smoke else ''}{res['device']}, torch "
        f"{res['torch']}" + (f", CUDA {res['cuda']}" if res["cuda"] else ""),
        flush=True,
    )
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for s in stages:
            t, c = time.perf_counter(), time.process_time()
            rec: dict[str, Any] = {}
            with peak_memory(device, rec):
                if s == "train":
                    rec.update(stage_train(device, a, tmp))
                elif s == "augment":
                    rec.update(stage_augment(device, a))
                elif s == "explain":
                    rec.update(stage_explain(device, a))
                elif s == "lime":
                    rec.update(stage_lime(device, a))
                elif s == "featureviz":
                    rec.update(stage_featureviz(device, a))
                else:
                    rec.update(stage_trust(device, a, tmp))
            rec["stage_s"], rec["stage_cpu_s"] = time.perf_counter() - t, time.process_time() - c
            res["stages"][s] = rec
            print(
                f"[{s}: {rec['stage_s']:.1f} s wall, {rec['stage_cpu_s']:.1f} s CPU of this process, "
                f"peak memory {rec['peak_memory']['mib']:,.0f} MiB ({rec['peak_memory']['kind']})]",
                flush=True,
            )
    res["goals"] = goals(res)
    res["total_s"] = time.perf_counter() - t_all
    table(
        "goals" + (" (SMOKE: tiny sizes, meaningless)" if a.smoke else ""),
        ["goal", "value", "met"],
        [[g["goal"], float(g["value"]), "yes" if g["met"] else "NO"] for g in res["goals"]],
    )
    print(f"\ntotal {res['total_s']:.1f} s wall, {time.process_time():.1f} s CPU of this process")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1, default=str))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
