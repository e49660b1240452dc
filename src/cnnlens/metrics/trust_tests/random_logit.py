"""Random logit (the class side of Adebayo et al. 2018): the map for another class."""

from __future__ import annotations

from ..base import Column, Evidence, Measured, MethodBatch, TrustTest, register_test
from ..randomization import map_similarity

KEY = "random_logit.spearman_abs"


@register_test
class RandomLogit(TrustTest):
    """|rank corr| between the map for the true class and for another class drawn at random must
    be nearer the random control than the edge control."""

    name = "random_logit"
    description = (
        "map for the true class vs for another class: |rank corr| nearer the random control "
        "than the edge control"
    )
    scores = {"random_logit.spearman": False, KEY: False, "random_logit.ssim": False}
    headline = (KEY,)
    columns = (Column(KEY, "logit |rho|", "rank corr. of |map| with another class"),)
    rule = "midpoint"
    words = ("class-sensitive", "insensitive to the explained class")

    def measure(self, b: MethodBatch) -> Measured:
        sims = map_similarity(b.maps, b.explain(target=b.others), b.method)
        return Measured({f"random_logit.{k}": s.values for k, s in sims.items()})

    def numbers(self, method: str, ev: Evidence) -> str:
        return (
            f"|rank corr| {ev.f(method, KEY)} with another class's map; "
            f"edge control {ev.f('control_edge', KEY)}"
        )
