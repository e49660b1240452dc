"""docs/derivations.md, formula by formula, in plain torch against autograd (float64, 1e-10), on the
``device`` fixture's devices (``CNNLENS_TEST_DEVICE``, tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

TOL = dict(rtol=0, atol=1e-10)
EPS = 1e-5


def _bn_case(shape: tuple[int, ...], seed: int, device: torch.device = torch.device("cpu")):
    g = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same numbers on every device
    c = shape[1]
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1.5).to(device).requires_grad_(True)
    gamma = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(device).requires_grad_(True)
    beta = torch.randn(c, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    up = torch.randn(shape, generator=g, dtype=torch.float64).to(device)  # dL/dy from above
    return x, gamma, beta, up


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """[B, C, ...] -> [C, m] with m = B * (spatial size): the values each channel normalizes over."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


def _from_per_channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    moved = like.transpose(0, 1)
    return t.reshape(moved.shape).transpose(0, 1)


def by_hand(x: torch.Tensor, gamma: torch.Tensor, up: torch.Tensor) -> dict[str, torch.Tensor]:
    """Formulas (1)-(7) of docs/derivations.md, per channel, no autograd."""
    xc, gc = _per_channel(x.detach()), _per_channel(up)
    m = xc.shape[1]
    gam = gamma.detach()[:, None]
    mu = xc.mean(1, keepdim=True)
    var = ((xc - mu) ** 2).mean(1, keepdim=True)  # biased
    s = (var + EPS).sqrt()
    xhat = (xc - mu) / s
    dbeta = gc.sum(1)                                                        # (1)
    dgamma = (gc * xhat).sum(1)                                              # (2)
    dxhat = gam * gc                                                         # (3)
    dvar = (dxhat * (xc - mu)).sum(1, keepdim=True) * -0.5 * (var + EPS) ** -1.5       # (4)
    dmu = (dxhat * (-1 / s)).sum(1, keepdim=True) + dvar * (-2 / m) * (xc - mu).sum(1, keepdim=True)  # (5)
    dx_steps = dxhat / s + dvar * 2 * (xc - mu) / m + dmu / m                # (6)
    dx = gam / (m * s) * (m * gc - gc.sum(1, keepdim=True) - xhat * (gc * xhat).sum(1, keepdim=True))  # (7)
    return {"dbeta": dbeta, "dgamma": dgamma, "dx_steps": _from_per_channel(dx_steps, x),
            "dx": _from_per_channel(dx, x), "dmu_short": -(dxhat.sum(1, keepdim=True)) / s, "dmu": dmu,
            "xhat": xhat, "s": s, "var": var, "gc": gc}


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 5, 6), (1, 2, 7, 3)])
def test_batchnorm_backward_matches_autograd(shape, device):
    x, gamma, beta, up = _bn_case(shape, seed=sum(shape), device=device)
    y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=EPS)
    dx, dgamma, dbeta = torch.autograd.grad(y, (x, gamma, beta), up)
    h = by_hand(x, gamma, up)
    assert torch.allclose(h["dbeta"], dbeta, **TOL)
    assert torch.allclose(h["dgamma"], dgamma, **TOL)
    assert torch.allclose(h["dx_steps"], dx, **TOL)  # the step-by-step form (6)
    assert torch.allclose(h["dx"], dx, **TOL)        # the simplified form (7)
    assert torch.allclose(h["dmu"], h["dmu_short"], **TOL)  # (5): the sigma^2 term vanishes
    assert dx.abs().max() > 1e-3  # a real gradient, not a trivially zero one


def test_batchnorm_module_in_training_mode_and_running_stats_do_not_matter(device):
    """nn.BatchNorm2d in train mode (running statistics set to junk) gives the same gradients."""
    x, gamma, beta, up = _bn_case((3, 4, 5, 5), seed=7, device=device)
    bn = nn.BatchNorm2d(4, eps=EPS).double().to(device).train()
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
        bn.running_mean.fill_(100.0)
        bn.running_var.fill_(1e-3)
    xx = x.detach().clone().requires_grad_(True)
    bn(xx).backward(up)
    h = by_hand(x, gamma, up)
    assert torch.allclose(h["dx"], xx.grad, **TOL)
    assert torch.allclose(h["dgamma"], bn.weight.grad, **TOL)
    assert torch.allclose(h["dbeta"], bn.bias.grad, **TOL)


def test_batchnorm_gradient_identities(device):
    """Shifting the batch changes nothing: sum_i dL/dx_i = 0; scaling only through epsilon:
    sum_i xhat_i dL/dx_i = (gamma/s) * sum_j g_j xhat_j * eps / (sigma^2 + eps)."""
    x, gamma, _, up = _bn_case((8, 3, 4, 4), seed=3, device=device)
    h = by_hand(x, gamma, up)
    dxc = _per_channel(h["dx"])
    assert torch.allclose(dxc.sum(1), torch.zeros(3, dtype=torch.float64, device=device), **TOL)
    lhs = (h["xhat"] * dxc).sum(1)
    rhs = (gamma.detach()[:, None] / h["s"] * (h["gc"] * h["xhat"]).sum(1, keepdim=True)
           * EPS / (h["var"] + EPS)).squeeze(1)
    assert torch.allclose(lhs, rhs, **TOL)


def softmax_by_hand(z: torch.Tensor) -> torch.Tensor:
    e = (z - z.amax(1, keepdim=True)).exp()
    return e / e.sum(1, keepdim=True)


def _ce_case(seed: int, b: int = 6, k: int = 7, device: torch.device = torch.device("cpu")):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(b, k, generator=g, dtype=torch.float64) * 4).to(device).requires_grad_(True)
    labels = torch.randint(0, k, (b,), generator=g).to(device)
    return z, labels, F.one_hot(labels, k).double()


def test_softmax_jacobian(device):
    z, _, _ = _ce_case(0, b=1, device=device)
    p = softmax_by_hand(z.detach())[0]
    eye = torch.eye(len(p), dtype=torch.float64, device=device)
    jac_hand = p[:, None] * (eye - p[None, :])   # (8): [k, i]
    jac = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, 0), z.detach()[0])
    assert torch.allclose(jac_hand, jac, **TOL)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_gradient_is_softmax_minus_y(smoothing, device):
    z, labels, onehot = _ce_case(1, device=device)
    k = z.shape[1]
    y = (1 - smoothing) * onehot + smoothing / k
    # per-example sum: (9)
    loss = F.cross_entropy(z, labels, reduction="sum", label_smoothing=smoothing)
    (dz,) = torch.autograd.grad(loss, z)
    assert torch.allclose(dz, softmax_by_hand(z.detach()) - y, **TOL)
    # the default batch mean: (10)
    (dz_mean,) = torch.autograd.grad(F.cross_entropy(z, labels, label_smoothing=smoothing), z)
    assert torch.allclose(dz_mean, (softmax_by_hand(z.detach()) - y) / z.shape[0], **TOL)


def test_targets_not_summing_to_one_give_p_sum_y_minus_y(device):
    """The sum(y) = 1 step matters: for other targets the gradient is p * sum(y) - y."""
    z, _, _ = _ce_case(2, device=device)
    y = (torch.rand(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2).to(device)
    loss = -(y * torch.log_softmax(z, 1)).sum()
    (dz,) = torch.autograd.grad(loss, z)
    p = softmax_by_hand(z.detach())
    assert torch.allclose(dz, p * y.sum(1, keepdim=True) - y, **TOL)
    assert not torch.allclose(dz, p - y, atol=1e-3)
