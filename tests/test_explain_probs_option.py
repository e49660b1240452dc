"""``explain(..., probs=False)``: no softmax returned, and for SmoothGrad and Integrated Gradients
with the classes given, no forward pass on the clean input (the one pass their maps do not need).
The maps stay exactly those of the default call; the targets are still checked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.errors import CnnlensError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return cnnlens.create_model("compact", in_channels=1, num_classes=5, input_size=32).eval()


class PassLog:
    """Every forward pass of the model: (rows, whether autograd was recording)."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[tuple[int, bool]] = []
        self.handle = model.register_forward_pre_hook(
            lambda _m, a: self.calls.append((a[0].shape[0], torch.is_grad_enabled())))

    def take(self) -> list[tuple[int, bool]]:
        out, self.calls = self.calls, []
        return out


CASES = [("smoothgrad", {"n_samples": 4}), ("integrated_gradients", {"steps": 8})]


@pytest.mark.parametrize("method, opts", CASES)
def test_given_classes_and_no_probs_run_no_clean_forward_and_give_the_same_maps(method, opts):
    m = _model()
    x = torch.randn(6, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    t = [0, 1, 2, 3, 4, 0]
    cnnlens.explain(m, x, method, target=t, **opts)  # warm: the one-time layout/pass-size probes
    log = PassLog(m)
    full = cnnlens.explain(m, x, method, target=t, **opts)
    with_probs = log.take()
    lean = cnnlens.explain(m, x, method, target=t, probs=False, **opts)
    without = log.take()
    log.handle.remove()
    # the default call: one no-grad pass on the clean input (IG: clean + baseline rows together)
    assert [r for r, grad in with_probs if not grad] == [6 if method == "smoothgrad" else 12]
    # probs=False: only the gradient passes, the same ones
    assert [c for c in without if not c[1]] == []
    assert [c for c in with_probs if c[1]] == without
    assert sum(r for r, _ in without) == 6 * (4 if method == "smoothgrad" else 8)
    assert torch.equal(lean.maps, full.maps)
    assert lean.targets.tolist() == t and full.targets.tolist() == t
    assert lean.probs is None
    torch.testing.assert_close(full.probs, m(x).softmax(1), rtol=1e-5, atol=1e-6)
    if method == "integrated_gradients":
        assert {"delta", "completeness_gap"} <= set(full.extras)
        assert not {"delta", "completeness_gap"} & set(lean.extras)  # they need that clean pass


def test_label_targets_need_no_clean_forward_either():
    m = _model()
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    cnnlens.explain(m, x, "smoothgrad", n_samples=2)
    log = PassLog(m)
    e = cnnlens.explain(m, x, "smoothgrad", target="label", labels=[4, 3, 2, 1], n_samples=2, probs=False)
    assert all(grad for _, grad in log.take())
    log.handle.remove()
    assert e.targets.tolist() == [4, 3, 2, 1] and e.probs is None


@pytest.mark.parametrize("method, opts", CASES)
def test_predicted_classes_still_come_from_the_clean_forward(method, opts):
    m = _model()
    x = torch.randn(5, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    e = cnnlens.explain(m, x, method, probs=False, **opts)
    ref = cnnlens.explain(m, x, method, **opts)
    assert e.probs is None
    assert torch.equal(e.targets, m(x).argmax(1))
    torch.testing.assert_close(e.maps, ref.maps, rtol=0, atol=0)
    if method == "integrated_gradients":  # the clean pass ran for the classes: the delta is kept
        torch.testing.assert_close(e.extras["delta"], ref.extras["delta"])


@pytest.mark.parametrize("method", ["saliency", "gradcam", "occlusion"])
def test_the_other_methods_just_leave_probs_out(method):
    m = _model()
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    opts = {"window": 8, "stride": 8} if method == "occlusion" else {}
    a = cnnlens.explain(m, x, method, target=[1, 2, 3], **opts)
    b = cnnlens.explain(m, x, method, target=[1, 2, 3], probs=False, **opts)
    assert b.probs is None and a.probs is not None
    torch.testing.assert_close(b.maps, a.maps, rtol=0, atol=0)


@pytest.mark.parametrize("method, opts", CASES)
def test_a_class_out_of_range_is_still_a_clear_error_and_the_model_comes_back(method, opts):
    m = _model().train()
    x = torch.randn(2, 1, 32, 32)
    with pytest.raises(CnnlensError, match=r"target class 7 is out of range: the model has 5 classes \(0\.\.4\)"
                       ):
        cnnlens.explain(m, x, method, target=7, probs=False, **opts)
    assert m.training and all(p.requires_grad and p.grad is None for p in m.parameters())
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())


def test_figures_leave_the_probability_out_and_the_run_record_asks_for_probs(tmp_path):
    from cnnlens.report.fig_explain import _label, confused_pairs_figure, overlay_figure
    from cnnlens.rundir import ExplainMaps

    m = _model()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    imgs = (torch.rand(2, 1, 32, 32) * 255).to(torch.uint8)
    lean = cnnlens.explain(m, x, "saliency", target=[1, 2], probs=False)
    full = cnnlens.explain(m, x, "saliency", target=[1, 2])
    assert _label(lean, 0, list("abcde")) == "b"
    assert _label(full, 0, list("abcde")) == f"b ({float(full.probs[0, 1]):.2f})"
    assert overlay_figure(imgs, lean, tmp_path / "o.png", classes=list("abcde")).stat().st_size > 0
    out = confused_pairs_figure(imgs, lean, full, list("abcde"), tmp_path / "c.png")
    assert out.stat().st_size > 0
    with pytest.raises(CnnlensError, match="computed with probs=False; explain without probs=False"):
        ExplainMaps.from_explanations({"saliency": lean}, [0, 1], None, None)
    rec = ExplainMaps.from_explanations({"saliency": lean, "gradcam": cnnlens.explain(m, x, "gradcam")},
                                        [0, 1], None, None)
    torch.testing.assert_close(torch.tensor(rec.probs), full.probs)
