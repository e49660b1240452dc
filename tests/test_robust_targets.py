"""explain targets are class indices: ints or integer tensors only (a bool or float is refused, not
read as a class); a meta-device input, target or model is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robust_runs import make_run, run_cli

import cnnlens
from cnnlens.errors import CnnlensError, CnnlensTypeError
from cnnlens.explain import explain_many


@pytest.fixture(scope="module")
def model_x():
    torch.manual_seed(0)
    return cnnlens.create_model("compact", 1, 10, 16), torch.randn(3, 1, 16, 16)


@pytest.mark.parametrize("target,shown", [
    (2.5, "got 2.5 (float)"), (True, "got True (bool)"), (np.float32(2.0), "(float32)"),
    (np.bool_(True), "(bool"), (torch.tensor([1.0, 2.0, 3.0]), "dtype torch.float32"),
    (torch.tensor([True, False, True]), "dtype torch.bool"), (np.array([1.5, 2, 3]), "NumPy array of dtype float64"),
    ([1, 2.0, 3], "holding 2.0 (float)"), ([1, True, 3], "holding True (bool)"),
])
def test_bool_and_float_targets_are_refused(model_x, target, shown):
    model, x = model_x
    for fn in (lambda: cnnlens.explain(model, x, "saliency", target=target),
               lambda: explain_many(model, x, ["saliency", "gradcam"], target=target)):
        with pytest.raises(CnnlensTypeError, match="target must be .*a class index") as ei:
            fn()
        assert shown in str(ei.value)


def test_integer_targets_of_every_form_give_the_same_classes(model_x):
    model, x = model_x
    ref = torch.tensor([4, 1, 7])
    for t in ([4, 1, 7], (4, 1, 7), np.array([4, 1, 7]), np.array([4, 1, 7], dtype=np.uint8),
              torch.tensor([4, 1, 7], dtype=torch.int32), ref):
        assert torch.equal(cnnlens.explain(model, x, "saliency", target=t).targets, ref)
    # one class, as an int, a NumPy integer or a one-element tensor: that class for every image
    for t in (5, np.int64(5), torch.tensor(5), torch.tensor([5]), [5]):
        assert cnnlens.explain(model, x, "saliency", target=t).targets.tolist() == [5, 5, 5]
        assert explain_many(model, x, ["saliency"], target=t)["saliency"].targets.tolist() == [5, 5, 5]


def test_meta_device_input_target_or_model_is_a_clear_error(model_x):
    model, x = model_x
    with pytest.raises(CnnlensError, match="x is on the meta device, which holds no values"):
        cnnlens.explain(model, x.to("meta"), "saliency")
    with pytest.raises(CnnlensError, match="target is a tensor on the meta device"):
        cnnlens.explain(model, x, "saliency", target=torch.tensor([1, 2, 3], device="meta"))
    with pytest.raises(CnnlensError, match="the model has parameters on the meta device"):
        cnnlens.explain(cnnlens.create_model("compact", 1, 10, 16).to("meta"), x, "gradcam")
    half = cnnlens.create_model("compact", 1, 10, 16)
    fc = [m for m in half.modules() if isinstance(m, nn.Linear)][-1]
    fc.bias = nn.Parameter(torch.empty_like(fc.bias, device="meta"))  # one tensor left unmaterialized
    for fn in (lambda: cnnlens.explain(half, x, "gradcam"), lambda: explain_many(half, x, ["saliency"])):
        with pytest.raises(CnnlensError, match="the model has parameters on the meta device"):
            fn()


@pytest.mark.slow
def test_cli_explain_refuses_a_fractional_target(tmp_path):
    run = make_run(tmp_path / "run")
    for bad in ("2.5", "true"):
        p = run_cli("explain", str(run), "--images", "0", "--target", bad)
        assert p.returncode == 2
        assert f"argument --target: takes pred, label or a class index (a whole number); got '{bad}'" in p.stderr
    assert not (run / "explain").exists()
