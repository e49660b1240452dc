"""One fill vocabulary (#19): the same name gives the same pixels for Integrated Gradients' baseline,
the perturbation methods' baseline and deletion/insertion's substrate; old spellings still work."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

import cnnlens
from cnnlens import fill as fill_module
from cnnlens.errors import CnnlensError
from cnnlens.fill import Fill
from cnnlens.metrics import deletion_insertion

SEEN: list[torch.Tensor] = []  # every input batch of Rec (module level: the scoring copies share it)
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


class Rec(nn.Module):
    """A linear classifier on the flattened pixels that records every input batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3 * 20 * 20, 3)

    def forward(self, x):
        SEEN.append(x.detach().clone())
        return self.lin(x.flatten(1))


@pytest.fixture
def image():
    return torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(4))


def reference(name: str, x: torch.Tensor) -> torch.Tensor:
    """The pixels a name means, computed independently of cnnlens (``x``: ``[3,20,20]``)."""
    xn = x.double().numpy()
    if name == "dataset_mean":
        ref = np.zeros_like(xn)
    elif name == "black":
        ref = np.stack([np.full(xn.shape[1:], -m / s) for m, s in zip(MEAN, STD)])
    elif name == "image_mean":
        ref = np.stack([np.full(xn.shape[1:], c.mean()) for c in xn])
    else:  # blur: sigma = max(H, W) / 10 = 2 px, reflect padding (scipy's "mirror"), radius 6
        ref = np.stack([scipy.ndimage.gaussian_filter(c, 2.0, mode="mirror", truncate=3.0) for c in xn])
    return torch.from_numpy(ref).float()


def ig_baseline(x: torch.Tensor, name: str) -> torch.Tensor:
    SEEN.clear()
    cnnlens.explain(Rec(), x, "integrated_gradients", target=0, baseline=name, steps=2,
                    quadrature="riemann_trapezoid", mean=MEAN, std=STD)
    return SEEN[-1][0]  # the last pass scores the baseline (completeness check)


def shap_baseline(x: torch.Tensor, name: str) -> torch.Tensor:
    SEEN.clear()  # one superpixel: the scored coalitions are the image and the all-hidden image
    cnnlens.explain(Rec(), x, "kernel_shap", target=0, baseline=name, segments=torch.zeros(20, 20),
                    n_samples=4, mean=MEAN, std=STD)
    return SEEN[-1][1]


def occlusion_baseline(x: torch.Tensor, name: str) -> torch.Tensor:
    SEEN.clear()  # one window covering the whole image: x + (base - x)
    cnnlens.explain(Rec(), x, "occlusion", target=0, baseline=name, window=20, mean=MEAN, std=STD)
    return SEEN[-1][0]


def deletion_substrate(x: torch.Tensor, name: str) -> torch.Tensor:
    SEEN.clear()  # one step: the last image has every pixel deleted
    deletion_insertion(Rec(), x, torch.rand(1, 20, 20), torch.tensor([0]), steps=1, substrate=name,
                       stats=(MEAN, STD))
    return SEEN[0][1]


