"""The "Where it looks" section: the explanation grids, the attribution regions and LIME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...rundir import AttributionRegions, ExplainMaps, LimeMaps
from .. import findings
from .common import RunView, copy_beside, fig_entry, transform_note


def looks_section(r: RunView, out: Path) -> dict[str, Any] | None:
    from ..fig_explain import explanation_grid
    from .. import plots

    index = r.load(ExplainMaps, "the per-class explanations")
    lime = r.load(LimeMaps, "LIME")
    if index is None and lime is None:
        return None
    d: dict[str, Any] = {"findings": [], "figures": [], "raw": []}
    if index is not None:
        classes = index.classes or [str(k) for k in range(len(index.probs[0]))]
        exps = index.explanations()
        images = r.images(index.indices)
        labels = index.labels or [None] * len(index.indices)
        titles = [
            f"#{i}" + (f" true: {classes[lb]}" if lb is not None else "")
            for i, lb in zip(index.indices, labels)
        ]
        explanation_grid(images, exps, titles, out / "explanations.png", classes=classes)
        layers = "; ".join(
            f"{m} at layer {v['layer']}{transform_note(v)}" for m, v in index.methods.items() if v.get("layer")
        )
        rollouts = "; ".join(
            f"{m} over {ex['blocks']} attention blocks (head fusion {ex.get('head_fusion')}, discard ratio "
            f"{ex.get('discard_ratio')}; class-agnostic)"
            for m, v in index.methods.items()
            if "blocks" in (ex := v.get("extras") or {}) and "head_fusion" in ex
        )
        layers = "; ".join(s for s in (layers, rollouts) if s)
        d["figures"].append(
            fig_entry(
                "explanations.png",
                "explanations per class, every method side by side",
                findings.explained_images(index.to_dict())
                + f" by {len(exps)} methods (columns: {', '.join(exps)}). Titles give the explained class and "
                "its softmax probability. "
                + (f"Layers: {layers}. " if layers else "")
                + "Unsigned maps: jet colormap, divided per image by the 99.5th percentile of the map and "
                "clipped; signed maps: red = evidence for the class, blue = against, divided by the 99.5th "
                "percentile of |value| and clipped to ±1."
                + "".join(f" Note: {n}" for n in index.notes or []),
            )
        )
        d["raw"] += ["explain/explanations.json", "explain/*.npy"]
        regions = r.load(AttributionRegions, "where the attribution falls (regions)")
        if regions is not None:
            # the page links the table beside itself, under the name the findings cite
            for suffix in (".csv", ".json"):
                copy_beside(regions.path(r.path).with_suffix(suffix), out / f"attribution_regions{suffix}")
            primary = regions.primary
            d["findings"] += findings.looks_findings_per_class(
                primary, regions.per_class, "report/attribution_regions.csv"
            )
            plots.region_mass_figure(
                regions.per_class, [c["class"] for c in regions.per_class], out / "attribution_regions.png",
                primary,
            )
            d["figures"].append(
                fig_entry(
                    "attribution_regions.png",
                    "share of attribution per region",
                    f"Where {primary}'s attribution falls, per class: the share of the map's absolute value "
                    "|m| in each row "
                    "third, column third and the central box (the middle half of height and width, "
                    f"{100 * regions.centre_box_area:.0f}% of the "
                    "area; a uniform map puts that share there). Every method's numbers: "
                    "attribution_regions.csv.",
                )
            )
            d["raw"] += ["explain/attribution_regions.json", "report/attribution_regions.csv"]
    if lime is not None:
        classes = lime.classes
        titles = [
            f"#{i} {classes[t]} ({100 * p:.0f}%)"
            for i, t, p in zip(lime.indices, lime.targets, lime.probs)
        ]
        from ..fig_lime import plot_superpixel_evidence

        plot_superpixel_evidence(
            r.images(lime.indices),
            torch.from_numpy(lime.segments),
            [torch.tensor(w) for w in lime.weights],
            out / "lime.png",
            k=5,
            titles=titles,
            method="LIME",
        )
        d["lime_figure"] = fig_entry("lime.png", "LIME with superpixel boundaries", lime_caption(lime))
        d["lime_findings"] = findings.lime_findings(lime.to_dict())
        d["raw"] += ["explain/lime/lime.json", "explain/lime/lime.npy", "explain/lime/segments.npy"]
    return d


def lime_caption(lime: LimeMaps) -> str:
    """The LIME figure's caption; every setting named comes from ``lime.json``."""
    st = lime.settings
    seg = lime.segmentation or st.get("segmentation")
    seg_text = f"{seg} superpixels" if seg else "superpixels"
    fit = []
    if "alpha" in st:
        fit.append(f"α = {st['alpha']:g}")
    if "kernel_width" in st:
        fit.append(f"kernel width {st['kernel_width']:g}")
    fill = st.get("baseline")
    off = {"mean": "the superpixel's mean colour", "zero": "the dataset mean colour",
           "blur": "a blurred copy of the image"}.get(fill, f"{fill}" if fill is not None else "")
    return (
        f"LIME per class ({len(lime.indices)} correctly classified {lime.split or 'test'} images, "
        "explained for the "
        "predicted "
        "class). Columns: the image with its superpixel boundaries (yellow; "
        f"{int(np.median(lime.n_segments))} "
        f"{seg_text}, median); the 5 superpixels with the largest positive weight (evidence for the "
        "class, "
        "green tint, the rest dimmed); the 5 with the most negative weight (against, red tint); every "
        "superpixel coloured by its weight (red = for, blue = against, scale on the colour bar). "
        "Weights: a "
        f"ridge regression{' (' + ', '.join(fit) + ')' if fit else ''} of the class "
        f"{'probability' if lime.output == 'prob' else lime.output} on {lime.n_samples:,} "
        "random "
        f"superpixel on/off samples (seed {lime.seed}{'; off = ' + off if off else ''})."
    )
