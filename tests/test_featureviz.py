"""Feature visualization on a small CNN trained here on synthetic 48x48 grey data.

Every quality metric is measured on the exported image (8-bit, in range) with code written here,
independently of cnnlens.featureviz (own hooks, reflect-pad shifts, torchvision rotation, numpy FFT).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

import cnnlens.featureviz as fv
from cnnlens.featureviz import transforms as T
from cnnlens.models import create_model
from conftest import layer_output

SIZE = 48


# ---- a quick synthetic task: 4 classes of stripes / discs, trained with a plain torch loop ------------


def make_data(n_per: int = 96, size: int = SIZE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [4*n_per, 1, size, size]: horizontal, vertical stripes, a bright disc, diagonal stripes."""
    g = torch.Generator().manual_seed(seed)
    n = 4 * n_per
    labels = torch.arange(4).repeat_interleave(n_per)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    f = ((torch.rand(n, generator=g) * 3 + 3) / size * 2 * math.pi).view(n, 1, 1)
    ph = (torch.rand(n, generator=g) * 2 * math.pi).view(n, 1, 1)
    c = torch.rand(n, 2, generator=g) * 24 + 12
    r = (torch.rand(n, generator=g) * 6 + 5).view(n, 1, 1)
    lab = labels.view(n, 1, 1)
    coord = torch.where(lab == 0, yy, torch.where(lab == 1, xx, (xx + yy) / math.sqrt(2)))
    waves = 0.5 + 0.4 * torch.sin(f * coord + ph)
    disc = 0.15 + 0.7 * (((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) < r * r).float()
    im = torch.where(lab == 2, disc, waves) + 0.08 * torch.randn(n, size, size, generator=g)
    return (im.clamp(0, 1)[:, None] * 255).round().to(torch.uint8), labels


class Trained:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.u8, self.labels = make_data()
        x = self.u8.float() / 255
        self.mean, self.std = (x.mean().item(),), (x.std().item(),)
        self.x = (x - self.mean[0]) / self.std[0]
        m = create_model(
            "compact", in_channels=1, num_classes=4, input_size=SIZE, widths=(8, 16, 16), fc=(32,)
        )
        opt = torch.optim.Adam(m.parameters(), 3e-3)
        g = torch.Generator().manual_seed(0)
        m.train()
        for _ in range(40):
            idx = torch.randint(0, len(self.x), (32,), generator=g)
            loss = F.cross_entropy(m(self.x[idx]), self.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        m.eval()
        self.model = m

    def norm(self, img01: torch.Tensor) -> torch.Tensor:
        return (img01 - self.mean[0]) / self.std[0]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine's 2 cores are shared by many jobs; several threads per process then spin
    against each other (10x slower here). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _threads():
    """Overrides conftest's per-test thread setting with the single thread explained above."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained() -> Trained:
    t = Trained()
    with torch.no_grad():
        acc = (t.model(t.x).argmax(1) == t.labels).float().mean().item()
    assert acc > 0.9, f"the synthetic task did not train (accuracy {acc:.2f})"
    return t


# ---- independent measurements ---------------------------------------------------------------------


def channel_means(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """[N, K] spatial mean of ``layer``'s output, with a plain forward hook."""
    return layer_output(model, layer, x).mean((2, 3))


def shift_rotate(img01: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image shifted by a random +-3 px (reflecting) and rotated by a random +-10 deg."""
    out = []
    for im in img01:
        dy, dx = torch.randint(-3, 4, (2,), generator=g).tolist()
        ang = float(torch.rand(1, generator=g) * 20 - 10)
        p = F.pad(im[None], (3, 3, 3, 3), mode="reflect")[0][
            :, 3 + dy : 3 + dy + SIZE, 3 + dx : 3 + dx + SIZE
        ]
        out.append(TF.rotate(p, ang, interpolation=TF.InterpolationMode.BILINEAR, fill=float(im.mean())))
    return torch.stack(out)


def retained(t: Trained, layer: str, img01: torch.Tensor, chans: torch.Tensor, reps: int = 4) -> float:
    """Median over images of mean_r act(T_r x) / act(x) for each image's own channel."""
    rows = torch.arange(len(chans))
    base = channel_means(t.model, layer, t.norm(img01))[rows, chans]
    g = torch.Generator().manual_seed(123)
    moved = torch.stack(
        [channel_means(t.model, layer, t.norm(shift_rotate(img01, g)))[rows, chans] for _ in range(reps)]
    ).mean(0)
    return float((moved / base).median())


def high_freq_fractions(img01: torch.Tensor) -> np.ndarray:
    """Per image: fraction of (mean-removed) power above 0.25 cycles/pixel, numpy FFT."""
    a = img01[:, 0].double().numpy()
    a = a - a.mean((1, 2), keepdims=True)
    p = np.abs(np.fft.fft2(a)) ** 2
    fy = np.fft.fftfreq(a.shape[1])[:, None]
    fx = np.fft.fftfreq(a.shape[2])[None, :]
    hi = np.sqrt(fx**2 + fy**2) > 0.25
    tot = p.sum((1, 2))
    return np.where(tot > 0, (p * hi).sum((1, 2)) / np.maximum(tot, 1e-30), 0.0)


def selectivity(t: Trained, layer: str, img01: torch.Tensor, chans: torch.Tensor) -> float:
    a = channel_means(t.model, layer, t.norm(img01))
    z = (a - a.mean(1, keepdim=True)) / a.std(1, keepdim=True)
    return float(z[torch.arange(len(chans)), chans].median())


def exported(img: torch.Tensor) -> torch.Tensor:
    """What a PNG stores: uint8, read back as [0,1]."""
    u8 = (img * 255).round().clamp(0, 255).to(torch.uint8)
    return u8.float() / 255


# ---- the rendered layer (shared by the quality tests) -------------------------------------------------

LAYER = "cnn.8"  # third conv; read after its BatchNorm (cnn.9), pre-ReLU


@pytest.fixture(scope="module")
def filters(trained: Trained) -> fv.FilterViz:
    return fv.visualize_filters(
        trained.model, LAYER, input_size=SIZE, mean=trained.mean, std=trained.std, steps=128, lr=0.1, seed=0
    )


@pytest.fixture(scope="module")
def naive(trained: Trained, filters: fv.FilterViz) -> fv.Rendered:
    k = len(filters.channels)
    return fv.naive_pixel_ascent(
        trained.model,
        fv.channel(filters.layer, torch.arange(k)),
        input_size=SIZE,
        mean=trained.mean,
        std=trained.std,
        batch=k,
        steps=30,
        seed=0,
    )


@pytest.mark.slow
def test_filters_reach_dataset_maximum_in_range_grey(trained, filters):
    assert filters.layer == "cnn.9"  # the BatchNorm right after conv cnn.8
    img = filters.images
    assert img.shape == (16, 1, SIZE, SIZE)  # grey model -> one-channel images
    assert torch.isfinite(img).all()
    assert img.min() >= 0 and img.max() <= 1
    assert torch.equal(exported(img), img)  # 8-bit exact: what is measured is what is saved
    chans = filters.channels
    real_max = channel_means(trained.model, filters.layer, trained.x).amax(0)[chans]
    reached = channel_means(trained.model, filters.layer, trained.norm(exported(img)))[
        torch.arange(16), chans
    ]
    frac = (reached >= real_max).float().mean().item()
    assert frac >= 0.95, f"only {frac:.0%} of channels reach their dataset maximum: {reached / real_max}"
    torch.testing.assert_close(filters.activations, reached, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_filters_are_selective(trained, filters, naive):
    sel = selectivity(trained, filters.layer, exported(filters.images), filters.channels)
    assert sel >= 1.0, sel


@pytest.mark.slow
def test_not_adversarial_noise_and_better_than_naive(trained, filters, naive):
    chans = filters.channels
    ours_img, naive_img = exported(filters.images), exported(naive.images)
    # the baseline is a fair one: it does maximize its objective
    real_max = channel_means(trained.model, filters.layer, trained.x).amax(0)[chans]
    naive_act = channel_means(trained.model, filters.layer, trained.norm(naive_img))[torch.arange(16), chans]
    assert (naive_act >= real_max).float().mean() >= 0.9
    rob, rob_naive = (
        retained(trained, filters.layer, ours_img, chans),
        retained(trained, filters.layer, naive_img, chans),
    )
    hf, hf_naive = (
        float(np.median(high_freq_fractions(ours_img))),
        float(np.median(high_freq_fractions(naive_img))),
    )
    assert rob >= 0.6, rob
    assert hf <= 0.55, hf
    assert rob >= rob_naive + 0.1, (rob, rob_naive)
    assert hf <= hf_naive - 0.2, (hf, hf_naive)
    # our own metric agrees with the independent numpy one
    np.testing.assert_allclose(
        fv.high_frequency_power(ours_img).numpy(), high_freq_fractions(ours_img), atol=1e-5
    )


@pytest.mark.slow
def test_class_visualization_is_confident_and_robust(trained):
    r = fv.visualize_classes(
        trained.model,
        [0, 1, 2, 3],
        input_size=SIZE,
        mean=trained.mean,
        std=trained.std,
        steps=96,
        lr=0.1,
        seed=0,
    )
    img = exported(r.images)
    with torch.no_grad():
        p = torch.softmax(trained.model(trained.norm(img)), 1).diagonal()
        g = torch.Generator().manual_seed(7)
        pj = torch.stack(
            [torch.softmax(trained.model(trained.norm(shift_rotate(img, g))), 1).diagonal() for _ in range(4)]
        ).mean(0)
    assert (p >= 0.75).all(), p
    assert (pj >= 0.7).all(), pj
    assert r.objective.startswith("class_logit")


# ---- objectives ------------------------------------------------------------------------------------


def test_objective_values_and_arithmetic():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    logits = torch.tensor([[1.0, 5.0, -2.0], [0.5, 0.0, 3.0]])
    acts = {"L": a, "logits": logits}
    # channel: image i reads channel k_i, mean over positions
    assert torch.equal(fv.channel("L", [2, 0])(acts), torch.stack([a[0, 2].mean(), a[1, 0].mean()]))
    assert torch.equal(fv.channel("L", 1)(acts), a[:, 1].mean((1, 2)))
    assert torch.equal(fv.neuron("L", 1, 0, 1)(acts), a[:, 1, 0, 1])
    assert torch.equal(fv.class_logit([1, 2])(acts), torch.tensor([5.0, 3.0]))  # the logit, not the softmax
    combo = 2 * fv.channel("L", 0) - fv.channel("L", 1) / 2 + 1.0
    expected = 2 * a[:, 0].mean((1, 2)) - a[:, 1].mean((1, 2)) / 2 + 1.0
    torch.testing.assert_close(combo(acts), expected)
    assert sum([fv.channel("L", 0), fv.class_logit(0)]).layers == ("L", "logits")
    torch.testing.assert_close(fv.layer_l2("L")(acts), a.pow(2).flatten(1).mean(1))
    # diversity: identical images are maximally similar (-1), orthogonal Gram matrices score 0
    same = {"L": torch.ones(3, 2, 2, 2)}
    torch.testing.assert_close(fv.diversity("L")(same), torch.full((3,), -1.0))
    ortho = torch.zeros(2, 2, 1, 1)
    ortho[0, 0] = 1
    ortho[1, 1] = 1
    torch.testing.assert_close(fv.diversity("L")({"L": ortho}), torch.zeros(2))
    with pytest.raises(ValueError, match="out of range"):
        fv.channel("L", 3)(acts)
    with pytest.raises(ValueError, match="one per image"):
        fv.channel("L", [0, 1, 2])(acts)
    with pytest.raises(TypeError):
        fv.channel("L", 0) * fv.channel("L", 1)


# ---- parameterizations and transforms --------------------------------------------------------------


def test_params_grey_rgb_and_pixel_inverse():
    g = torch.Generator().manual_seed(0)
    grey = fv.FourierImage((2, 1, 20, 24), generator=g)()
    rgb = fv.FourierImage((2, 3, 20, 24), generator=g)()
    assert grey.shape == (2, 1, 20, 24) and rgb.shape == (2, 3, 20, 24)
    for im in (grey, rgb):
        assert torch.isfinite(im).all() and im.min() > 0 and im.max() < 1
    target = torch.rand(1, 3, 8, 8, generator=g) * 0.9 + 0.05
    torch.testing.assert_close(fv.PixelImage((1, 3, 8, 8), init=target)(), target, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="channels"):
        fv.FourierImage((1, 2, 8, 8))


def test_fourier_scaling_is_one_over_f():
    # the spectrum parameter s maps linearly to the pre-sigmoid image; its amplitude at frequency f
    # is scaled by 1/f: check with a single active coefficient at (ky, kx) = (0, 4) and (0, 8)
    p = fv.FourierImage((1, 1, 32, 32))
    amps = []
    for kx in (4, 8):
        with torch.no_grad():
            p.spectrum.zero_()
            p.spectrum[0, 0, 0, kx, 0] = 1.0
            pre = torch.logit(p().double().clamp(1e-12, 1 - 1e-12)) * 4.0
        amps.append(float(torch.fft.rfft2(pre, norm="ortho")[0, 0, 0, kx].abs()))
    assert amps[0] / amps[1] == pytest.approx(2.0, rel=1e-3)


def test_high_frequency_power_hand_cases():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    low = torch.cos(2 * math.pi * 3 / 32 * xx)[None, None]  # 0.094 cycles/pixel
    high = torch.cos(2 * math.pi * 12 / 32 * yy)[None, None]  # 0.375 cycles/pixel
    out = fv.high_frequency_power(torch.cat([low, high, torch.ones(1, 1, 32, 32)]))
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 0.0]), atol=1e-5, rtol=0)
    noise = torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert float(fv.high_frequency_power(noise).mean()) == pytest.approx(1 - math.pi * 0.25**2, abs=0.03)


def test_transforms_shift_exactly_per_image_and_differentiably():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 16, 16, generator=g, requires_grad=True)
    y = T.jitter(2)(x, torch.Generator().manual_seed(1))
    # every output image is its input shifted by an integer offset: interior pixels match a roll
    for i in range(6):
        hits = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.allclose(
                y[i, :, 3:-3, 3:-3], torch.roll(x[i], (dy, dx), (-2, -1))[:, 3:-3, 3:-3], atol=1e-5
            )
        ]
        assert len(hits) == 1
    z = T.compose(T.standard((16, 16)))(x, g)
    assert z.shape == x.shape
    z.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    ident = T.random_affine((1.0, 1.0), 0.0)(x, g)
    torch.testing.assert_close(ident, x)


