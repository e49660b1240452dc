"""cnnlens's attribution methods against Captum and pytorch-grad-cam, and against the compute floor.

Same model, same batch, same targets, one process; every (method, implementation) is timed in
interleaved repeats (a fresh random order each repeat); the median per-image time is reported with
the ratio to the peer and to one raw forward+backward pass. The targets are the model's predicted
classes, computed once outside the timing and handed to every tool as class indices (cnnlens too:
``target=t``, not ``"pred"``), so no row pays a forward to find the predicted class. cnnlens by default
returns ``probs`` (the softmax on the clean input) and, for IG, the completeness gap: the peer rows
``captum + clean forward`` (SmoothGrad) and ``captum + convergence delta`` (IG) add what Captum needs
for the same output; the plain ``captum`` rows compute the maps only, and are also set against
``cnnlens probs=False`` (no probs, no IG delta: no forward on the clean input).

    python benchmarks/explain.py [--repeats 5] [--batch 32] [--models compact,resnet] [--device cpu]
                                 [--methods saliency,gradcam,many,...] [--clock wall|cpu]

Models: ``compact``, ``resnet`` (a small ResNet-ish), and timm's (random weights, 3x64x64 input):
``vit_tiny`` (vit_tiny_patch16_224 at 64x64: a class token + 4x4 grid), ``swin_tiny``
(swin_tiny_patch4_window7_224 at 64x64, window 4), ``convnext_atto``, ``resnet18``. On the
transformers pytorch-grad-cam gets its documented ``reshape_transform`` and the layer cnnlens picks;
Captum's layer methods (LayerGradCam, GuidedGradCam) cannot read token/channels-last layers and are
left out there.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from cnnlens.explain import explain_many
from cnnlens.explain.core import default_layer

warnings.filterwarnings("ignore")


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + self.down(x))


class SmallResNet(nn.Module):
    """ResNet-ish: stem 32, blocks 32-64-128 (strides 1,2,2), global average pool, FC."""

    def __init__(self, num_classes: int = 11) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.layers = nn.Sequential(Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


def models(names: list[str]) -> list[tuple[str, nn.Module, tuple[int, int, int]]]:
    out = []
    for n in names:
        torch.manual_seed(0)
        if n == "compact":
            out.append(("compact 1x48x48", cnnlens.create_model("compact", in_channels=1, num_classes=7,
                                                                 input_size=48), (1, 48, 48)))
        elif n == "resnet":
            out.append(("resnet-ish 3x64x64", SmallResNet(), (3, 64, 64)))
        elif n in TIMM:
            import timm

            name, kw = TIMM[n]
            model = timm.create_model(name, pretrained=False, num_classes=10, **kw)
            out.append((f"timm {name} 3x64x64", model, (3, 64, 64)))
        else:
            raise SystemExit(f"unknown model {n!r}; use compact,resnet,{','.join(TIMM)}")
    return out


TIMM = {"vit_tiny": ("vit_tiny_patch16_224", {"img_size": 64}),
        "swin_tiny": ("swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 4}),
        "convnext_atto": ("convnext_atto", {}), "resnet18": ("resnet18", {})}


def reshape_for(model: nn.Module, x: torch.Tensor) -> Callable | None:
    """pytorch-grad-cam's documented ``reshape_transform`` for a ViT (class token dropped, tokens on
    the grid) or a Swin (channels-last stage output); ``None`` for a CNN."""
    from cnnlens.explain.layers import default_layer_view

    view = default_layer_view(model, x[:1])[2]
    if view.kind == "tokens":
        p, (h, w) = view.prefix, view.grid

        def vit(t: torch.Tensor) -> torch.Tensor:
            return t[:, p:, :].reshape(t.size(0), h, w, t.size(2)).transpose(2, 3).transpose(1, 2)
        return vit
    if view.kind == "nhwc":
        return lambda t: t.transpose(2, 3).transpose(1, 2)
    return None


def fwd_bwd(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
    xg = x.detach().requires_grad_(True)
    torch.autograd.grad(model(xg).gather(1, t[:, None]).sum(), xg)


def pgc_runner(cls_name: str, model: nn.Module, layer: nn.Module, batch_size: int | None = None,
               reshape: Callable | None = None) -> Callable[[torch.Tensor, torch.Tensor], object]:
    import pytorch_grad_cam as pgc
    import pytorch_grad_cam.score_cam as score_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # ScoreCAM's tqdm progress bar (per image) off: quiet output, and no drawing cost in its timing
    score_cam.tqdm = type("NoBar", (), {"tqdm": staticmethod(lambda it, *a, **k: it)})

    def run(x: torch.Tensor, t: torch.Tensor) -> object:
        with getattr(pgc, cls_name)(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
            if batch_size:
                cam.batch_size = batch_size
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])

    return run


def cases(model: nn.Module, layer: nn.Module, ig_steps: int, nt: int, reshape: Callable | None = None
          ) -> list[tuple[str, str, Callable]]:
    """(method, implementation, fn(x, t)) triples; ``reshape``: pytorch-grad-cam's reshape_transform
    (a transformer: Captum's layer methods are left out)."""
    import captum.attr as ca

    def ours(method: str, **o: object) -> Callable:
        return lambda x, t: cnnlens.explain(model, x, method, target=t, **o)

    def cap_layer_gc(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = ca.LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)
        return ca.LayerAttribution.interpolate(a, tuple(x.shape[-2:]), interpolate_mode="bilinear")

    def cap_nt(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ca.NoiseTunnel(ca.Saliency(model)).attribute(
            x, target=t, nt_type="smoothgrad", nt_samples=nt, stdevs=0.15 * float(x.max() - x.min()))

    def clean_probs(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x).softmax(1)

    out = [
        ("saliency", "cnnlens", ours("saliency")),
        ("saliency", "captum", lambda x, t: ca.Saliency(model).attribute(x, target=t, abs=True)),
        ("gradient_x_input", "cnnlens", ours("gradient_x_input")),
        ("gradient_x_input", "captum", lambda x, t: ca.InputXGradient(model).attribute(x, target=t)),
        ("smoothgrad", "cnnlens", ours("smoothgrad", n_samples=nt)),
        ("smoothgrad", "captum", lambda x, t: cap_nt(x, t)),
        # cnnlens also returns probs (the softmax on the clean input): Captum's maps plus that forward
        ("smoothgrad", "captum + clean forward", lambda x, t: (cap_nt(x, t), clean_probs(x))),
        # asked for no probs, cnnlens runs no clean forward either: the same output as plain Captum
        ("smoothgrad", "cnnlens probs=False", ours("smoothgrad", n_samples=nt, probs=False)),
        ("integrated_gradients", "cnnlens", ours("integrated_gradients", steps=ig_steps)),
        ("integrated_gradients", "captum", lambda x, t: ca.IntegratedGradients(model).attribute(
            x, baselines=0.0, target=t, n_steps=ig_steps)),
        # cnnlens always reports IG's completeness gap (extras['delta']); Captum's same output
        ("integrated_gradients", "captum + convergence delta", lambda x, t: ca.IntegratedGradients(
            model).attribute(x, baselines=0.0, target=t, n_steps=ig_steps, return_convergence_delta=True)),
        ("integrated_gradients", "cnnlens probs=False",
         ours("integrated_gradients", steps=ig_steps, probs=False)),
        ("guided_backprop", "cnnlens", ours("guided_backprop")),
        ("guided_backprop", "captum", lambda x, t: ca.GuidedBackprop(model).attribute(x, target=t)),
        ("deconvnet", "cnnlens", ours("deconvnet")),
        ("deconvnet", "captum", lambda x, t: ca.Deconvolution(model).attribute(x, target=t)),
        ("gradcam", "cnnlens", ours("gradcam")),
        ("gradcam", "captum", cap_layer_gc),
        ("gradcam", "pytorch-grad-cam", pgc_runner("GradCAM", model, layer, reshape=reshape)),
        ("gradcam_pp", "cnnlens", ours("gradcam_pp")),
        ("gradcam_pp", "pytorch-grad-cam", pgc_runner("GradCAMPlusPlus", model, layer, reshape=reshape)),
        ("xgradcam", "cnnlens", ours("xgradcam")),
        ("xgradcam", "pytorch-grad-cam", pgc_runner("XGradCAM", model, layer, reshape=reshape)),
        ("layercam", "cnnlens", ours("layercam")),
        ("layercam", "pytorch-grad-cam", pgc_runner("LayerCAM", model, layer, reshape=reshape)),
        ("eigencam", "cnnlens", ours("eigencam")),
        ("eigencam", "pytorch-grad-cam", pgc_runner("EigenCAM", model, layer, reshape=reshape)),
        ("guided_gradcam", "cnnlens", ours("guided_gradcam")),
        ("guided_gradcam", "captum", lambda x, t: ca.GuidedGradCam(model, layer).attribute(
            x, target=t, interpolate_mode="bilinear")),
    ]
    if reshape is not None:
        out = [c for c in out if not (c[1] == "captum" and c[0] in ("gradcam", "guided_gradcam"))]
    return out


#: the clock a job is timed with: ``wall`` (time.perf_counter) or ``cpu`` (this process's CPU time,
#: time.process_time: on a CPU shared with other jobs it leaves out the time the process waited for a
#: core; with one torch thread it is the work done)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def timeit(fn: Callable[[], object]) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def bench_model(label: str, model: nn.Module, shape: tuple[int, int, int], batch: int, repeats: int,
                device: str, ig_steps: int, nt: int, score_batch: int, only: list[str] | None = None
                ) -> dict[str, object]:
    """Prints the table; returns ``{"floor_ms": .., "rows": [{method, cnnlens_ms, peer, peer_ms}, ..]}``
    (milliseconds per image, medians)."""
    model = model.to(device).eval()
    torch.manual_seed(1)
    x = torch.randn(batch, *shape, device=device)
    with torch.no_grad():
        t = model(x).argmax(1)
    _, layer = default_layer(model, x)  # the layer cnnlens picks by default, given to the peers too
    reshape = reshape_for(model, x)
    cs = cases(model, layer, ig_steps, nt, reshape)
    xs, ts = x[:score_batch], t[:score_batch]
    # each tool at its defaults: cnnlens sizes its passes itself, pytorch-grad-cam runs 16 masks a pass
    score = [("scorecam", "cnnlens", lambda: cnnlens.explain(model, xs, "scorecam", target=ts)),
             ("scorecam", "pytorch-grad-cam",
              lambda: pgc_runner("ScoreCAM", model, layer, reshape=reshape)(xs, ts))]
    jobs: list[tuple[str, str, Callable[[], object], int]] = [("forward+backward", "raw", lambda: fwd_bwd(model, x, t), batch)]
    jobs += [(m, impl, (lambda f=f: f(x, t)), batch) for m, impl, f in cs]
    jobs += [(m, impl, f, score_batch) for m, impl, f in score]
    trio = ["saliency", "gradcam", "gradient_x_input"]
    jobs.append(("saliency+gradcam+gradient_x_input", "explain_many",
                 lambda: explain_many(model, x, trio, target=t), batch))
    jobs.append(("saliency+gradcam+gradient_x_input", "3 explain calls",
                 lambda: [cnnlens.explain(model, x, m, target=t) for m in trio], batch))
    if only:
        keep = set(only) | {"forward+backward"}
        if "many" in keep:
            keep.add("saliency+gradcam+gradient_x_input")
        jobs = [j for j in jobs if j[0] in keep]
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for _, _, fn, _ in jobs:  # warm-up
        fn()
    times: dict[tuple[str, str], list[float]] = {(m, i): [] for m, i, _, _ in jobs}
    # a fresh random order each repeat: a job must not always follow the same one (numpy's BLAS
    # threads keep spinning for a while after pytorch-grad-cam's SVD and slow whatever runs next)
    rng = random.Random(0)
    for _ in range(repeats):
        order = list(jobs)
        rng.shuffle(order)
        for m, i, fn, n in order:
            sync()
            times[(m, i)].append(timeit(lambda: (fn(), sync())) / n)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    floor = med[("forward+backward", "raw")]
    clock_name = next(k for k, v in CLOCKS.items() if v is clock)
    print(f"\n### {label}, batch {batch} (scorecam: {score_batch}), {device}, median of {repeats} "
          f"interleaved repeats, {clock_name} clock")
    print(f"layer: {default_layer(model, x)[0]}"
          + (" (pytorch-grad-cam: with reshape_transform)" if reshape else ""))
    print(f"raw forward+backward: {floor:.3f} ms/image\n")
    print("| method | cnnlens ms/img | x fwd+bwd | peer | peer ms/img | cnnlens / peer |")
    print("|---|---:|---:|---|---:|---:|")
    methods = list(dict.fromkeys(m for m, i, _, _ in jobs if i == "cnnlens"))
    rows: list[dict[str, object]] = []
    out: dict[str, object] = {"model": label, "batch": batch, "score_batch": score_batch, "floor_ms": floor,
                              "rows": rows}
    for m in methods:
        # cnnlens at its defaults against every peer; "cnnlens probs=False" (no clean forward, no
        # probs, no IG delta) against plain Captum, which returns the maps only
        mine = [(i, v) for (mm, i), v in med.items() if mm == m and i.startswith("cnnlens")]
        peers = [(i, v) for (mm, i), v in med.items() if mm == m and not i.startswith("cnnlens")]
        for variant, ours in mine:
            name = m if variant == "cnnlens" else f"{m} ({variant.removeprefix('cnnlens ')})"
            for i, v in peers:
                if variant != "cnnlens" and i != "captum":
                    continue
                print(f"| {name} | {ours:.3f} | {ours / floor:.2f} | {i} | {v:.3f} | {ours / v:.2f} |")
                rows.append({"method": name, "cnnlens_ms": ours, "peer": i, "peer_ms": v})
    if ("saliency+gradcam+gradient_x_input", "explain_many") not in med:
        return out
    many = med[("saliency+gradcam+gradient_x_input", "explain_many")]
    sep = med[("saliency+gradcam+gradient_x_input", "3 explain calls")]
    print(f"| saliency+gradcam+gradient_x_input | {many:.3f} (explain_many) | {many / floor:.2f} | "
          f"3 separate explain calls | {sep:.3f} | {many / sep:.2f} |")
    rows.append({"method": "saliency+gradcam+gradient_x_input", "cnnlens_ms": many,
                 "peer": "3 separate explain calls", "peer_ms": sep})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--score-batch", type=int, default=4)
    ap.add_argument("--ig-steps", type=int, default=32)
    ap.add_argument("--nt-samples", type=int, default=8)
    ap.add_argument("--models", default="compact,resnet")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default="", help="only these (comma-separated; 'many' = the explain_many trio)")
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                    help="wall time, or this process's CPU time (fairer on a loaded, shared CPU; 1 thread)")
    a = ap.parse_args()
    global clock
    clock = CLOCKS[a.clock]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for label, model, shape in models(a.models.split(",")):
        bench_model(label, model, shape, a.batch, a.repeats, a.device, a.ig_steps, a.nt_samples, a.score_batch,
                    [m for m in a.methods.split(",") if m] or None)


if __name__ == "__main__":
    main()
