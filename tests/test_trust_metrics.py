"""Trust metric machinery on constructed cases, against independent references (numpy loops,
scipy, scikit-image) and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch
from skimage.filters import sobel as sk_sobel
from skimage.metrics import structural_similarity
from torch import nn

from cnnlens.explain import METHODS, explain
from cnnlens.metrics import (
    CONTROLS,
    Score,
    auc,
    beats,
    deletion_insertion,
    make_substrate,
    map_similarity,
    perturbation_curves,
    pointing_game,
    randomization_curve,
    relevance_mass,
    spearman,
    ssim,
)
from cnnlens.metrics.base import ChanceCheck, Evidence
from cnnlens.metrics.results import decide, reading
from cnnlens.metrics.randomization import parameter_layers


def tiny_cnn(seed: int = 0, k: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, k),
    )


# ---- deletion / insertion ------------------------------------------------------------------------


def reference_curve(
    model: nn.Module, x: np.ndarray, m: np.ndarray, t: int, mode: str, steps: int, sub: np.ndarray
) -> np.ndarray:
    """Straightforward per-image, per-step reference: one forward pass per perturbed image."""
    c, h, w = x.shape
    p = h * w
    order = np.argsort(-m.reshape(-1), kind="stable")
    probs = []
    for k in range(steps + 1):
        n = (k * p) // steps
        chosen = np.zeros(p, bool)
        chosen[order[:n]] = True
        chosen = chosen.reshape(h, w)
        img = x.copy() if mode == "deletion" else sub.copy()
        src = sub if mode == "deletion" else x
        img[:, chosen] = src[:, chosen]
        with torch.no_grad():
            logits = model(torch.from_numpy(img[None]).float()).double()
        probs.append(float(torch.softmax(logits, 1)[0, t]))
    return np.array(probs)


@pytest.mark.parametrize("substrate", ["mean", "zeros", "blur"])
def test_deletion_insertion_equal_per_image_reference(substrate: str) -> None:
    model = tiny_cnn().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 1, 12, 12, generator=g)
    maps = torch.randn(5, 12, 12, generator=g)
    maps[0] = maps[0].round()  # many ties: stable order must match
    maps[1] = 0.0  # a flat map: pixel order
    targets = torch.tensor([0, 1, 2, 0, 1])
    stats = ((0.3,), (0.2,))
    steps, sigma = 7, 1.5  # 144 pixels do not divide into 7 steps
    scores, curves = deletion_insertion(
        model, x, maps, targets, steps=steps, substrate=substrate, stats=stats, blur_sigma=sigma, chunk_size=9
    )
    for i in range(5):
        xi = x[i].numpy().astype(np.float64)
        if substrate == "mean":
            sub = np.zeros_like(xi)
        elif substrate == "zeros":
            sub = np.full_like(xi, -0.3 / 0.2)
        else:  # torch "reflect" padding is scipy's "mirror"; radius ceil(3 sigma) = int(3 sigma + 0.5) here
            sub = scipy.ndimage.gaussian_filter(xi, sigma=(0, sigma, sigma), mode="mirror", truncate=3.0)
        for mode in ("deletion", "insertion"):
            ref = reference_curve(model, xi, maps[i].numpy(), int(targets[i]), mode, steps, sub)
            np.testing.assert_allclose(curves[mode][i].numpy(), ref, atol=1e-6)
            ref_auc = np.trapezoid(ref, dx=1.0 / steps)
            key = "deletion_auc" if mode == "deletion" else "insertion_auc"
            assert abs(scores[key].values[i].item() - ref_auc) < 1e-6
    assert not scores["deletion_auc"].higher_is_better and scores["insertion_auc"].higher_is_better
    d = scores["insertion_auc"].values - scores["deletion_auc"].values
    assert torch.allclose(scores["insertion_minus_deletion"].values, d)


def test_deletion_hand_computed_one_pixel_model() -> None:
    """Logit 0 = a * x[p], logit 1 = 0: once pixel p is deleted (mean substrate = 0) p = 1/2."""
    a, p = 3.0, 10

    class OnePixel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Parameter(torch.tensor(a))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = self.a * x.flatten(1)[:, p]
            return torch.stack([s, torch.zeros_like(s)], 1)

    x = torch.zeros(1, 1, 4, 4)
    x.view(-1)[p] = 1.0
    good = torch.zeros(1, 4, 4)
    good.view(-1)[p] = 1.0  # the relevant pixel first
    steps = 4
    s, curves = deletion_insertion(OnePixel(), x, good, torch.tensor([0]), steps=steps)
    p0 = 1 / (1 + np.exp(-a))
    expected_del = ((p0 + 0.5) / 2 + 0.5 * (steps - 1)) / steps
    expected_ins = ((0.5 + p0) / 2 + p0 * (steps - 1)) / steps
    assert s["deletion_auc"].values.item() == pytest.approx(expected_del, abs=1e-7)
    assert s["insertion_auc"].values.item() == pytest.approx(expected_ins, abs=1e-7)
    assert auc(torch.tensor([[1.0, 0.5, 0.0]])).item() == pytest.approx(0.5)


def test_faithfulness_errors_name_the_argument() -> None:
    m, x = tiny_cnn(), torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="substrate"):
        make_substrate(x, "noise")
    with pytest.raises(ValueError, match="stats"):
        make_substrate(x, "zeros")
    with pytest.raises(ValueError, match="maps"):
        perturbation_curves(m, x, torch.zeros(2, 7, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="steps"):
        perturbation_curves(m, x, torch.zeros(2, 8, 8), torch.tensor([0, 1]), steps=0)


# ---- similarity measures ------------------------------------------------------------------------


def test_spearman_matches_scipy_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 9, 9, generator=g).round()  # ties
    b = a + 0.7 * torch.randn(4, 9, 9, generator=g)
    b[1] = b[1].clamp_min(0)  # ties at zero, like ReLU maps
    ours = spearman(a, b)
    for i in range(4):
        ref = scipy.stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)
    assert spearman(a, torch.zeros_like(a)).abs().max() == 0  # constant map: no ranking -> 0


def test_ssim_matches_skimage() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 16, 20, generator=g)
    b = (a + 0.3 * torch.rand(3, 16, 20, generator=g)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(3):
        ref = structural_similarity(a[i].double().numpy(), b[i].double().numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)
    assert torch.allclose(ssim(a, a), torch.ones(3, dtype=torch.float64))


# ---- controls -----------------------------------------------------------------------------------


def test_controls_are_registered_methods_described_as_controls() -> None:
    for name in CONTROLS:
        assert name in METHODS
        assert "CONTROL" in METHODS.describe(name)


def test_edge_control_is_sobel_magnitude() -> None:
    x = torch.rand(2, 1, 10, 12, generator=torch.Generator().manual_seed(0))
    maps = explain(tiny_cnn(), x, "control_edge").maps
    for i in range(2):
        ref = sk_sobel(x[i, 0].double().numpy())  # sqrt((gx^2 + gy^2) / 2) with kernels / 4
        np.testing.assert_allclose(maps[i, 1:-1, 1:-1].numpy() / (4 * np.sqrt(2)), ref[1:-1, 1:-1], atol=1e-5)


def test_edge_control_keeps_rank_correlation_one_under_any_randomization() -> None:
    model = tiny_cnn()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 1, 2, 0])
    fn = lambda mod: explain(mod, x, "control_edge", target=t).maps  # noqa: E731
    orig = fn(model)
    layers = parameter_layers(model, x)
    assert layers == ["0", "1", "3", "7"]  # forward order of parameter layers
    for order in ("cascading", "independent"):
        for layer, sims in randomization_curve(model, fn, orig, layers, order=order, seed=5):
            for name in ("spearman", "spearman_abs", "ssim"):
                assert torch.allclose(sims[name].values, torch.ones(4, dtype=torch.float64)), (
                    order,
                    layer,
                    name,
                )


def test_random_control_scores_about_zero() -> None:
    model = tiny_cnn()
    x = torch.randn(32, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    a = explain(model, x, "control_random", seed=1).maps
    b = explain(model, x, "control_random", seed=2).maps
    assert torch.equal(a, explain(model, x, "control_random", seed=1).maps)  # seeded
    sims = map_similarity(a, b)
    # 256 pixels: each image's rank correlation has sd ~1/16; the mean of 32 ~0.011
    assert abs(sims["spearman"].mean) < 0.05 and abs(sims["spearman_abs"].mean) < 0.05
    assert abs(sims["ssim"].mean) < 0.1
    # localization: chance level is the mask's area fraction (here 1/4)
    masks = torch.zeros(32, 16, 16, dtype=torch.bool)
    masks[:, :8, :8] = True
    assert abs(relevance_mass(a, masks).mean - 0.25) < 0.02
    assert abs(pointing_game(a, masks).mean - 0.25) < 0.2


def test_randomization_never_touches_the_callers_model() -> None:
    model = tiny_cnn()
    model.train()
    model[1].eval()
    model[3].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 1, 8, 8)
    fn = lambda mod: explain(mod, x, "saliency", target=0).maps  # noqa: E731
    randomization_curve(model, fn, fn(model), parameter_layers(model, x), order="cascading")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and not model[1].training and not model[3].weight.requires_grad
    assert model[0].weight.requires_grad
    assert all(not m._forward_hooks for m in model.modules())


# ---- localization -------------------------------------------------------------------------------


def test_pointing_game_and_relevance_mass_hand_cases() -> None:
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, 0, :2] = True  # two pixels
    maps = torch.zeros(3, 4, 4)
    maps[0, 0, 0] = 3.0  # max inside
    maps[0, 3, 3] = 1.0
    maps[0, 2, 2] = -5.0  # negative relevance is not counted in the mass
    maps[1, 3, 3] = 2.0  # max outside
    maps[1, 0, 1] = 1.0
    maps[2, 0, 0] = maps[2, 3, 3] = 1.0  # a tie, one inside one outside
    pg = pointing_game(maps, masks)
    assert pg.values.tolist() == [1.0, 0.0, 0.5] and pg.higher_is_better
    rm = relevance_mass(maps, masks)
    assert rm.values.tolist() == pytest.approx([0.75, 1 / 3, 0.5])
    with pytest.raises(ValueError, match="empty"):
        pointing_game(maps, torch.zeros_like(masks))


# ---- verdicts and readings ----------------------------------------------------------------------


def _scores(rand: float, n: int = 8) -> dict[str, Score]:
    g = torch.Generator().manual_seed(int(rand * 100))
    noise = 0.01 * torch.randn(n, generator=g)
    out = {}
    for key, hib, v in [
        ("insertion_minus_deletion", True, 0.5),
        ("randomization.spearman_abs", False, rand),
        ("random_logit.spearman_abs", False, 0.2),
    ]:
        out[key] = Score(key, v + noise, hib)
    return out


def test_verdict_and_reading_follow_the_numbers() -> None:
    scores = {
        "control_edge": _scores(1.0),
        "control_random": _scores(0.0),
        "blind": _scores(0.93),
        "good": _scores(0.1),
    }
    scores["control_edge"]["insertion_minus_deletion"] = Score("x", torch.full((8,), 0.1), True)
    scores["control_random"]["insertion_minus_deletion"] = Score("x", torch.zeros(8), True)
    scores["control_random"]["random_logit.spearman_abs"] = Score("x", torch.zeros(8), False)
    scores["control_edge"]["random_logit.spearman_abs"] = Score("x", torch.ones(8), False)
    scores["control_edge"]["randomization.spearman_abs"] = Score("x", torch.ones(8), False)
    tests = ["faithfulness", "randomization", "random_logit"]
    confident = ChanceCheck.of(torch.tensor([[0.9, 0.05, 0.05]] * 8), margin=0.05)  # far from chance
    ev = Evidence(scores, confident, 8, "test")
    blind = decide("blind", ev, tests)
    assert blind == {"faithfulness": True, "randomization": False, "random_logit": True}
    line = reading("blind", ev, blind, tests)
    assert line.startswith(
        "blind: insensitive to the model's weights (|rank corr| 0.93 after full randomization"
    )
    assert "edge control 1.00" in line
    good = decide("good", ev, tests)
    assert all(good.values())
    gain = float(scores["good"]["insertion_minus_deletion"].values.mean())  # 0.5 + noise
    assert reading("good", ev, good, tests) == (
        f"good: faithful (ins-del {gain:.2f}; edge control 0.10, random 0.00); passes faithfulness, "
        "randomization, random_logit"
    )
    assert decide("control_edge", ev, tests) == dict.fromkeys(tests)


def test_beats_needs_a_margin() -> None:
    a = Score("s", torch.tensor([0.5, 0.6, 0.55, 0.52]), True)
    assert beats(a, Score("s", torch.zeros(4), True))
    assert not beats(a, Score("s", torch.tensor([0.6, 0.5, 0.56, 0.5]), True))  # mixed, tiny mean gap
    lower = Score("s", torch.tensor([0.1, 0.2, 0.1, 0.1]), False)
    assert beats(lower, Score("s", torch.ones(4), False))


def test_norm_layers_join_the_layer_before_and_the_cascade_ends_fully_randomized() -> None:
    from cnnlens.metrics import fully_randomized, layer_groups

    model = tiny_cnn()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    groups = layer_groups(model, parameter_layers(model, x))
    assert groups == ["0+1", "3", "7"]
    fn = lambda mod: explain(mod, x, "saliency", target=0).maps  # noqa: E731
    orig = fn(model)
    curve = randomization_curve(model, fn, orig, groups, order="cascading", seed=3)
    assert [g for g, _ in curve] == ["7", "3", "0+1"]
    full = fully_randomized(model, groups, seed=3)
    assert torch.equal(curve[-1][1]["spearman"].values, map_similarity(orig, fn(full))["spearman"].values)
    # every parameter of the full copy changed, BatchNorm included (reset to its init)
    for (name, p0), p1 in zip(model.named_parameters(), full.parameters()):
        assert not torch.equal(p0, p1) or name.startswith("1."), name