# ---- render loop contract ---------------------------------------------------------------------------


def test_seeded_reproducible_and_larger_render(trained):
    kw = dict(input_size=SIZE, mean=trained.mean, std=trained.std, batch=2, steps=8, lr=0.1)
    o = fv.channel("cnn.1", [0, 1])
    a = fv.render(trained.model, o, seed=3, **kw)
    b = fv.render(trained.model, o, seed=3, **kw)
    c = fv.render(trained.model, o, seed=4, **kw)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    big = fv.render(trained.model, o, size=64, seed=3, **kw)
    assert big.images.shape == (2, 1, 64, 64) and big.inputs.shape == (2, 1, SIZE, SIZE)
    assert a.history.shape == (8, 2)


def test_rgb_model_non_square_input_gets_colour_images():
    torch.manual_seed(0)
    m = create_model(
        "compact", in_channels=3, num_classes=3, input_size=(40, 56), widths=(4, 8), fc=(8,)
    ).eval()
    r = fv.render(
        m,
        fv.channel("cnn.4", [0, 1]),
        input_size=(40, 56),
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.2, 0.2),
        batch=2,
        steps=4,
        lr=0.1,
    )
    assert r.images.shape == (2, 3, 40, 56)  # the model's own size, never 224
    assert torch.isfinite(r.images).all() and r.images.min() >= 0 and r.images.max() <= 1
    assert (r.images[:, 0] - r.images[:, 1]).abs().max() > 0  # colour, not grey copied three times
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(r.inputs, (r.images - mean) / 0.2)


