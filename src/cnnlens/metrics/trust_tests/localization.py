"""Localization against ground-truth evidence masks (data with masks, e.g. ``planted``)."""

from __future__ import annotations

from ..base import Column, Evidence, Measured, MethodBatch, TrustTest, register_test
from ..localization import pointing_game, relevance_mass

PG, RM = "pointing_game", "relevance_mass"


@register_test
class Localization(TrustTest):
    """Pointing game and relevance mass inside the mask must both beat both controls."""

    name = "localization"
    description = "pointing game and relevance mass inside the ground-truth mask must beat both controls"
    scores = {PG: True, RM: True}
    headline = (PG, RM)
    columns = (Column(PG, "pointing", "pointing game"), Column(RM, "mass", "relevance mass"))
    rule = "beat_controls"
    words = ("localizes the evidence", "does not localize the evidence better than a control")
    needs_masks = True

    def measure(self, b: MethodBatch) -> Measured:
        maps = b.maps.cpu()
        return Measured({PG: pointing_game(maps, b.masks, b.method).values,
                         RM: relevance_mass(maps, b.masks, b.method).values})

    def numbers(self, method: str, ev: Evidence) -> str:
        return f"pointing {ev.f(method, PG)}, mass {ev.f(method, RM)}; {ev.controls(PG, RM)}"

    def control_note(self, control: str, ev: Evidence) -> str | None:
        return f"pointing {ev.f(control, PG)}"
