"""Faithfulness: deletion/insertion AUC of the explained class's probability (Petsiuk et al. 2018)."""

from __future__ import annotations

from ..base import Column, Evidence, Measured, MethodBatch, TrustTest, register_test
from ..faithfulness import deletion_insertion

KEY = "insertion_minus_deletion"


@register_test
class Faithfulness(TrustTest):
    """Insertion - deletion must beat both controls, and by at least ``min_effect``.

    It cannot be judged when the model is at chance on the images: with every probability near
    ``1/K`` no pixel order can move the explained class's probability, so every method and control
    scores about 0 and a "pass" would be noise.
    """

    name = "faithfulness"
    description = (
        "deletion/insertion AUC of the target probability (Petsiuk et al. 2018); "
        "insertion - deletion must beat both controls"
    )
    scores = {"deletion_auc": False, "insertion_auc": True, KEY: True}
    headline = (KEY,)
    columns = (
        Column(KEY, "ins-del", "insertion − deletion AUC"),
        Column("deletion_auc", "del", "deletion AUC"),
        Column("insertion_auc", "ins", "insertion AUC"),
    )
    rule = "beat_controls"
    words = ("faithful", "no more faithful than a control")
    min_effect = 0.01  # an ins-del that prints as 0.00 is never called faithful
    image_curves = ("deletion", "insertion")  # kept per image for the report's explorer

    def measure(self, b: MethodBatch) -> Measured:
        sc, curves = deletion_insertion(
            b.model, b.x, b.maps, b.targets, method=b.method, steps=b.config.steps,
            substrate=b.config.substrate, stats=b.stats, blur_sigma=b.config.blur_sigma,
        )
        return Measured({k: s.values for k, s in sc.items()},
                        {kind: {"probability": curves[kind]} for kind in self.image_curves})

    def decide(self, method: str, ev: Evidence) -> bool | None:
        if ev.chance.at_chance:
            return None
        return bool(super().decide(method, ev)) and ev.mean(method, KEY) >= self.min_effect

    def numbers(self, method: str, ev: Evidence) -> str:
        return f"ins-del {ev.f(method, KEY)}; {ev.controls(KEY)}"

    def reading(self, method: str, ev: Evidence, passed: bool | None) -> str:
        if passed is None:
            why = ev.chance.sentence(ev.n_images, ev.split)
            return f"faithfulness cannot be judged ({why}; {self.numbers(method, ev)})"
        if passed is False and ev.mean(method, KEY) < self.min_effect and super().decide(method, ev):
            need = f"needs >= {self.min_effect:.2f}"
            return f"too small an effect to call faithful ({self.numbers(method, ev)}; {need})"
        return super().reading(method, ev, passed)

    def control_note(self, control: str, ev: Evidence) -> str | None:
        return f"ins-del {ev.f(control, KEY)}"

    def note(self, ev: Evidence) -> str | None:
        if not ev.chance.at_chance:
            return None
        return (
            f"Faithfulness cannot be judged: {ev.chance.sentence(ev.n_images, ev.split)}, so deleting or "
            "inserting pixels barely moves the explained class's probability; no verdict is given."
        )