def snapshot(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in model.modules()
        ),
    )


def test_model_comes_back_untouched_also_on_error(trained):
    m = trained.model
    m.train()
    for p in list(m.parameters())[:2]:
        p.requires_grad_(False)
    before = snapshot(m)
    try:
        kw = dict(mean=trained.mean, std=trained.std)
        fv.render(m, fv.channel("cnn.1", [0, 1]), input_size=SIZE, batch=2, steps=2, **kw)
        fv.feature_maps(m, trained.x[:1], "cnn.0")
        fv.dataset_examples(m, trained.x[:20], "cnn.4", [0, 1], k=2)
        fv.deep_dream(m, trained.u8[0], "cnn.4", 0, steps=2, every=1, octaves=2, **kw)
        assert snapshot(m) == before
        with pytest.raises(ValueError, match="out of range"):
            fv.render(m, fv.channel("cnn.1", 99), input_size=SIZE, steps=2, **kw)
        assert snapshot(m) == before
        with pytest.raises(ValueError, match="valid layer names"):
            fv.visualize_filters(m, "nope", input_size=SIZE, steps=2, **kw)
        assert snapshot(m) == before
    finally:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(True)


def test_layer_by_index_and_bn_resolution(trained):
    m = trained.model
    assert fv.resolve_layer(m, 8)[0] == "cnn.8"
    assert fv.resolve_layer(m, "8")[0] == "cnn.8"
    assert fv.filter_layer(m, "cnn.8")[0] == "cnn.9"
    assert fv.filter_layer(m, "cnn.8", bn=False)[0] == "cnn.8"
    assert fv.filter_layer(m, "cnn.10")[0] == "cnn.10"  # not a conv: used as given
    with pytest.raises(ValueError, match="out of range"):
        fv.resolve_layer(m, 99)


