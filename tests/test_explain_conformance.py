"""Every registered method honours the contract on models of different kinds."""

from __future__ import annotations

import pytest
import torch
from explain_models import MixedActs, TinyVGG, gray_compact

import cnnlens
from cnnlens.explain import METHODS, explain_many

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# small settings for the expensive methods (methods not listed run with their defaults)
FAST: dict[str, dict] = {"smoothgrad": {"n_samples": 2}, "integrated_gradients": {"steps": 4},
                         "lime": {"n_samples": 16}, "kernel_shap": {"n_samples": 16},
                         "rise": {"n_samples": 16}, "occlusion": {"window": 4, "stride": 4}}


def fast(method: str) -> dict:
    """Options from FAST that the method accepts (another helper's methods may name them differently)."""
    opts = FAST.get(method, {})
    impl = METHODS.get(method)
    e = impl() if isinstance(impl, type) else impl
    if hasattr(e, "accepted_options"):
        return {k: v for k, v in opts.items() if k in e.accepted_options()}
    return opts if method in ("smoothgrad", "integrated_gradients") else {}


def snapshot(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
              len(m._backward_pre_hooks)) for m in model.modules()],
            {k: v.clone() for k, v in model.state_dict().items()})


def assert_untouched(model, snap):
    now = snapshot(model)
    assert now[0] == snap[0], "training flags changed"
    assert now[1] == snap[1], "requires_grad changed"
    assert now[2] == snap[2], "hooks left on the model"
    for k, v in snap[3].items():
        assert torch.equal(now[3][k], v), f"{k} changed"
    assert all(p.grad is None for p in model.parameters())


MODELS = [("gray_compact", gray_compact, (1, 16, 16)), ("mixed_rgb", lambda: MixedActs(), (3, 12, 10)),
          ("vgg_rgb", lambda: TinyVGG(), (3, 18, 26))]


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("arch", MODELS, ids=[m[0] for m in MODELS])
def test_contract(method, arch):
    _, factory, shape = arch
    torch.manual_seed(0)
    model = factory()
    model.train()  # the caller's mode, partly frozen parameters: all must come back as they were
    first = next(model.parameters())
    first.requires_grad_(False)
    snap = snapshot(model)
    x = torch.randn(3, *shape)
    why = METHODS.get(method)().unsupported(model)
    if why:  # attention rollout on a CNN: a clear error, the model untouched
        assert method == "attention_rollout"
        with pytest.raises(ValueError, match="needs a vision transformer"):
            cnnlens.explain(model, x, method, target=[0, 1, 2], chunk_size=2, **fast(method))
        assert_untouched(model, snap)
        return
    e = cnnlens.explain(model, x, method, target=[0, 1, 2], chunk_size=2, **fast(method))
    assert e.maps.shape == (3, *shape[1:])
    assert e.maps.dtype == torch.float32 and e.maps.device == x.device
    assert torch.isfinite(e.maps).all()
    assert e.maps.abs().sum() > 0 or e.extras.get("zero_maps", torch.zeros(1)).any()
    assert e.targets.tolist() == [0, 1, 2] and e.method == method
    assert e.probs.shape == (3, model.eval()(x).shape[1]) and torch.allclose(e.probs.sum(1), torch.ones(3))
    model.train()
    assert_untouched(model, snap)
    assert not x.requires_grad


@pytest.mark.parametrize("method", METHODS.names())
def test_model_restored_when_the_method_raises(method):
    model = gray_compact()
    model.train()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="out of range"):
        cnnlens.explain(model, torch.randn(2, 1, 16, 16), method, target=9, **fast(method))
    assert_untouched(model, snap)


def test_explain_many_restores_model_on_error():
    model = gray_compact()
    model.train()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="out of range"):
        explain_many(model, torch.randn(2, 1, 16, 16), ["saliency", "gradcam", "integrated_gradients"],
                     target=9, steps=4)
    assert_untouched(model, snap)


def test_every_method_has_a_description():
    for entry in METHODS.entries():
        assert len(entry.description) > 10, entry.name
