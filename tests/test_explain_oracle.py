"""cnnlens's own methods against independent references: Captum and pytorch-grad-cam (1e-5).

Every comparison runs on the ``device`` fixture's devices (tests/conftest.py: ``CNNLENS_TEST_DEVICE``,
default ``cpu``; ``cuda`` on a GPU machine), the references on the same device, same tolerances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from explain_models import ARCHS

import cnnlens
from cnnlens.explain.core import default_layer
from cnnlens.fill import gaussian_blur

captum_attr = pytest.importorskip("captum.attr")
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam import base_cam as pgc_base  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def close(mine: torch.Tensor, ref: torch.Tensor | np.ndarray, tol: float = 1e-5) -> None:
    """Equal up to ``tol`` relative to the reference's scale (and elementwise)."""
    ref = torch.as_tensor(np.asarray(ref) if not isinstance(ref, torch.Tensor) else ref).float()
    mine = mine.detach().float().cpu()
    ref = ref.detach().cpu()
    assert mine.shape == ref.shape
    scale = max(ref.abs().max().item(), 1e-12)
    assert ref.abs().max() > 0, "the reference is all zero: the comparison would say nothing"
    torch.testing.assert_close(mine, ref, rtol=tol, atol=tol * scale)


@pytest.fixture(params=ARCHS, ids=[a[0] for a in ARCHS])
def setup(request, device):
    name, factory, shape = request.param
    model = factory().eval().to(device)
    torch.manual_seed(1)
    x = torch.randn(3, *shape).to(device)  # drawn on the CPU: the same numbers on every device
    with torch.no_grad():
        pred = model(x).argmax(1)
    # explain a mix of predicted and non-predicted classes
    k = model(x).shape[1]
    t = torch.tensor([int(pred[0]), (int(pred[1]) + 1) % k, (int(pred[2]) + 2) % k])
    layer_name, layer = default_layer(model, x)
    return model, x, t, layer_name, layer


# ---- Captum -------------------------------------------------------------------------------------

def test_saliency_equals_captum(setup):
    model, x, t, *_ = setup
    ref = captum_attr.Saliency(model).attribute(x, target=t, abs=True).amax(1)
    close(cnnlens.explain(model, x, "saliency", target=t).maps, ref)