# ---- feature maps and dataset examples ---------------------------------------------------------------


def test_feature_maps_equal_conv_then_batchnorm(trained):
    m = trained.model
    x = trained.x[100:102]
    conv, bn = m.cnn[0], m.cnn[1]
    raw = F.conv2d(x, conv.weight, conv.bias, padding=1)
    ref = F.batch_norm(raw, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    fm = fv.feature_maps(m, x, "cnn.0")
    assert fm.layer == "cnn.1" and fm.maps.shape == (2, 8, SIZE, SIZE)
    torch.testing.assert_close(fm.maps, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        fv.feature_maps(m, x[0], "cnn.0", bn=False).maps, raw[:1], atol=1e-5, rtol=1e-5
    )


def test_dataset_examples_top_k_and_receptive_field(trained):
    m = trained.model
    ex = fv.dataset_examples(m, trained.x, "cnn.4", [0, 5, 9], k=3, batch_size=100)
    assert ex.layer == "cnn.5"
    means = channel_means(m, "cnn.5", trained.x)[:, [0, 5, 9]]
    ref_vals, ref_idx = means.topk(3, dim=0)
    assert torch.equal(ex.indices, ref_idx.T)
    torch.testing.assert_close(ex.values, ref_vals.T)
    # conv3 (pad 1) -> maxpool 2 -> conv3 (pad 1): unit (r, c) sees input rows 2r-3 .. 2r+4
    for i in range(3):
        for j in range(3):
            r, c = ex.positions[i, j].tolist()
            t, l_, b, rr = ex.boxes[i, j].tolist()
            assert max(0, 2 * r - 3) <= t < b <= min(SIZE, 2 * r + 5)
            assert max(0, 2 * c - 3) <= l_ < rr <= min(SIZE, 2 * c + 5)
    patches = ex.patches(trained.u8)
    assert patches.dtype == torch.uint8 and patches.shape[:3] == (3, 3, 1) and max(patches.shape[-2:]) <= 8


# ---- Deep Dream --------------------------------------------------------------------------------------


def test_deep_dream_snapshots_and_octaves(trained):
    img = trained.u8[5]
    # the report's knobs: layer by index, filter, lr 12, weight decay 1e-4, a snapshot every 10 steps
    d = fv.deep_dream(
        trained.model,
        img,
        8,
        3,
        mean=trained.mean,
        std=trained.std,
        lr=12,
        weight_decay=1e-4,
        steps=20,
        every=10,
        octaves=3,
        octave_scale=1.4,
        seed=0,
    )
    assert d.layer == "cnn.9" and d.channel == 3
    assert d.snapshot_steps == [0, 10, 20, 30, 40, 50, 60]
    assert d.snapshots.shape == (7, 1, SIZE, SIZE)
    assert torch.equal(d.snapshots[0], img.float() / 255)
    assert torch.equal(d.snapshots[-1], d.image)
    assert d.image.min() >= 0 and d.image.max() <= 1 and torch.isfinite(d.image).all()
    assert d.octave_sizes == [(24, 24), (34, 34), (48, 48)]
    s = d.octave_scores
    assert s[0] > d.initial_score
    assert (s[1:] >= s[:-1]).all(), s  # the objective does not fall from one octave to the next
    # the reported score is the objective on the final image, measured independently
    act = channel_means(trained.model, "cnn.9", trained.norm(d.image[None]))[0, 3]
    assert float(act) == pytest.approx(float(s[-1]), abs=1e-4)
    # whole-layer objective (no channel) also rises
    d2 = fv.deep_dream(
        trained.model, img, "cnn.4", None, mean=trained.mean, std=trained.std, steps=10, every=5, octaves=2
    )
    assert d2.snapshot_steps == [0, 5, 10, 15, 20] and d2.octave_scores[-1] > d2.initial_score


# ---- figures -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_figures_are_written(tmp_path, trained, filters):
    from PIL import Image

    from cnnlens.report import fig_featureviz as ff

    ex = fv.dataset_examples(trained.model, trained.x, LAYER, filters.channels[:4], k=2)
    p1 = ff.plot_filters(
        tmp_path / "f.png",
        filters.images[:4],
        filters.channels[:4],
        filters.activations[:4],
        ex.patches(trained.u8),
    )
    p2 = ff.plot_feature_maps(
        tmp_path / "m.png", fv.feature_maps(trained.model, trained.x[0], "cnn.0").maps[0], trained.u8[0]
    )
    snaps = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    p3 = ff.plot_dream_strip(tmp_path / "d.png", snaps, [0, 10, 20])
    p4 = ff.save_gif(tmp_path / "d.gif", snaps)
    p5 = ff.save_png(tmp_path / "one.png", filters.images[0])
    for p in (p1, p2, p3):
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100
    with Image.open(p4) as im:
        assert im.format == "GIF" and im.n_frames == 3 and min(im.size) >= 192
    with Image.open(p5) as im:
        assert im.mode == "L" and im.size == (SIZE, SIZE)
        back = torch.from_numpy(np.array(im)).float()[None] / 255
    assert torch.equal(back, filters.images[0])
