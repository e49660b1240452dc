"""LIME, KernelSHAP, occlusion, RISE: oracles (lime, Captum, exact Shapley, the RISE paper's masks),
reproducibility, bounded memory, untouched model, errors."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from cnnlens.explain.perturbation import (auto_batch_size, lime_coalitions, rise_grids, rise_masks, top_k_mask,
                                          weighted_ridge)
from cnnlens.explain.segmentation import grid_segments, segment, to_unit_range


def explain_on(device: torch.device, model: nn.Module, x: torch.Tensor, method: str, **kw):
    """``cnnlens.explain`` on ``device`` (a copy of the model moved there; options such as ``segments``
    stay where the caller made them, on the CPU); the result's tensors come back to the CPU, where the
    references are computed."""
    e = cnnlens.explain(copy.deepcopy(model).to(device), x.to(device), method, **kw)
    assert e.maps.device.type == device.type
    back = lambda v: v.cpu() if isinstance(v, torch.Tensor) else v  # noqa: E731
    return dataclasses.replace(e, maps=e.maps.cpu(), targets=e.targets.cpu(), probs=back(e.probs),
                               extras={k: back(v) for k, v in e.extras.items()})


def tiny_cnn(c: int = 1, k: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(c, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, k))


def image(c: int = 1, s: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, s, s, generator=g)
    x[..., : s // 2, : s // 2] += 2.0  # some structure, so scores vary across superpixels
    return x


class FixedDraw(np.random.RandomState):
    """A RandomState whose one big ``randint`` draw (lime's coalition matrix) is the given matrix."""

    def __init__(self, z: np.ndarray) -> None:
        super().__init__(0)
        self.z = z

    def randint(self, low, high=None, size=None, dtype=int):  # noqa: D401
        if size == self.z.size:
            return self.z.reshape(-1).astype(int).copy()
        return super().randint(low, high, size, dtype)


def lime_package_explanation(model: nn.Module, x: torch.Tensor, seg: torch.Tensor, z: torch.Tensor,
                             target: int, **kw):
    """The lime package's LimeImageExplainer on the same image, segmentation and coalition matrix."""
    from lime import lime_image

    def classifier_fn(imgs: np.ndarray) -> np.ndarray:  # lime hands grey images as RGB
        t = torch.from_numpy(np.ascontiguousarray(imgs[..., 0])).float()[:, None]
        with torch.no_grad():
            return model(t).softmax(1).double().numpy()

    model.eval()
    expl = lime_image.LimeImageExplainer(feature_selection="none", random_state=FixedDraw(z.numpy()), **kw)
    m = int(seg.max()) + 1
    return expl.explain_instance(x[0, 0].double().numpy(), classifier_fn, labels=(target,), top_labels=None,
                                 hide_color=None, num_features=m, num_samples=z.shape[0], batch_size=50,
                                 segmentation_fn=lambda img: seg.numpy(), random_seed=0)


@pytest.mark.parametrize("sampling", ["paired", "iid"])
def test_lime_equals_lime_package_on_same_segments_and_coalitions(sampling, device):
    model = tiny_cnn(1)
    x = image(1, 16)
    seg = grid_segments(16, 16, 16)
    n = 300
    exp = explain_on(device, model, x, "lime", n_samples=n, seed=3, segments=seg, sampling=sampling)
    m = int(seg.max()) + 1
    z = lime_coalitions(n, m, 3, sampling)
    target = int(exp.targets[0])
    ref = lime_package_explanation(model, x, seg, z, target)
    ref_w = np.zeros(m)
    for f, w in ref.local_exp[target]:
        ref_w[f] = w
    ours = exp.extras["weights"][0].double().numpy()
    assert np.abs(ref_w).max() > 1e-4  # a non-trivial explanation
    np.testing.assert_allclose(ours, ref_w, atol=1e-4, rtol=0)
    assert abs(float(exp.extras["intercept"][0]) - ref.intercept[target]) < 1e-4
    assert abs(float(exp.extras["score"][0]) - ref.score) < 1e-4
    # pixel maps carry each superpixel's weight
    assert torch.allclose(exp.maps[0], exp.extras["weights"][0][seg])

    # the top-k mask helper equals lime's get_image_and_mask
    for pos, neg in [(True, False), (False, True), (False, False)]:
        _, ref_mask = ref.get_image_and_mask(target, positive_only=pos, negative_only=neg, num_features=4)
        mask = top_k_mask(seg, exp.extras["weights"][0], k=4, positive_only=pos, negative_only=neg)
        assert np.array_equal(mask.numpy(), ref_mask)


def test_weighted_ridge_equals_sklearn():
    from sklearn.linear_model import Ridge

    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 2, (200, 7), generator=g).double()
    y = z @ torch.randn(7, generator=g, dtype=torch.float64) + 0.1 * torch.randn(200, generator=g,
                                                                                  dtype=torch.float64)
    w = torch.rand(200, generator=g, dtype=torch.float64)
    coef, b, r2 = weighted_ridge(z, y, w, alpha=1.0)
    ref = Ridge(alpha=1.0, fit_intercept=True).fit(z.numpy(), y.numpy(), sample_weight=w.numpy())
    np.testing.assert_allclose(coef.numpy(), ref.coef_, atol=1e-10)
    assert abs(float(b) - ref.intercept_) < 1e-10
    assert abs(float(r2) - ref.score(z.numpy(), y.numpy(), sample_weight=w.numpy())) < 1e-10


