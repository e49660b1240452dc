"""explain_images (maps saved as the ExplainMaps record) and the explanation figures."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from explain_models import TinyResNet, gray_compact

import cnnlens
from cnnlens.explain import explain_confused_pairs, explain_images, select_per_class
from cnnlens.report.fig_explain import (
    confused_pairs_figure,
    explanation_grid,
    overlay_figure,
    per_class_grid,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
MEAN, STD = (0.4,), (0.25,)


def png_shape(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path).shape


@pytest.fixture
def gray():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 1, 3, 0])
    return gray_compact().eval(), images, labels


def test_explain_images_maps_saved_as_the_explain_record(tmp_path, gray):
    from cnnlens.rundir import ExplainMaps

    model, images, labels = gray
    methods = ["saliency", "gradcam", "integrated_gradients"]
    res = explain_images(model, images, MEAN, STD, methods, targets="label", labels=labels,
                         method_options={"integrated_gradients": {"steps": 8}})
    assert not any(tmp_path.iterdir())  # computing writes nothing
    # the maps equal explain() on the images normalized by hand
    x = (images.float() / 255 - 0.4) / 0.25
    for m in methods:
        opts = {"steps": 8} if m == "integrated_gradients" else {}
        ref = cnnlens.explain(model, x, m, target=labels, **opts).maps
        torch.testing.assert_close(res[m].maps, ref)
    ExplainMaps.from_explanations(res, [10, 11, 12, 13, 14], labels, ["a", "b", "c", "d"]).save(tmp_path)
    for m in methods:
        saved = np.load(tmp_path / "explain" / f"{m}.npy")
        assert saved.dtype == np.float32 and saved.shape == (5, 16, 16)
        np.testing.assert_array_equal(saved, res[m].maps.numpy())
    meta = json.loads((tmp_path / "explain" / "explanations.json").read_text())
    assert meta["indices"] == [10, 11, 12, 13, 14] and meta["targets"] == labels.tolist()
    assert meta["methods"]["gradcam"]["layer"] == "cnn.4"
    assert len(meta["methods"]["integrated_gradients"]["extras"]["completeness_gap"]) == 5
    assert meta["methods"]["gradcam"]["extras"]["zero_maps"] == res["gradcam"].extras["zero_maps"].tolist()
    # and it loads back: the same maps, as Explanations
    back = ExplainMaps.load(tmp_path).explanations()
    for m in methods:
        torch.testing.assert_close(back[m].maps, res[m].maps)
        assert back[m].signed == res[m].signed and back[m].layer == res[m].layer


def test_explain_images_errors(gray):
    model, images, _ = gray
    with pytest.raises(ValueError, match="uint8"):
        explain_images(model, images.float(), MEAN, STD, ["saliency"])
    with pytest.raises(ValueError, match="one value per channel"):
        explain_images(model, images, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), ["saliency"])
    with pytest.raises(ValueError, match="unknown explanation method 'nope'.*saliency"):
        explain_images(model, images, MEAN, STD, ["nope"])


def test_select_per_class():
    labels = torch.tensor([2, 0, 2, 1, 2, 0, -1])
    assert select_per_class(labels, 2).tolist() == [1, 5, 3, 0, 2]
    with pytest.raises(ValueError):
        select_per_class(labels, 0)


@pytest.mark.slow
def test_figures(tmp_path):
    torch.manual_seed(0)
    model = TinyResNet(num_classes=3).eval()
    images = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    x = (images.float() / 255 - 0.5) / 0.25
    exps = cnnlens.explain_many(model, x, ["gradcam", "gradient_x_input"])
    classes = ["cat", "dog", "eel"]
    p = overlay_figure(images, exps["gradient_x_input"], tmp_path / "signed.png", classes=classes)
    h1, w1 = png_shape(p)[:2]
    p = overlay_figure(images, exps["gradcam"], tmp_path / "cam.png", classes=classes)
    h2, w2 = png_shape(p)[:2]
    assert h1 > 1.5 * h2  # the signed map gets a second row on the diverging colormap
    one = explanation_grid(images, {"gradcam": exps["gradcam"]}, None, tmp_path / "g1.png")
    two = explanation_grid(images, exps, ["a", "b", "c", "d"], tmp_path / "g2.png", classes=classes)
    assert png_shape(two)[1] > png_shape(one)[1]  # one more column
    labels = torch.tensor([0, 0, 2, 0])
    per = per_class_grid(images, labels, exps["gradcam"], classes, tmp_path / "per.png", per_class=3)
    assert png_shape(per)[0] > 0
    with pytest.raises(ValueError, match="row_titles"):
        explanation_grid(images, exps, ["a"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="4 images but the explanations have 2"):
        explanation_grid(images, {m: e for m, e in cnnlens.explain_many(model, x[:2], ["gradcam"]).items()},
                         None, tmp_path / "bad.png")


def test_confused_pairs(tmp_path):
    torch.manual_seed(0)
    model = TinyResNet(num_classes=3).eval()
    images = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    x = (images.float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        pred = model(x).argmax(1)
    labels = (pred + 1) % 3  # every image is misclassified
    a, b = int(labels[0]), int(pred[0])
    res = explain_confused_pairs(model, images, (0.5,) * 3, (0.25,) * 3, labels, pred, [(a, b)],
                                 method="gradcam", per_pair=2)
    assert res is not None
    chosen, ea, eb = res
    sel = ((labels == a) & (pred == b)).nonzero().view(-1)[:2]
    assert chosen == sel.tolist()
    assert ea.maps.shape[0] == len(sel) and (ea.targets == a).all() and (eb.targets == b).all()
    # the maps for A and for B are the two targets' Grad-CAMs
    torch.testing.assert_close(ea.maps, cnnlens.explain(model, x[sel], "gradcam", target=a).maps)
    torch.testing.assert_close(eb.maps, cnnlens.explain(model, x[sel], "gradcam").maps)
    p = confused_pairs_figure(images[chosen], ea, eb, ["x", "y", "z"], tmp_path / "pairs.png")
    assert png_shape(p)[0] > 0
    # no image for a pair
    assert explain_confused_pairs(model, images, (0.5,) * 3, (0.25,) * 3, labels, pred, [(a, a)]) is None
    with pytest.raises(ValueError, match="same images"):
        confused_pairs_figure(images[:2], ea, cnnlens.explain(model, x[:1], "gradcam"), ["x", "y", "z"],
                              tmp_path / "bad.png")
