"""The "What the filters learned" and "How long each stage took" sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...rundir import DeviceRecord, FeaturevizIndex, StagesRecord, Timings
from .. import findings
from .. import sources
from .common import RunView, copy_beside, fig_entry


def filters_section(r: RunView, out: Path) -> dict[str, Any] | None:
    fv = r.path / "featureviz"
    idx = sources.featureviz_index(fv)
    if idx is None:
        r.load(FeaturevizIndex, "the feature visualization")  # names the missing file on the page
        return None
    figs = []
    for f in idx["filters"]:
        name = f"fv_{f['figure']}"
        copy_beside(fv / f["figure"], out / name)
        k = len(f["examples"]["indices"][0]) if f["examples"]["indices"] else 0
        figs.append(
            fig_entry(
                name,
                f"filters of {f['layer']}",
                f"Activation maximization for {len(f['channels'])} filters of {f['layer']} (read before the "
                f"ReLU): each synthetic image was optimized for {f['steps']} Adam steps (learning rate "
                f"{f['lr']}, seed {f['seed']}, Fourier parameterization with random jitter, scale and "
                f"rotation) to maximize the filter's mean activation; beside it the {k} "
                f"{f['examples']['split']} image patches (receptive fields) that activate it most.",
            )
        )
    for fm in idx["featuremaps"]:
        name = f"fv_{fm['figure']}"
        copy_beside(fv / fm["figure"], out / name)
        k = fm["shape"][0]
        shown = (
            f"Every feature map of {fm['layer']} ({k} filters, "
            if k <= 64
            else f"The first 64 of the {k} feature maps of {fm['layer']} ("
        )
        figs.append(
            fig_entry(
                name,
                f"feature maps of {fm['layer']}",
                f"{shown}{fm['shape'][1]}×{fm['shape'][2]} pixels: the output of module {fm['layer']}, "
                "before "
                f"any ReLU that follows it) for {findings.image_of(fm)} (class {fm['class']}), shown "
                "beside the image; each map "
                "on its own colour scale (viridis, dark = low). All maps: "
                f"featureviz/{fm['figure'].rsplit('.', 1)[0]}.npy.",
            )
        )
    for d in idx["dreams"]:
        name = f"fv_{d['files'][0]}"
        copy_beside(fv / d["files"][0], out / name)
        for extra in d["files"][1:]:
            copy_beside(fv / extra, out / f"fv_{extra}")
        what = "the whole layer" if d["channel"] is None else f"filter {d['channel']}"
        figs.append(
            fig_entry(
                name,
                "Deep Dream progression",
                f"Deep Dream on {d['source']}: gradient ascent on the mean activation of {what} of "
                f"{d['layer']}, {d['octaves']} octaves (scale ratio {d['octave_scale']}) × {d['steps']} "
                "steps, "
                f"step size {d['lr']} grey levels, snapshots every {d['every']} steps "
                f"(steps {', '.join(map(str, d['snapshot_steps']))}). Animated: fv_{d['files'][1]}.",
            )
        )
    return {
        "findings": findings.filters_findings(idx),
        "figures": figs,
        "raw": ["featureviz/featureviz.json", "featureviz/*.json", "featureviz/*.npy"],
    }


def timings_section(r: RunView) -> dict[str, Any] | None:
    t = Timings.load(r.path).stages
    if not t:
        return None
    rows = [{"stage": stage, "wall": v.get("wall_s"), "cpu": v.get("cpu_s")} for stage, v in t.items()]
    total = sum(x["wall"] or 0 for x in rows)
    stages = StagesRecord.load_or_none(r.path)
    dev = DeviceRecord.load_or_none(r.path)
    device = dev.name if dev is not None else None
    on = ""
    if dev is not None:
        versions = f"torch {dev.torch}" + (f", CUDA {dev.cuda}" if dev.cuda else "")
        on = f" The analysis stages ran on {device} ({versions})."
    return {
        "device": device,
        "rows": rows,
        "total": total,
        "sizes": stages.sizes if stages else None,
        "findings": [
            findings._f(
                f"All stages together took {total:.1f} s of wall-clock time; the longest was "
                f"{max(rows, key=lambda x: x['wall'] or 0)['stage']}.{on}",
                "timings.json" + (", device.json" if device else ""),
            )
        ]
        if rows
        else [],
        "raw": ["timings.json", "stages.json"] + (["device.json"] if device else []),
    }