def exact_shapley(model: nn.Module, x: torch.Tensor, base: torch.Tensor, seg: torch.Tensor, target: int
                  ) -> np.ndarray:
    """Shapley values by the definition: every coalition S, weights |S|!(M-|S|-1)!/M!."""
    m = int(seg.max()) + 1
    coalitions = list(itertools.product([0, 1], repeat=m))
    imgs = []
    for bits in coalitions:
        keep = torch.tensor(bits, dtype=torch.bool)[seg]
        imgs.append(torch.where(keep, x[0], base))
    model.eval()
    with torch.no_grad():
        v = model(torch.stack(imgs))[:, target].double().numpy()
    value = {bits: v[i] for i, bits in enumerate(coalitions)}
    phi = np.zeros(m)
    for bits in coalitions:
        s = sum(bits)
        for i in range(m):
            if bits[i] == 0:
                with_i = bits[:i] + (1,) + bits[i + 1:]
                wgt = math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m)
                phi[i] += wgt * (value[with_i] - value[bits])
    return phi


@pytest.mark.slow
def test_kernel_shap_exact_path_and_sampling_converge_to_shapley_values(device):
    model = tiny_cnn(1, seed=2)
    x = image(1, 12, seed=5)
    seg = grid_segments(12, 12, 9)  # 3 x 3 = 9 superpixels
    assert int(seg.max()) + 1 == 9
    opts = dict(segments=seg, output="logit", baseline=0.0)
    exp = explain_on(device, model, x, "kernel_shap", n_samples=1024, **opts)
    target = int(exp.targets[0])
    ref = exact_shapley(model, x, torch.zeros_like(x[0]), seg, target)
    assert bool(exp.extras["exact"][0])
    np.testing.assert_allclose(exp.extras["weights"][0].numpy(), ref, atol=1e-5)
    # efficiency: the values add up to f(x) - f(baseline)
    gap = float(exp.extras["full_value"][0] - exp.extras["base_value"][0])
    assert abs(ref.sum() - gap) < 1e-4

    errs = []
    for n in (60, 3000):
        e = explain_on(device, model, x, "kernel_shap", n_samples=n, exact=False, seed=1, **opts)
        assert not bool(e.extras["exact"][0])
        errs.append(np.abs(e.extras["weights"][0].numpy() - ref).max())
    scale = np.abs(ref).max()
    assert errs[1] < 0.05 * scale, (errs, scale)
    assert errs[1] < errs[0]


@pytest.mark.parametrize("output", ["prob", "logit"])
def test_occlusion_equals_captum(output, device):
    from captum.attr import Occlusion

    model = tiny_cnn(3, seed=4)
    x = image(3, 20, seed=2)
    exp = explain_on(device, model, x, "occlusion", window=5, stride=4, baseline=0.0, output=output)

    model.eval()
    fwd = (lambda t: model(t).softmax(1)) if output == "prob" else model
    ref = Occlusion(fwd).attribute(x, sliding_window_shapes=(3, 5, 5), strides=(3, 4, 4), baselines=0.0,
                                   target=int(exp.targets[0]))
    assert ref.abs().max() > 0
    torch.testing.assert_close(exp.maps, ref.sum(1), atol=1e-5, rtol=1e-4)


