"""A plain DNN (MLP) baseline, with explicit hidden widths or sized to match a parameter budget."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import MODELS, count_params, hw
from ..errors import CnnlensError


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear(K)."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int]) -> None:
        super().__init__()
        dims = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], num_classes))
        self.net = nn.Sequential(*layers)
        self.hidden = tuple(hidden)

    def forward(self, x):
        return self.net(x)


def mlp_params(in_features: int, num_classes: int, hidden: Sequence[int]) -> int:
    dims = [in_features, *hidden, num_classes]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def match_hidden(in_features: int, num_classes: int, target: int, depth: int = 2,
                 ratio: float = 0.6, tolerance: float = 0.01) -> tuple[int, ...]:
    """Hidden widths whose MLP has as close to ``target`` params as the shape allows.

    The widths shrink by ``ratio`` layer to layer. The first width is found by bisection on the
    exact count; then the last width is solved for exactly (it enters the count linearly, and is
    kept no wider than the one before unless that misses ``tolerance``), over the first widths
    next to the bisection's, and the closest total wins. Raises if the result is
    more than ``tolerance`` (relative) off, which only happens for tiny targets or ``depth=1``.
    """
    if depth < 1:
        raise CnnlensError(f"mlp depth must be >= 1; got {depth}")
    if target <= mlp_params(in_features, num_classes, [1] * depth):
        raise CnnlensError(f"match_params={target} is too small for an MLP on {in_features} inputs "
                         f"with {depth} hidden layers")

    def widths(h0: int) -> tuple[int, ...]:
        out, h = [], float(h0)
        for _ in range(depth):
            out.append(max(1, int(round(h))))
            h *= ratio
        return tuple(out)

    lo, hi = 1, 1
    while mlp_params(in_features, num_classes, widths(hi)) < target:
        hi *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mlp_params(in_features, num_classes, widths(mid)) < target:
            lo = mid
        else:
            hi = mid

    def solve_last(ws: tuple[int, ...], cap: bool) -> tuple[int, ...]:
        # count = fixed + last * (prev + 1 + K), with prev the width feeding the last hidden layer
        prev = ws[-2] if depth > 1 else in_features
        fixed = mlp_params(in_features, num_classes, ws) - ws[-1] * (prev + 1 + num_classes)
        last = max(1, round((target - fixed) / (prev + 1 + num_classes)))
        if cap and depth > 1:
            last = min(last, prev)  # keep the widths non-increasing
        return (*ws[:-1], last)

    def err(ws: tuple[int, ...]) -> int:
        return abs(mlp_params(in_features, num_classes, ws) - target)

    firsts = range(max(1, lo - 2), hi + 3)
    # prefer a shrinking shape; widen the last layer past the one before only if that is needed
    best = min((solve_last(widths(h0), True) for h0 in firsts), key=err)
    if err(best) > tolerance * target:
        best = min((solve_last(widths(h0), False) for h0 in firsts), key=err)
    got = mlp_params(in_features, num_classes, best)
    if abs(got - target) > tolerance * target:
        raise CnnlensError(f"no MLP with {depth} hidden layer(s) on {in_features} inputs comes within "
                         f"{tolerance:.0%} of {target:,} parameters (closest: {best}, {got:,}); "
                         "use depth=2 or more, or a larger target")
    return best


@MODELS.register("mlp", description="DNN baseline: explicit hidden=... widths, or match_params=<model|count>")
def mlp(in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 32,
        hidden: Sequence[int] | str | None = None, match_params: nn.Module | int | str | None = None,
        depth: int = 2, **_: object) -> nn.Module:
    """``hidden="1800,1050"`` (1x48x48, 7 classes: 6,047,407 params), or ``match_params`` = a model,
    a parameter count, or a registered model name (built for the same input and classes), for an
    MLP within 1% of that count."""
    h, w = hw(input_size)
    if isinstance(match_params, str):
        match_params = _target_count(match_params, in_channels, num_classes, input_size)
    n_in = in_channels * h * w
    if isinstance(hidden, str):
        try:
            hidden = [int(v) for v in hidden.split(",") if v.strip()]
        except ValueError:
            raise CnnlensError(f"mlp hidden must be comma-separated integers like '1800,1050'; got {hidden!r}") from None
    if hidden is not None and match_params is not None:
        raise CnnlensError("give mlp either hidden=... or match_params=..., not both")
    if hidden is None:
        if match_params is None:
            hidden = (512, 256)
        else:
            hidden = match_hidden(n_in, num_classes, count_params(match_params), depth=depth)
    if not hidden or any(int(v) < 1 for v in hidden):
        raise CnnlensError(f"mlp hidden widths must be positive integers; got {hidden!r}")
    return MLP(n_in, num_classes, [int(v) for v in hidden])


def _target_count(spec: str, in_channels: int, num_classes: int, input_size: int | tuple[int, int]) -> int:
    """``"6015879"`` or ``"6,015,879"`` -> that count; a model name -> its count for this input."""
    digits = spec.replace(",", "").replace("_", "").strip()
    if digits.isdigit():
        return int(digits)
    if spec.split(":", 1)[0] == "mlp":
        raise CnnlensError("mlp match_params must name another model (e.g. 'compact'), not mlp itself")
    from .base import create_model

    try:
        model = create_model(spec, in_channels=in_channels, num_classes=num_classes, input_size=input_size)
    except ValueError as e:
        raise CnnlensError(f"mlp match_params={spec!r} is neither a parameter count nor a model: {e}") from None
    return count_params(model)
