"""A plain DNN (MLP) baseline, with explicit hidden widths or sized to match a parameter budget."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import MODELS, count_params, hw


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
                 ratio: float = 0.6) -> tuple[int, ...]:
    """Hidden widths (each ``ratio`` times the previous) whose MLP has about ``target`` params.

    The first width is found by bisection on the exact count, so the result is the closest
    integer solution; for any reachable target that is far within 1%.
    """
    if target <= mlp_params(in_features, num_classes, [1] * depth):
        raise ValueError(f"match_params={target} is too small for an MLP on {in_features} inputs "
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
    best = min((lo, hi), key=lambda h: abs(mlp_params(in_features, num_classes, widths(h)) - target))
    return widths(best)


@MODELS.register("mlp", description="DNN baseline: explicit hidden=... widths, or match_params=<model|count>")
def mlp(in_channels: int = 1, num_classes: int = 10, input_size: int | tuple[int, int] = 32,
        hidden: Sequence[int] | str | None = None, match_params: nn.Module | int | None = None,
        depth: int = 2, **_: object) -> nn.Module:
    h, w = hw(input_size)
    n_in = in_channels * h * w
    if isinstance(hidden, str):
        try:
            hidden = [int(v) for v in hidden.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"mlp hidden must be comma-separated integers like '1800,1050'; got {hidden!r}") from None
    if hidden is not None and match_params is not None:
        raise ValueError("give mlp either hidden=... or match_params=..., not both")
    if hidden is None:
        if match_params is None:
            hidden = (512, 256)
        else:
            hidden = match_hidden(n_in, num_classes, count_params(match_params), depth=depth)
    if not hidden or any(int(v) < 1 for v in hidden):
        raise ValueError(f"mlp hidden widths must be positive integers; got {hidden!r}")
    return MLP(n_in, num_classes, [int(v) for v in hidden])
