"""Every registered method on course-style models (#17 item 2): ``x.view(x.size(0), -1)`` after the
convolutions, ``torch.flatten``, and ``F.relu``/``F.max_pool2d`` used as functions."""

from __future__ import annotations

import copy

import pytest
import torch
from explain_models import student

import cnnlens
from cnnlens.errors import CnnlensError
from cnnlens.explain.scoring import Scorer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FAST: dict[str, dict] = {"smoothgrad": {"n_samples": 2}, "integrated_gradients": {"steps": 4},
                         "lime": {"n_samples": 16}, "kernel_shap": {"n_samples": 16},
                         "rise": {"n_samples": 16}, "occlusion": {"window": 4, "stride": 4}}
GUIDED = ("guided_backprop", "deconvnet", "guided_gradcam")  # need activations as modules, by design
MODELS = {"view": dict(flatten="view"), "torch_flatten": dict(flatten="torch"),
          "functional": dict(flatten="view", functional=True)}


def state(model):
    return ([m.training for m in model.modules()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
            {k: v.clone() for k, v in model.state_dict().items()}, next(model.parameters()).dtype,
            [p.is_contiguous() for p in model.parameters()])


@pytest.mark.parametrize("method", cnnlens.methods())
@pytest.mark.parametrize("kind", list(MODELS))
def test_every_method_runs_on_course_style_models(method, kind):
    model = student(**MODELS[kind]).eval()
    before = state(model)
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    if method == "attention_rollout":  # for vision transformers only: a clear error on a CNN
        with pytest.raises(CnnlensError, match="needs a vision transformer"):
            cnnlens.explain(model, x, method, target=[0, 1, 2])
        return
    if kind == "functional" and method in GUIDED:
        with pytest.raises(CnnlensError, match="functionally"):
            cnnlens.explain(model, x, method, target=[0, 1, 2], **FAST.get(method, {}))
        return
    e = cnnlens.explain(model, x, method, target=[0, 1, 2], chunk_size=2, **FAST.get(method, {}))
    assert e.maps.shape == (3, 16, 16) and e.maps.dtype == torch.float32
    assert torch.isfinite(e.maps).all()
    assert e.maps.abs().sum() > 0 or e.extras.get("zero_maps", torch.zeros(1)).any()
    now = state(model)
    assert now[0] == before[0] and now[1] == before[1] and now[3] == before[3] and now[4] == before[4]
    assert all(torch.equal(v, before[2][k]) for k, v in now[2].items())


@pytest.mark.parametrize("method", ["lime", "kernel_shap", "occlusion", "rise"])
def test_a_view_model_explains_like_the_same_network_with_torch_flatten(method):
    # same weights, same function: only the flattening differs, so the maps must agree (the view
    # model is scored in the default layout, the other in channels-last: float rounding apart)
    view, flat = student("view"), student("torch")
    assert all(torch.equal(a, b) for a, b in zip(view.state_dict().values(), flat.state_dict().values()))
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    opts = FAST[method]
    a = cnnlens.explain(view, x, method, target=[0, 2], **opts)
    b = cnnlens.explain(flat, x, method, target=[0, 2], **opts)
    torch.testing.assert_close(a.maps, b.maps, rtol=1e-4, atol=1e-6)
    assert a.maps.abs().max() > 1e-4  # not trivially equal


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_scorer_falls_back_to_the_default_layout_once_per_model(precision):
    model = student("view").eval()
    x = torch.randn(10, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x).softmax(1)[:, 1]
    first = Scorer(model, precision)
    assert first.channels_last  # it tries the fast layout ...
    got = first(x, 1)
    assert not first.channels_last  # ... which this model cannot take
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5 if precision == "float32" else 2e-2)
    if precision == "bfloat16":
        assert first.bf16_mode == "weights"  # the view failure did not send it to autocast
    second = Scorer(model, precision)  # remembered: no channels-last attempt for this model again
    assert not second.channels_last
    torch.testing.assert_close(second(x, 1), got, rtol=0, atol=0)
    # a model that takes channels-last keeps it; a real error is raised, not hidden by the retry
    ok = Scorer(student("torch").eval(), precision)
    ok(x, 1)
    assert ok.channels_last
    with pytest.raises(RuntimeError):
        Scorer(copy.deepcopy(model), precision)(torch.randn(2, 1, 20, 20), 0)  # wrong input size