def test_gradient_x_input_equals_captum(setup):
    model, x, t, *_ = setup
    ref = captum_attr.InputXGradient(model).attribute(x, target=t).sum(1)
    close(cnnlens.explain(model, x, "gradient_x_input", target=t).maps, ref)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients_equals_captum(setup, method):
    model, x, t, *_ = setup
    ig = captum_attr.IntegratedGradients(model)
    ref, delta = ig.attribute(x, baselines=0.0, target=t, n_steps=64, method=method,
                              return_convergence_delta=True)
    # batch_size=50 rows: the 64 steps run in several groups
    e = cnnlens.explain(model, x, "integrated_gradients", target=t, steps=64, quadrature=method, batch_size=50)
    # Captum's trapezoid weights are 1/n (they sum to (n-1)/n); the rule's weights are 1/(n-1)
    factor = 63 / 64 if method == "riemann_trapezoid" else 1.0
    close(e.maps * factor, ref.sum(1))
    if method == "riemann_trapezoid":
        return
    # completeness gap = |Captum's convergence delta| / |f(x) - f(0)|
    with torch.no_grad():
        fx = model(x).gather(1, t[:, None]).squeeze(1)
        f0 = model(torch.zeros_like(x)).gather(1, t[:, None]).squeeze(1)
    assert e.maps.device == x.device
    torch.testing.assert_close(e.extras["delta"].cpu(), (fx - f0).cpu(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(e.extras["completeness_gap"].cpu(), (delta.abs() / (fx - f0).abs()).cpu(),
                               rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_integrated_gradients_blur_baseline_equals_captum(setup):
    model, x, t, *_ = setup
    base = gaussian_blur(x, 2.0)
    ref = captum_attr.IntegratedGradients(model).attribute(x, baselines=base, target=t, n_steps=16)
    e = cnnlens.explain(model, x, "integrated_gradients", target=t, steps=16, baseline="blur", blur_sigma=2.0)
    close(e.maps, ref.sum(1))


def test_gaussian_blur_equals_scipy(device):
    from scipy.ndimage import gaussian_filter

    x = torch.randn(2, 3, 17, 23)
    # the one blur (cnnlens.fill): reflect padding, which is scipy's "mirror"
    ref = np.stack([[gaussian_filter(c, 2.0, mode="mirror", truncate=3.0) for c in img] for img in x.numpy()])
    xd = x.to(device)
    torch.testing.assert_close(gaussian_blur(xd, 2.0).cpu(), torch.from_numpy(ref), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gaussian_blur(xd[0], 2.0).cpu(), torch.from_numpy(ref[0]), rtol=1e-5,
                               atol=1e-6)


def test_guided_backprop_equals_captum(setup):
    model, x, t, *_ = setup
    ref = captum_attr.GuidedBackprop(model).attribute(x, target=t).sum(1)
    close(cnnlens.explain(model, x, "guided_backprop", target=t).maps, ref)


def test_deconvnet_equals_captum(setup):
    model, x, t, *_ = setup
    ref = captum_attr.Deconvolution(model).attribute(x, target=t).sum(1)
    close(cnnlens.explain(model, x, "deconvnet", target=t).maps, ref)


def test_gradcam_equals_captum(setup):
    model, x, t, _, layer = setup
    lg = captum_attr.LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)
    ref = captum_attr.LayerAttribution.interpolate(lg, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    e = cnnlens.explain(model, x, "gradcam", target=t)
    close(e.maps, ref[:, 0])
    close(e.extras["cam"], lg[:, 0])


def test_guided_gradcam_equals_captum(setup):
    model, x, t, _, layer = setup
    ref = captum_attr.GuidedGradCam(model, layer).attribute(x, target=t, interpolate_mode="bilinear").sum(1)
    close(cnnlens.explain(model, x, "guided_gradcam", target=t).maps, ref)


# ---- pytorch-grad-cam -------------------------------------------------------------------------

@pytest.fixture
def raw_pgc(monkeypatch):
    """pytorch-grad-cam without its min-max normalization and resize: its raw ReLU'd cams."""
    monkeypatch.setattr(pgc_base, "scale_cam_image", lambda cam, target_size=None: np.float32(cam))


PGC = {"gradcam": "GradCAM", "gradcam_pp": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
       "layercam": "LayerCAM", "scorecam": "ScoreCAM"}


def run_pgc(cls_name, model, layer, x, t):
    cls = getattr(pgc, cls_name)
    with cls(model=model, target_layers=[layer]) as cam:
        if cls_name == "ScoreCAM":
            cam.batch_size = 7
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])


@pytest.mark.parametrize("method", list(PGC))
def test_cam_equals_pytorch_grad_cam(setup, raw_pgc, method):
    model, x, t, _, layer = setup
    ref = run_pgc(PGC[method], model, layer, x, t)
    opts = {"batch_size": 5} if method == "scorecam" else {}
    e = cnnlens.explain(model, x, method, target=t, **opts)
    close(e.extras["cam"], ref)
    # the upsampled map is the layer-resolution map, bilinearly resized
    ups = torch.nn.functional.interpolate(e.extras["cam"][:, None], size=x.shape[-2:], mode="bilinear")[:, 0]
    torch.testing.assert_close(e.maps.cpu(), ups.cpu())


def test_gradcam_normalized_equals_pytorch_grad_cam(setup):
    """With pytorch-grad-cam's post-processing: min-max, cv2 resize, min-max again (its layer aggregation)."""
    model, x, t, _, layer = setup
    ref = run_pgc("GradCAM", model, layer, x, t)
    e = cnnlens.explain(model, x, "gradcam", target=t)
    cam = e.extras["cam"]
    lo = cam.flatten(1).amin(1)[:, None, None]
    hi = (cam - lo).flatten(1).amax(1)[:, None, None]
    mine = (e.maps - lo) / (hi + 1e-7)  # resize commutes with the per-image affine map
    lo2 = mine.flatten(1).amin(1)[:, None, None]
    mine = (mine - lo2) / ((mine - lo2).flatten(1).amax(1)[:, None, None] + 1e-7)
    close(mine, ref)


def test_eigencam_equals_pytorch_grad_cam_up_to_sign(setup, raw_pgc):
    model, x, t, _, layer = setup
    ref_relu = run_pgc("EigenCAM", model, layer, x, t)
    acts = {}
    h = layer.register_forward_hook(lambda m, i, o: acts.setdefault("a", o.detach().clone()))
    with torch.no_grad():
        model(x)
    h.remove()
    ref = torch.from_numpy(get_2d_projection(acts["a"].cpu().numpy()))
    e = cnnlens.explain(model, x, "eigencam", target=t)
    proj = e.extras["projection"].cpu()
    sign = torch.sign((proj * ref).flatten(1).sum(1))[:, None, None]
    close(proj * sign, ref)
    close(e.extras["cam"], proj.clamp_min(0))
    assert e.maps.device == x.device
    # pytorch-grad-cam's output is ReLU of its own (arbitrary-sign) projection
    close(torch.from_numpy(ref_relu), ref.clamp_min(0))
