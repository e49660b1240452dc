"""LIME: the lime package vs Captum's Lime vs cnnlens (float32 and bfloat16), plus the forward-pass floor.

Same model (cnnlens' ``compact``, trained a few dozen steps), same images, same superpixels (cnnlens' SLIC
defaults on the de-normalized image, handed to every contender), same sample count, one process,
interleaved repeats in random order, medians. Two settings: 48x48 grey (faces from scikit-image's bundled LFW subset,
face vs non-face) and 128x128 RGB (crops of scikit-image's bundled photos, one class per photo).

Also measured:
* the floor: the same number of forward passes alone (float32, no grad) at the best chunk size of a
  sweep, and what ``auto_batch_size`` picks;
* stability: top-5 superpixels (largest weights) across 5 seeds at ``--samples`` samples, mean
  pairwise overlap |A & B| / 5, for cnnlens (paired sampling, the default), cnnlens ``sampling="iid"``
  (lime's own scheme) and the lime package (``random_state=seed``);
* bfloat16 agreement: images whose top-5 set equals the float32 one (same seed), on
  ``--agreement-images`` images.

    python benchmarks/lime.py                 # full run (several minutes on 2 busy cores)
    python benchmarks/lime.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # lime wraps its sample loop in tqdm
# numpy's OpenBLAS threads spin after each call (lime's ridge and distances) and slowed the next
# contender's torch passes by up to 1.45x; its problems here (1,000 x 50) gain nothing from threads,
# and the lime package itself ran faster single-threaded (0.415 vs 0.451 s per image at 48x48)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # this file is not the lime package

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import cnnlens  # noqa: E402
from cnnlens.explain.coalitions import top_superpixels  # noqa: E402
from cnnlens.explain.scoring import auto_batch_size  # noqa: E402
from cnnlens.explain.segmentation import segment  # noqa: E402


# ---- data and models ---------------------------------------------------------------------------

def faces_48() -> tuple[torch.Tensor, torch.Tensor]:
    """LFW subset (100 faces, 100 non-faces, 25x25) resized to 48x48: uint8 [200,1,48,48], labels."""
    import skimage.data

    a = torch.from_numpy(skimage.data.lfw_subset()).float()[:, None]
    imgs = F.interpolate(a, size=(48, 48), mode="bilinear", align_corners=False).clamp(0, 1)
    return (imgs * 255).round().to(torch.uint8), torch.tensor([0] * 100 + [1] * 100)


PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"]


def photos_128(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crops of the bundled photos at 128x128: (train uint8, labels, one centre crop per photo)."""
    import skimage.data

    g = torch.Generator().manual_seed(seed)
    train, labels, centre = [], [], []
    for k, name in enumerate(PHOTOS):
        p = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float()[None]
        h, w = p.shape[-2:]
        s = min(h, w)
        centre.append(F.interpolate(p[..., (h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2], size=(128, 128),
                                    mode="bilinear", antialias=True))
        for _ in range(n_per_class):
            c = int(torch.randint(s // 3, s + 1, (1,), generator=g))
            y0 = int(torch.randint(0, h - c + 1, (1,), generator=g))
            x0 = int(torch.randint(0, w - c + 1, (1,), generator=g))
            train.append(F.interpolate(p[..., y0:y0 + c, x0:x0 + c], size=(128, 128), mode="bilinear",
                                       antialias=True))
            labels.append(k)
    to8 = lambda t: torch.cat(t).clamp(0, 255).round().to(torch.uint8)  # noqa: E731
    return to8(train), torch.tensor(labels), to8(centre)


def train_compact(images: torch.Tensor, labels: torch.Tensor, classes: int, steps: int, seed: int
                  ) -> tuple[torch.nn.Module, tuple[float, ...], tuple[float, ...]]:
    torch.manual_seed(seed)
    mean, std = cnnlens.data.base.channel_stats(images)
    x = cnnlens.data.base.normalize(images, mean, std)
    model = cnnlens.create_model("compact", in_channels=images.shape[1], num_classes=classes,
                                 input_size=images.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = F.cross_entropy(model(x[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == labels).float().mean().item()
    print(f"  trained {steps} steps: train accuracy {acc:.2f}", flush=True)
    return model, mean, std


# ---- contenders ------------------------------------------------------------------------------

def lime_package(model, x01: np.ndarray, seg: np.ndarray, target: int, n: int, bs: int, seed: int,
                 mean, std, device: str | torch.device = "cpu") -> np.ndarray:
    """lime's LimeImageExplainer as users call it (its defaults), on our superpixels; weights [M].
    Its classifier function runs the model on ``device`` (the model must be there)."""
    from lime import lime_image

    grey = x01.ndim == 2
    m_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def classifier_fn(imgs: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(imgs).float().permute(0, 3, 1, 2).to(device)
        if grey:
            t = t[:, :1]
        with torch.no_grad():
            return model((t - m_t) / s_t).softmax(1).cpu().numpy()

    expl = lime_image.LimeImageExplainer(random_state=seed)
    e = expl.explain_instance(x01, classifier_fn, labels=(target,), top_labels=None, hide_color=None,
                              num_samples=n, batch_size=bs, segmentation_fn=lambda img: seg, random_seed=seed)
    w = np.zeros(int(seg.max()) + 1)
    for f, v in e.local_exp[target]:
        w[f] = v
    return w


def captum_lime(model, x: torch.Tensor, seg: torch.Tensor, target: int, n: int, bs: int) -> torch.Tensor:
    from captum.attr import Lime

    fwd = lambda t: model(t).softmax(1)  # noqa: E731
    mask = seg[None, None].expand(1, x.shape[1], *seg.shape)
    return Lime(fwd).attribute(x, target=target, feature_mask=mask, n_samples=n, perturbations_per_eval=bs,
                               return_input_shape=False)


def cnnlens_lime(model, x, seg, n, seed, precision, bs=None, sampling="paired") -> torch.Tensor:
    e = cnnlens.explain(model, x, "lime", n_samples=n, seed=seed, segments=seg, precision=precision,
                        batch_size=bs, sampling=sampling)
    return e.extras["weights"][0]


def floor(model, shape, n: int, bs: int, precision: str = "float32", channels_last: bool = True) -> float:
    """``n`` forward passes alone, in chunks of ``bs`` (the model must already be in the layout)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xs = torch.randn(bs, *shape).contiguous(memory_format=fmt)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, bs):
            b = min(bs, n - i)
            if precision == "bfloat16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    model(xs[:b])
            else:
                model(xs[:b])
    return time.perf_counter() - t0


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def overlap(a: list[int], b: list[int]) -> float:
    return len(set(a) & set(b)) / len(a)


def stability(weight_sets: list[list[np.ndarray]], k: int = 5) -> float:
    """Mean over images of the mean pairwise top-k overlap across seeds."""
    per_image = []
    for ws in weight_sets:
        tops = [top_superpixels(torch.as_tensor(w), k) for w in ws]
        pairs = [overlap(tops[i], tops[j]) for i in range(len(tops)) for j in range(i + 1, len(tops))]
        per_image.append(statistics.mean(pairs))
    return statistics.mean(per_image)


# ---- one setting ------------------------------------------------------------------------------

def run_setting(name: str, model, images_u8: torch.Tensor, mean, std, args) -> dict[str, object]:
    c, h, w = images_u8.shape[1:]
    x_all = cnnlens.data.base.normalize(images_u8, mean, std)
    n = args.samples
    auto_bs = auto_batch_size((c, h, w))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    # floor: chunk-size sweep in both memory layouts, interleaved; the floor is the best of all
    import copy

    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    sweep = [(b, cl) for b in (8, 16, 32, 64, 128) for cl in (False, True)]
    f_times: dict[tuple[int, bool], list[float]] = {k: [] for k in sweep}
    for _ in range(args.sweep_repeats):
        for b, cl in sweep:
            f_times[(b, cl)].append(floor(model_cl if cl else model, (c, h, w), n, b, channels_last=cl))
    f_med = {k: statistics.median(v) for k, v in f_times.items()}
    best_bs, best_cl = min(f_med, key=f_med.get)
    print(f"  floor sweep (s per {n} forwards; cl = channels-last): "
          + ", ".join(f"{b}{' cl' if cl else ''}: {t:.3f}" for (b, cl), t in f_med.items())
          + f"; best {best_bs}{' cl' if best_cl else ''}, auto {auto_bs}", flush=True)

    segs = [segment(u, "slic") for u in x_all.mul(torch.tensor(std).view(1, -1, 1, 1))
            .add(torch.tensor(mean).view(1, -1, 1, 1)).clamp(0, 1)]
    n_seg = [int(s.max()) + 1 for s in segs]
    with torch.no_grad():
        probs = model(x_all).softmax(1)
    targets = probs.argmax(1).tolist()
    top = probs.amax(1)
    print(f"  target probabilities {top.min():.3f}..{top.max():.3f} (not saturated: LIME on probabilities "
          "of 1 - 1e-7 would fit float32 rounding)", flush=True)
    x01 = [(u.permute(1, 2, 0).double().numpy() / 255.0) for u in images_u8]
    x01 = [a[..., 0] if c == 1 else a for a in x01]

    # timing: one image per call, interleaved repeats
    t_img = list(range(min(args.timing_images, len(x_all))))
    contenders: dict[str, Callable[[int], object]] = {
        "floor f32 (best chunk)": lambda i: floor(model_cl if best_cl else model, (c, h, w), n, best_bs,
                                                  channels_last=best_cl),
        "floor bf16 (auto chunk)": lambda i: floor(model_cl, (c, h, w), n, auto_bs, "bfloat16"),
        "lime package": lambda i: lime_package(model, x01[i], segs[i].numpy(), targets[i], n, auto_bs, 0, mean, std),
        "cnnlens f32": lambda i: cnnlens_lime(model, x_all[i:i + 1], segs[i], n, 0, "float32"),
        "cnnlens bf16": lambda i: cnnlens_lime(model, x_all[i:i + 1], segs[i], n, 0, "bfloat16"),
    }
    if not args.no_captum:
        contenders["captum Lime"] = lambda i: captum_lime(model, x_all[i:i + 1], segs[i], targets[i], n, auto_bs)
    for k, fn in contenders.items():  # warm-up: imports, allocator, oneDNN primitives
        if k != "captum Lime":
            fn(t_img[0])
    times: dict[str, list[float]] = {k: [] for k in contenders}
    order = random.Random(0)
    for r in range(args.repeats):
        for i in t_img:
            keys = list(contenders)
            order.shuffle(keys)  # no contender always runs right after the same one
            for k in keys:
                if k == "captum Lime" and r >= args.captum_repeats:
                    continue
                times[k].append(timed(lambda: contenders[k](i)))
    med = {k: statistics.median(v) for k, v in times.items() if v}

    # stability across seeds and bf16 agreement
    s_img = list(range(min(args.stability_images, len(x_all))))
    ours, ours_iid, theirs, bf16_same = [], [], [], []
    for i in s_img:
        xi = x_all[i:i + 1]
        ours.append([cnnlens_lime(model, xi, segs[i], n, s, "float32").numpy() for s in range(args.seeds)])
        ours_iid.append([cnnlens_lime(model, xi, segs[i], n, s, "float32", sampling="iid").numpy()
                         for s in range(args.seeds)])
        theirs.append([lime_package(model, x01[i], segs[i].numpy(), targets[i], n, auto_bs, s, mean, std)
                       for s in range(args.seeds)])
    # bf16 vs f32 top-5 (seed 0) on more images than the stability study (two LIME runs per image)
    for i in range(min(args.agreement_images, len(x_all))):
        xi = x_all[i:i + 1]
        f32 = cnnlens_lime(model, xi, segs[i], n, 0, "float32")
        bf = cnnlens_lime(model, xi, segs[i], n, 0, "bfloat16")
        bf16_same.append(set(top_superpixels(bf)) == set(top_superpixels(f32)))
    return {"name": name, "n": n, "auto_bs": auto_bs, "best_bs": best_bs, "floor_sweep": f_med,
            "segments": n_seg, "median": med, "best_cl": best_cl, "timing_images": len(t_img), "stability_images": len(s_img),
            "stab_cnnlens": stability(ours), "stab_cnnlens_iid": stability(ours_iid),
            "stab_lime": stability(theirs), "bf16_top5_equal": sum(bf16_same) / len(bf16_same),
            "agreement_images": len(bf16_same)}


def report(res: dict[str, object]) -> None:
    med = res["median"]
    fl = med["floor f32 (best chunk)"]
    lp = med["lime package"]
    print(f"\n### {res['name']}: {res['n']} samples, superpixels per image {res['segments']}, "
          f"chunk auto {res['auto_bs']} / best {res['best_bs']}{' channels-last' if res['best_cl'] else ''}")
    print("| contender | median s / image | vs f32 floor | speed-up vs lime package |")
    print("|---|---:|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} | {v / fl:.2f}x | {lp / v:.2f}x |")
    print(f"\ntop-5 stability over {res['stability_images']} images x 5 seeds (mean pairwise overlap): "
          f"cnnlens {res['stab_cnnlens']:.3f}, cnnlens iid {res['stab_cnnlens_iid']:.3f}, "
          f"lime package {res['stab_lime']:.3f}; bf16 top-5 == f32 top-5 on {100 * res['bf16_top5_equal']:.0f}% "
          f"of {res['agreement_images']} images", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--captum-repeats", type=int, default=1)
    ap.add_argument("--sweep-repeats", type=int, default=3)
    ap.add_argument("--timing-images", type=int, default=2)
    ap.add_argument("--stability-images", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--agreement-images", type=int, default=20, help="images for bf16 vs f32 top-5 agreement")
    ap.add_argument("--steps-grey", type=int, default=30,
                    help="training steps of the 48x48 model (30: train accuracy 0.94; 8 left it at chance)")
    ap.add_argument("--steps-rgb", type=int, default=20)
    ap.add_argument("--stability-images-rgb", type=int, default=4)
    ap.add_argument("--settings", default="grey48,rgb128")
    ap.add_argument("--no-captum", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny run to check the script")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.repeats, args.sweep_repeats, args.timing_images = 100, 1, 1, 1
        args.stability_images, args.stability_images_rgb, args.seeds, args.steps_grey, args.steps_rgb = 2, 2, 2, 3, 3
        args.agreement_images = 2
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    results = []
    for setting in args.settings.split(","):
        if setting == "grey48":
            print("grey48: compact on 48x48 LFW faces vs non-faces", flush=True)
            imgs, labels = faces_48()
            model, mean, std = train_compact(imgs, labels, 2, args.steps_grey, 0)
            pick = torch.cat([torch.arange(0, 100, 10), torch.arange(105, 200, 10)])  # faces and non-faces
            results.append(run_setting("48x48 grey", model, imgs[pick], mean, std, args))
        elif setting == "rgb128":
            print("rgb128: compact on 128x128 crops of 6 photos", flush=True)
            train, labels, centre = photos_128(24 if not args.quick else 4, 0)
            model, mean, std = train_compact(train, labels, len(PHOTOS), args.steps_rgb, 0)
            test, _, _ = photos_128(2, 1)
            args.stability_images = args.stability_images_rgb
            results.append(run_setting("128x128 RGB", model, torch.cat([centre, test]), mean, std, args))
        else:
            raise SystemExit(f"unknown setting {setting!r}; use grey48, rgb128")
        report(results[-1])


if __name__ == "__main__":
    main()