def test_rise_equals_the_papers_masks_and_average(device):
    """The RISE saliency, recomputed as in Petsiuk et al.'s code: skimage bilinear resize, crop, average."""
    from skimage.transform import resize

    model = tiny_cnn(1, seed=6)
    x = image(1, 16, seed=3)
    n, s, p = 64, 4, 0.5
    exp = explain_on(device, model, x, "rise", n_samples=n, grid=s, p=p, seed=7, batch_size=10)
    grids, dy, dx, (ch, cw) = rise_grids(n, s, p, 16, 16, 7)
    masks = np.empty((n, 16, 16))
    for i in range(n):
        up = resize(grids[i].numpy().astype(np.float64), ((s + 1) * ch, (s + 1) * cw), order=1, mode="reflect",
                    anti_aliasing=False)
        masks[i] = up[dy[i]:dy[i] + 16, dx[i]:dx[i] + 16]
    assert masks.min() >= 0 and masks.max() <= 1 and 0.3 < masks.mean() < 0.7
    np.testing.assert_allclose(rise_masks(grids.to(device), dy, dx, (ch, cw), (16, 16), device).cpu().numpy(),
                               masks, atol=1e-6)
    model.eval()
    with torch.no_grad():
        y = model(x * torch.from_numpy(masks).float()[:, None]).softmax(1)[:, int(exp.targets[0])].double()
    ref = (y.numpy()[:, None, None] * masks).sum(0) / (n * p)
    np.testing.assert_allclose(exp.maps[0].numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("method,opts", [("lime", dict(n_samples=120)), ("kernel_shap", dict(n_samples=120)),
                                         ("rise", dict(n_samples=120)), ("occlusion", {})])
@pytest.mark.slow
def test_same_seed_same_map_bit_for_bit_and_model_untouched(method, opts):
    model = tiny_cnn(1)
    model.train()
    model[0].weight.requires_grad_(False)
    x = torch.cat([image(1, 16, seed=1), image(1, 16, seed=2)])
    a = cnnlens.explain(model, x, method, **opts)
    b = cnnlens.explain(model, x, method, **opts)
    assert torch.equal(a.maps, b.maps)
    assert a.maps.shape == (2, 16, 16) and a.maps.dtype == torch.float32 and torch.isfinite(a.maps).all()
    if method != "occlusion":
        c = cnnlens.explain(model, x, method, seed=1, **opts)
        assert not torch.equal(a.maps, c.maps)
        # each image is seeded alike: explaining it alone gives the same map
        one = cnnlens.explain(model, x[1:], method, **opts)
        assert torch.equal(one.maps[0], a.maps[1])
    bf = cnnlens.explain(model, x, method, precision="bfloat16", **opts)
    assert torch.isfinite(bf.maps).all()
    assert all(m.training for m in model.modules())
    assert not model[0].weight.requires_grad and model[4].weight.requires_grad
    assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0 for m in model.modules())


SIZES: list[int] = []  # module level: the methods run a (channels-last) copy of the model