@pytest.mark.parametrize("name", ["dataset_mean", "black", "image_mean", "blur"])
def test_the_same_name_gives_the_same_pixels_everywhere(image, name):
    want = reference(name, image[0])
    exact = {"integrated_gradients": ig_baseline(image, name), "kernel_shap": shap_baseline(image, name),
             "deletion/insertion": deletion_substrate(image, name)}
    for where, got in exact.items():
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=where)
    for where, got in exact.items():  # and bit for bit the same across the three places
        assert torch.equal(got, exact["kernel_shap"]), where
    torch.testing.assert_close(occlusion_baseline(image, name), want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(want, image[0], atol=1e-3)  # the fill differs from the image


def test_segment_mean_needs_superpixels(image):
    seg = (torch.arange(20)[:, None] // 10) * 2 + torch.arange(20)[None, :] // 10  # four 10x10 quadrants
    SEEN.clear()
    cnnlens.explain(Rec(), image, "kernel_shap", target=0, segments=seg, n_samples=64, exact=True)
    hidden = SEEN[-1][1]  # the coalition with every superpixel hidden
    for q in range(4):
        r, c = (q // 2) * 10, (q % 2) * 10
        block = image[0, :, r:r + 10, c:c + 10]
        want = block.mean((1, 2), keepdim=True).expand_as(block)
        torch.testing.assert_close(hidden[:, r:r + 10, c:c + 10], want)
    for call in (lambda: cnnlens.explain(Rec(), image, "integrated_gradients", baseline="segment_mean",
                                         steps=2),
                 lambda: cnnlens.explain(Rec(), image, "occlusion", baseline="segment_mean"),
                 lambda: deletion_insertion(Rec(), image, torch.rand(1, 20, 20), torch.tensor([0]),
                                            substrate="segment_mean")):
        with pytest.raises(CnnlensError, match="segment_mean.*superpixels"):
            call()


@pytest.mark.parametrize("where, old, new", [
    ("integrated_gradients", "zeros", "dataset_mean"), ("integrated_gradients", "mean", "dataset_mean"),
    ("kernel_shap", "mean", "segment_mean"), ("kernel_shap", "zero", "dataset_mean"),
    ("occlusion", "mean", "image_mean"), ("occlusion", "zero", "dataset_mean"),
    ("deletion/insertion", "mean", "dataset_mean"), ("deletion/insertion", "zeros", "black")])
def test_old_spellings_give_their_old_pixels_with_a_one_line_note(image, where, old, new, caplog,
                                                                   monkeypatch):
    monkeypatch.setattr(fill_module, "_noted", set())
    get = {"integrated_gradients": ig_baseline, "kernel_shap": shap_baseline, "occlusion": occlusion_baseline,
           "deletion/insertion": deletion_substrate}[where]
    if new == "segment_mean":  # one superpixel: its mean is the image's mean colour
        want = reference("image_mean", image[0])
    else:
        want = reference(new, image[0])
    with caplog.at_level(logging.WARNING, logger="cnnlens.fill"):
        got = get(image, old)
        get(image, old)  # a second call: no second note
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    notes = [r.getMessage() for r in caplog.records if r.name == "cnnlens.fill"]
    assert notes == [f"{where}: {'substrate' if where.startswith('del') else 'baseline'} {old!r} is now "
                     f"spelled {new!r} (the same pixels)"]


def test_unknown_fill_names_list_the_vocabulary(image):
    with pytest.raises(CnnlensError, match="dataset_mean, black, image_mean, segment_mean, blur"):
        cnnlens.explain(Rec(), image, "rise", baseline="gray", n_samples=4)
    with pytest.raises(CnnlensError, match="black.*mean= and std="):
        cnnlens.explain(Rec(), image, "integrated_gradients", baseline=Fill.BLACK, steps=2)
    with pytest.raises(CnnlensError, match="stats=\\(mean, std\\)"):
        deletion_insertion(Rec(), image, torch.rand(1, 20, 20), torch.tensor([0]), substrate="black")


@pytest.mark.slow
def test_trust_cli_takes_the_old_spelling_with_a_note_and_lists_the_names(digits_run):
    import json

    from conftest import cli

    run = cnnlens.load_run(digits_run)
    p = cli("trust", str(run.path), "--methods", "saliency", "--fast", "--n-images", "4", "--steps", "4",
            "--substrate", "zeros")  # the old "zeros" of deletion/insertion was black pixels
    assert "'zeros' is now spelled 'black'" in p.stdout + p.stderr
    assert "saliency" in json.loads((run.path / "trust" / "scores.json").read_text())["methods"]
    bad = cli("trust", str(run.path), "--substrate", "segment_mean", check=False)
    assert bad.returncode == 2 and "dataset_mean" in bad.stderr and "image_mean" in bad.stderr
