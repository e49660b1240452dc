"""The trust protocol on a small CNN trained (here, in seconds) on the `planted` data, whose
ground-truth evidence masks are known."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.explain import METHODS, explain
from cnnlens.metrics import CONTROLS, pointing_game, randomization_curve, relevance_mass, run_trust
from cnnlens.metrics.randomization import parameter_layers

pytestmark = pytest.mark.slow  # the module's planted model is trained, and run_trust scores every method


def planted_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    )


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    ds = cnnlens.load_dataset("planted", n=480)
    x, y = ds.split("train")
    x = ds.normalize(x)
    model = planted_cnn()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        i = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt, yt = ds.split("test")
    with torch.no_grad():
        acc = (model(ds.normalize(xt)).argmax(1) == yt).float().mean().item()
    assert acc > 0.9, f"the planted model did not learn (test accuracy {acc:.2f}); the checks below need it"
    return model, ds


def test_gradcam_correlation_falls_once_the_top_layer_is_randomized(trained) -> None:
    model, ds = trained
    x, y = ds.split("test")
    x, y = ds.normalize(x[:12]), y[:12]
    layers = parameter_layers(model, x)
    assert layers[-1] == "10"  # the logits layer
    for method, expect_drop in (("gradcam", True), ("control_edge", False)):
        fn = lambda mod, m=method: explain(mod, x, m, target=y).maps  # noqa: E731
        curve = randomization_curve(model, fn, fn(model), layers, order="cascading", seed=0)
        top_layer, sims = curve[0]
        assert top_layer == "10"
        if expect_drop:
            assert sims["spearman_abs"].mean < 0.5, sims["spearman_abs"].values
        else:
            assert sims["spearman_abs"].mean == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients"])
def test_localizes_the_planted_pattern_far_above_the_random_control(trained, method: str) -> None:
    model, ds = trained
    idx = ds.indices("test")[:24]
    x, y, masks = ds.normalize(ds.images[idx]), ds.labels[idx], ds.masks[idx]
    assert method in METHODS
    maps = explain(model, x, method, target=y).maps
    rnd = explain(model, x, "control_random", target=y, seed=0).maps
    area = masks.flatten(1).float().mean().item()  # 49 / 2304: chance level of both metrics
    pg, pg0 = pointing_game(maps, masks).mean, pointing_game(rnd, masks).mean
    rm, rm0 = relevance_mass(maps, masks).mean, relevance_mass(rnd, masks).mean
    assert rm0 == pytest.approx(area, abs=0.01) and pg0 < 0.2
    assert pg > 0.7 and pg > pg0 + 0.5, (pg, pg0)
    assert rm > 4 * rm0, (rm, rm0)


def test_run_trust_scores_every_registered_method_and_leaves_the_model_alone(trained, tmp_path) -> None:
    model, ds = trained
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = run_trust(model, ds, n_images=12, out_dir=tmp_path / "trust", steps=10, cascade=False)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
    # whatever is registered, controls included, less what cannot explain a CNN (attention rollout)
    expected = [m for m in METHODS.names() if not METHODS.get(m)().unsupported(model)]
    assert "attention_rollout" in METHODS.names() and "attention_rollout" not in expected
    assert sorted(report.methods) == sorted(expected)
    assert report.tests == ["faithfulness", "randomization", "random_logit", "localization"]
    data = json.loads((tmp_path / "trust" / "scores.json").read_text())
    assert set(data["methods"]) == set(expected) and data["controls"] == list(CONTROLS)
    for m, entry in data["methods"].items():
        assert entry["reading"].startswith(f"{m}: ")
        assert len(entry["scores"]["deletion_auc"]["values"]) == 12
        assert entry["scores"]["deletion_auc"]["higher_is_better"] is False
        assert entry["randomization_cascading"] == []  # cascade=False: only the fully randomized model
        if m in CONTROLS:
            assert set(entry["passed"].values()) == {None}
        else:
            assert set(entry["passed"]) == set(report.tests)
    assert data["methods"]["control_edge"]["scores"]["randomization.spearman_abs"]["mean"] == pytest.approx(
        1.0
    )
    # the verdicts follow the documented rules, read back from the file
    ctrl = {c: data["methods"][c]["scores"] for c in CONTROLS}
    for m, entry in data["methods"].items():
        if m in CONTROLS:
            continue
        sc = entry["scores"]
        for test in ("randomization", "random_logit"):
            key = f"{test}.spearman_abs"
            mid = (ctrl["control_edge"][key]["mean"] + ctrl["control_random"][key]["mean"]) / 2
            assert entry["passed"][test] == (sc[key]["mean"] < mid), (m, test)
        for test, keys in (
            ("faithfulness", ["insertion_minus_deletion"]),
            ("localization", ["pointing_game", "relevance_mass"]),
        ):
            if entry["passed"][test]:
                assert all(sc[k]["mean"] > max(ctrl[c][k]["mean"] for c in CONTROLS) for k in keys), (m, test)
    # Grad-CAM is sensitive to the weights on this model; the edge control, by construction, is not
    assert data["methods"]["gradcam"]["passed"]["randomization"] is True
    header = (tmp_path / "trust" / "table.csv").read_text().splitlines()[0]
    assert header.startswith("method,ins-del,") and header.endswith(",reading")
    assert not (tmp_path / "trust" / "randomization.png").exists()


def test_run_trust_cascade_curve_per_layer_group(trained, tmp_path) -> None:
    model, ds = trained
    report = run_trust(model, ds, ["gradcam"], n_images=8, out_dir=tmp_path, steps=8)
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["options"]["layers"] == ["0", "3", "6", "10"]  # no norm layers to join here
    for m in ("gradcam", *CONTROLS):
        curve = data["methods"][m]["randomization_cascading"]
        assert [ly for ly, _ in curve] == ["10", "6", "3", "0"]  # from the logits down
        # the verdict's "fully randomized" score is the cascade's last point
        full = data["methods"][m]["scores"]["randomization.spearman_abs"]["mean"]
        assert curve[-1][1]["spearman_abs"] == pytest.approx(full)
    assert all(
        d["spearman_abs"] == pytest.approx(1.0)
        for _, d in data["methods"]["control_edge"]["randomization_cascading"]
    )
    assert report.cascading["gradcam"][0][1]["spearman_abs"] < 0.5  # top layer randomized: map changes
    # the protocol computes; the figure is drawn on the report side (what `cnnlens trust` calls)
    assert not (tmp_path / "randomization.png").exists()
    from cnnlens.report.fig_trust import plot_trust

    assert plot_trust(report, tmp_path) == tmp_path / "randomization.png"
    assert (tmp_path / "randomization.png").read_bytes()[:4] == b"\x89PNG"