class Recorder(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.sizes = SIZES

    def forward(self, x):
        SIZES.append(x.shape[0])
        return self.inner(x)


@pytest.mark.parametrize("method", ["lime", "kernel_shap", "rise", "occlusion"])
def test_forward_passes_are_chunked_and_counted(method):
    SIZES.clear()
    rec = Recorder(tiny_cnn(1))
    x = image(1, 16)
    opts = {} if method == "occlusion" else {"n_samples": 100}
    cnnlens.explain(rec, x, method, batch_size=16, **opts)
    sizes = rec.sizes[1:]  # the first pass is the clean image (targets)
    # right after the first scored pass comes the fused CPU copy's check on (up to) two of its images
    # (Scorer._fused_forward)
    assert sizes[1] == min(2, sizes[0])
    sizes = sizes[:1] + sizes[2:]
    assert max(sizes) <= 16  # memory: never more than one chunk of perturbed images
    if method == "lime" or method == "rise":
        assert sum(sizes) == 100
    rec.sizes.clear()
    cnnlens.explain(rec, x, method, **opts)
    assert max(rec.sizes) <= auto_batch_size((1, 16, 16))


def test_bfloat16_lime_agrees_with_float32():
    model = tiny_cnn(1)
    x = image(1, 16)
    seg = grid_segments(16, 16, 16)
    a = cnnlens.explain(model, x, "lime", n_samples=400, segments=seg, output="logit").extras["weights"][0]
    b = cnnlens.explain(model, x, "lime", n_samples=400, segments=seg, output="logit",
                        precision="bfloat16").extras["weights"][0]
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95


def test_segmentation_defaults_give_useful_counts_on_48px_faces_and_128px_photos():
    import skimage.data
    from skimage.transform import resize

    faces = [resize(f, (48, 48), anti_aliasing=True) for f in skimage.data.lfw_subset()[:3]]
    photos = [resize(skimage.data.astronaut(), (128, 128), anti_aliasing=True),
              resize(skimage.data.coffee(), (128, 128), anti_aliasing=True)]
    for method in ("slic", "quickshift", "felzenszwalb", "grid"):
        for img in faces + photos:
            seg = segment(img, method)
            m = int(seg.max()) + 1
            assert 20 <= m <= 70, (method, img.shape, m)
            assert torch.equal(torch.unique(seg), torch.arange(m))  # contiguous labels


def test_to_unit_range_inverts_normalization_or_is_affine_invariant():
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(3, 10, 10, generator=g)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = (raw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(to_unit_range(x, mean, std), raw)
    a = to_unit_range(x)
    assert a.amin((1, 2)).eq(0).all() and a.amax((1, 2)).eq(1).all()
    torch.testing.assert_close(to_unit_range(3.0 * x - 1.0), a)


def test_lime_segments_the_denormalized_image_and_falls_back_to_a_grid_on_noise(caplog):
    model = tiny_cnn(3)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # SLIC merges noise into one
    with caplog.at_level("WARNING"):
        exp = cnnlens.explain(model, x, "lime", n_samples=50)
    assert bool(exp.extras["grid_fallback"][0]) and "regular grid" in caplog.text
    assert exp.extras["n_segments"][0] >= 30


def test_errors_name_the_option():
    model = tiny_cnn(1)
    model.train()
    x = image(1, 16)
    with pytest.raises(ValueError, match="precision"):
        cnnlens.explain(model, x, "lime", precision="fp8")
    with pytest.raises(ValueError, match="n_samples"):
        cnnlens.explain(model, x, "rise", n_samples=0)
    with pytest.raises(ValueError, match="window"):
        cnnlens.explain(model, x, "occlusion", window=40)
    with pytest.raises(ValueError, match="segments"):
        cnnlens.explain(model, x, "lime", segments=torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="n_sample"):
        cnnlens.explain(model, x, "lime", n_sample=10)
    assert all(m.training for m in model.modules())  # restored also on error


@pytest.mark.slow
def test_paired_sampling_is_more_stable_than_lime_iid_sampling():
    """The small version of the benchmark's stability check: across seeds, the default paired coalitions
    give LIME weights closer to each other than lime's iid coalitions (same model, samples, superpixels).
    ``sampling="iid"`` is lime's own estimator (equal to the lime package in the oracle test above)."""
    model = tiny_cnn(1, seed=3)
    x = image(1, 16, seed=4)
    seg = grid_segments(16, 16, 16)

    def spread(sampling: str) -> float:
        w = torch.stack([cnnlens.explain(model, x, "lime", n_samples=200, seed=s, segments=seg,
                                         sampling=sampling).extras["weights"][0] for s in range(6)])
        return float(w.std(0).mean() / w.mean(0).abs().mean())

    assert spread("paired") < 0.8 * spread("iid")


def test_fold_batchnorm_keeps_the_function_and_leaves_the_caller_model_alone():
    import copy

    from cnnlens.explain.scoring import fold_batchnorm

    model = tiny_cnn(3)
    bn = model[1]
    with torch.no_grad():  # non-trivial statistics and affine parameters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    before = [t.clone() for t in model.state_dict().values()]
    work = copy.deepcopy(model)
    assert fold_batchnorm(work) == 1
    assert isinstance(work[1], nn.Identity) and isinstance(model[1], nn.BatchNorm2d)
    # by hand: BN(conv(x)) with the running statistics
    z = model[0](x)
    ref_first = (z - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps) \
        * bn.weight[:, None, None] + bn.bias[:, None, None]
    torch.testing.assert_close(work[0](x), ref_first, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(work(x), model(x), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))
    # left alone: a BN in training mode, a BN not right after a conv, a hooked conv
    train_bn = copy.deepcopy(model).train()
    assert fold_batchnorm(train_bn) == 0
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    assert fold_batchnorm(other) == 0
    hooked = copy.deepcopy(model)
    hooked[0].register_forward_hook(lambda *a: None)
    assert fold_batchnorm(hooked) == 0


def test_lime_on_the_folded_copy_equals_lime_on_the_model():
    # the Scorer's folded, channels-last copy gives the scores of the model itself (up to rounding)
    from cnnlens.explain.scoring import Scorer

    model = tiny_cnn(3)
    with torch.no_grad():
        model[1].running_var.uniform_(0.2, 3)
        model[1].running_mean.uniform_(-1, 1)
    model.eval()
    xs = torch.randn(10, 3, 16, 16)
    sc = Scorer(model, "float32", "prob")
    assert sc.folded == 1 and isinstance(model[1], nn.BatchNorm2d)
    with torch.no_grad():
        ref = model(xs).softmax(1)[:, 2]
    torch.testing.assert_close(sc(xs, 2), ref, rtol=1e-5, atol=1e-6)


class MixesDtypes(nn.Module):
    """Convolves with a bare parameter in forward(): in the bf16 copy that bf16 weight meets the
    first conv's float32 output and F.conv2d fails; autocast runs it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.w = nn.Parameter(torch.randn(4, 6, 3, 3) * 0.2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.a(x)) + torch.zeros(1)
        return self.fc(F.conv2d(h, self.w, padding=1).mean((2, 3)))


def test_bfloat16_scores_follow_float32_and_fall_back_to_autocast_when_the_model_needs_it():
    from cnnlens.explain.scoring import Scorer

    torch.manual_seed(0)
    xs = torch.randn(12, 3, 16, 16)
    for model, mode in [(tiny_cnn(3).eval(), "weights"), (MixesDtypes().eval(), "autocast")]:
        with torch.no_grad():
            ref = model(xs).softmax(1)[:, 1]
        sc = Scorer(model, "bfloat16", "prob")
        got = sc(xs, 1)
        assert sc.bf16_mode == mode
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, ref, rtol=0, atol=2e-2)  # bf16: 8 significant bits inside
        assert not torch.equal(got, ref)  # it did run in reduced precision
        assert next(model.parameters()).dtype == torch.float32  # the caller's model is not converted


def test_bfloat16_copy_keeps_the_first_conv_and_the_head_float32():
    from cnnlens.explain.scoring import Scorer, _bfloat16_copy

    model = tiny_cnn(3).eval()
    bf = _bfloat16_copy(model)
    assert bf[0].weight.dtype == torch.float32 and bf[8].weight.dtype == torch.float32  # first conv, Linear
    assert bf[4].weight.dtype == torch.bfloat16 and bf[1].weight.dtype == torch.bfloat16
    xs = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        ref = model(xs)
        got = bf(xs)  # float32 in: the first conv sees the unrounded input
        first = bf[0](xs)
    assert got.dtype == torch.float32 and first.dtype == torch.float32
    torch.testing.assert_close(first, model[0](xs), rtol=0, atol=0)
    torch.testing.assert_close(got, ref, rtol=0, atol=3e-2)
    # the fused CPU copy computes what the unfused bf16 copy computes
    eager, fused = Scorer(model, "bfloat16", fuse=False), Scorer(model, "bfloat16")
    torch.testing.assert_close(fused(xs, 1), eager(xs, 1), rtol=0, atol=1e-3)
    if fused.fusion is not None:
        assert fused.fusion.counts["convs"] == 2


@pytest.mark.parametrize("limit", [None, 0])  # the one-hot product, and the gather for big matrices
def test_coalition_images_are_exact_copies_of_x_or_the_baseline(limit, monkeypatch):
    from cnnlens.explain import coalitions as P

    if limit is not None:
        monkeypatch.setattr(P, "ONEHOT_LIMIT", limit)
    g = torch.Generator().manual_seed(3)
    x, base = torch.randn(3, 10, 12, generator=g) * 1e3, torch.randn(3, 10, 12, generator=g)
    seg = torch.randint(0, 7, (10, 12), generator=g)
    z = torch.randint(0, 2, (9, 7), generator=g).bool()
    seen = []

    def scorer(imgs, target):
        seen.append(imgs.clone())
        return imgs.sum((1, 2, 3))

    out = P.coalition_scores(scorer, x, base, seg, z, 0, 4)
    imgs = torch.cat(seen)
    assert [len(s) for s in seen] == [4, 4, 1]
    want = torch.where(z[:, seg][:, None], x, base)  # keep where the pixel's superpixel is in z
    assert torch.equal(imgs, want)
    torch.testing.assert_close(out, want.sum((1, 2, 3)))
