"""The "Which map to believe" section: the trust table, its verdicts and the randomization figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...rundir import TrustScores
from .. import findings
from .common import RunView, cell_word, copy_beside, fig_entry


def trust_section(r: RunView, out: Path) -> dict[str, Any] | None:
    rec = r.load(TrustScores, "the trust scores")
    if rec is None:
        return None
    s = rec.to_dict()
    from ...metrics.results import declarations, verdict_word

    decl = declarations(s)
    tests = list(s["tests"])
    cols = [
        (c["title"], c["key"], "higher is better" if c["higher_is_better"] else "lower is better")
        for t in tests
        for c in decl[t]["columns"]
    ]
    cols = [c for c in cols if any(c[1] in v["scores"] for v in s["methods"].values())]
    rows = []
    for m, v in s["methods"].items():
        rows.append(
            {
                "method": m,
                "control": v["control"],
                "reading": v["reading"],
                "vals": [
                    (v["scores"][k]["mean"], v["scores"][k]["sem"]) if k in v["scores"] else None
                    for _, k, _ in cols
                ],
                "passed": [
                    cell_word(verdict_word(m, v["passed"].get(t), t in v["passed"])) for t in tests
                ],
            }
        )
    figs = []
    if (r.path / "trust" / "randomization.png").exists():
        copy_beside(r.path / "trust" / "randomization.png", out / "trust_randomization.png")
        figs.append(
            fig_entry(
                "trust_randomization.png",
                "cascading randomization",
                f"Cascading model-parameter randomization (Adebayo et al. 2018) on {s['n_images']} "
                f"{s.get('options', {}).get('split', 'test')} "
                "images: layers are re-initialized from the logits down (x axis) and each method's maps are "
                "compared with its original maps by the Spearman rank correlation of |map| (y axis). A map "
                "that "
                "depends on the learned weights falls towards 0; the edge control stays at 1.",
            )
        )
    o = s["options"]
    return {
        "findings": findings.trust_findings(s),
        "columns": cols,
        "tests": tests,
        "test_info": s["tests"],
        "rows": rows,
        "figures": figs,
        "n_images": s["n_images"],
        "options": o,
        "seconds": s["seconds"],
        "raw": ["trust/scores.json", "trust/table.csv"],
    }
