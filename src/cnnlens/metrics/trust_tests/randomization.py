"""Model parameter randomization (Adebayo et al. 2018): the maps of a randomized copy of the model."""

from __future__ import annotations

import torch

from ...nn import model_device
from ..base import Column, Evidence, Measured, MethodBatch, Score, TrustTest, register_test
from ..randomization import fully_randomized, map_similarity, randomization_curve

KEY = "randomization.spearman_abs"


def _curve(curve: list[tuple[str, dict[str, Score]]]) -> dict[str, torch.Tensor]:
    """``[(layer, {similarity: Score [B]})]`` -> ``{similarity: [B, layers]}``."""
    return {s: torch.stack([d[s].values for _, d in curve], 1) for s in curve[0][1]}


@register_test
class Randomization(TrustTest):
    """|rank corr| between the maps of the model and of its fully randomized copy must be nearer
    the random control than the edge control. Also draws the cascading curve (``config.cascade``)
    and the one-layer-at-a-time curve (``config.independent``)."""

    name = "randomization"
    description = (
        "model parameter randomization (Adebayo et al. 2018): |rank corr| with the maps of the fully "
        "randomized model must be nearer the random control than the edge control"
    )
    scores = {"randomization.spearman": False, KEY: False, "randomization.ssim": False}
    headline = (KEY,)
    columns = (
        Column(KEY, "rand |rho|", "rank corr. of |map| after randomization"),
        Column("randomization.ssim", "rand ssim", "SSIM of the maps after randomization"),
    )
    rule = "midpoint"
    words = ("sensitive to the model's weights", "insensitive to the model's weights")
    curves = ("cascading", "independent")

    def measure(self, b: MethodBatch) -> Measured:
        curves: dict[str, dict[str, torch.Tensor]] = {}
        seed = b.config.seed
        if b.config.cascade:  # its last step is the fully randomized model (same seeds as fully_randomized)
            curve = randomization_curve(b.model, b.explain, b.maps, b.layers, order="cascading", seed=seed,
                                        method=b.method)
            curves["cascading"] = _curve(curve)
            full = curve[-1][1]
        else:
            key = f"randomized@{model_device(b.model)}"
            if key not in b.cache:
                b.cache[key] = fully_randomized(b.model, b.layers, seed)
            full = map_similarity(b.maps, b.explain(b.cache[key]), b.method)
        if b.config.independent:
            curve = randomization_curve(b.model, b.explain, b.maps, b.layers, order="independent", seed=seed,
                                        method=b.method)
            curves["independent"] = _curve(curve)
        return Measured({f"randomization.{k}": s.values for k, s in full.items()}, curves)

    def numbers(self, method: str, ev: Evidence) -> str:
        return f"|rank corr| {ev.f(method, KEY)} after full randomization; {ev.controls(KEY)}"

    def control_note(self, control: str, ev: Evidence) -> str | None:
        return f"|rank corr| {ev.f(control, KEY)} after full randomization"
