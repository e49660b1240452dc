"""Trust tests as self-contained classes: a new one is one file plus one line (the docs' worked
example, run verbatim), and faithfulness is not judged on a model at chance."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import cnnlens
from cnnlens.metrics import (
    CONTROLS,
    TRUST_METRICS,
    ChanceCheck,
    Evidence,
    Score,
    run_trust,
    unregister_test,
)
from cnnlens.metrics.results import decide, reading
from conftest import SRC, cli

ROOT = Path(__file__).resolve().parents[1]
FAITHFUL = re.compile(r"\bfaithful\b")  # the verdict word ("faithfulness" does not match)


def docs_example(tmp: Path) -> Path:
    """The max-sensitivity module of docs/architecture.md, written verbatim to ``tmp``."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Adding a trust test") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "class MaxSensitivity(TrustTest)" in code
    path = tmp / "max_sensitivity.py"
    path.write_text(code)
    return path


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return cnnlens.create_model("compact", 1, 4, 48, widths=(4, 8), fc=(16,))


def last_linear(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


# ---- at chance ------------------------------------------------------------------------------------


def test_chance_check_hand_values() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    c = ChanceCheck.of(probs, margin=0.05)
    # max |p - 1/3|: 1/6 for the first image, 0 for the second; mean top probability (0.5 + 1/3) / 2
    assert c.num_classes == 3 and c.deviation == pytest.approx(1 / 12) and not c.at_chance
    assert c.mean_top_probability == pytest.approx(5 / 12)
    assert ChanceCheck.of(probs, margin=0.1).at_chance


def _faithfulness_scores(gain: float, edge: float, n: int = 12) -> dict[str, dict[str, Score]]:
    g = torch.Generator().manual_seed(1)
    key = "insertion_minus_deletion"

    def s(v: float) -> dict[str, Score]:
        return {key: Score(key, v + 1e-4 * torch.randn(n, generator=g), True)}

    return {"m": s(gain), "control_random": s(0.0), "control_edge": s(edge)}


def test_an_ins_del_of_zero_is_never_called_faithful() -> None:
    confident = ChanceCheck.of(torch.tensor([[0.9, 0.1]] * 12), margin=0.05)
    # ins-del 0.004 beats both controls (0.0 and -0.05) by far more than 2 SE ...
    ev = Evidence(_faithfulness_scores(0.004, -0.05), confident, 12, "test")
    assert decide("m", ev, ["faithfulness"]) == {"faithfulness": False}  # ... but prints as 0.00
    line = reading("m", ev, {"faithfulness": False}, ["faithfulness"])
    assert line.startswith("m: too small an effect to call faithful (ins-del 0.00;"), line
    # a real effect passes
    ev = Evidence(_faithfulness_scores(0.2, -0.05), confident, 12, "test")
    assert decide("m", ev, ["faithfulness"]) == {"faithfulness": True}
    # the same numbers on a model at chance: cannot be judged
    at_chance = ChanceCheck.of(torch.full((12, 7), 1 / 7) + 0.001 * torch.eye(7)[torch.arange(12) % 7], 0.05)
    ev = Evidence(_faithfulness_scores(0.2, -0.05), at_chance, 12, "val")
    assert decide("m", ev, ["faithfulness"]) == {"faithfulness": None}
    line = reading("m", ev, {"faithfulness": None}, ["faithfulness"])
    assert line.startswith("m: faithfulness cannot be judged (the model is at chance on these 12 val images")
    assert "chance 1/7 = 0.14" in line and not FAITHFUL.search(line)


def test_readings_print_the_controls_numbers_by_hand() -> None:
    n, key, other = 4, "insertion_minus_deletion", "b"

    def sc(*vals: float) -> dict[str, Score]:
        return {k: Score(k, torch.full((n,), v, dtype=torch.float64), True) for k, v in zip((key, other), vals)}

    confident = ChanceCheck.of(torch.tensor([[0.9, 0.1]] * n), margin=0.05)
    ev = Evidence({"m": sc(0.31, 0.5), "control_edge": sc(0.02, 0.125), "control_random": sc(-0.004, 1.0)},
                  confident, n, "test")
    assert ev.controls(key) == "edge control 0.02, random -0.00"
    assert ev.controls(key, other) == "edge control 0.02/0.12, random -0.00/1.00"
    line = reading("m", ev, {"faithfulness": True}, ["faithfulness"])
    assert "(ins-del 0.31; edge control 0.02, random -0.00)" in line, line


def test_a_model_at_chance_gets_no_faithfulness_verdict(tmp_path: Path) -> None:
    model = tiny_model()
    with torch.no_grad():  # zero last layer: every probability is exactly 1/4
        last_linear(model).weight.zero_()
        last_linear(model).bias.zero_()
    ds = cnnlens.load_dataset("planted", n=120)
    rep = run_trust(model, ds, ["saliency", "gradcam"], n_images=6, steps=4, cascade=False,
                    out_dir=tmp_path)
    assert rep.chance.at_chance and rep.chance.mean_top_probability == pytest.approx(0.25)
    for m in ("saliency", "gradcam"):
        assert rep.passed[m]["faithfulness"] is None
        assert not FAITHFUL.search(rep.readings[m]) and "faithfulness cannot be judged" in rep.readings[m]
    assert any(n.startswith("Faithfulness cannot be judged: the model is at chance on these 6 test images")
               for n in rep.notes)
    header, rows = rep.table()
    col = header.index("faithfulness")
    assert [r[col] for r in rows] == ["n/a", "n/a", "control", "control"]
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["chance"]["at_chance"] is True and data["notes"] == rep.notes
    assert data["methods"]["saliency"]["passed"]["faithfulness"] is None


# ---- the CLI and the report -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trust_tests") / "run"
    cnnlens.train("planted", "compact", out=out, epochs=1, batch_size=256, seed=0,
                  model_options={"widths": [4, 8], "fc": [16]}, accelerator="cpu")
    return out


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start : html.index("</section>", start)]


@pytest.mark.slow
def test_at_chance_the_table_and_the_report_say_faithfulness_cannot_be_judged(
    tiny_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model = cnnlens.load_run(run).model
    with torch.no_grad():  # probabilities all near 1/4 (as a model that learned nothing)
        last_linear(model).weight.mul_(1e-3)
        last_linear(model).bias.zero_()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / "model.safetensors"),
              metadata={"format": "pt"})
    p = cli("trust", str(run), "--methods", "saliency,gradcam", "--fast", "--n-images", "6", "--steps", "4")
    assert "Faithfulness cannot be judged: the model is at chance on these 6 test images" in p.stdout
    assert "n/a" in p.stdout and not FAITHFUL.search(p.stdout), p.stdout
    data = json.loads((run / "trust" / "scores.json").read_text())
    assert data["chance"]["mean_top_probability"] < 0.26
    assert {m: v["passed"]["faithfulness"] for m, v in data["methods"].items() if m not in CONTROLS} == {
        "saliency": None, "gradcam": None}
    cli("report", str(run))
    trust = _section((run / "report" / "index.html").read_text(), "trust")
    assert "Faithfulness cannot be judged: the model is at chance on these 6 test images" in trust
    assert trust.count(">n/a</td>") == 2 and not FAITHFUL.search(trust)


@pytest.mark.slow
def test_a_new_trust_test_is_one_file_and_one_line(tiny_run: Path, tmp_path: Path) -> None:
    example = docs_example(tmp_path)  # the one new file, verbatim from docs/architecture.md
    ds = cnnlens.load_dataset("planted", n=120)
    model = tiny_model()
    kw = dict(n_images=4, steps=4, cascade=False)
    before = run_trust(model, ds, ["saliency"], **kw)
    assert "max_sensitivity" not in TRUST_METRICS
    spec = importlib.util.spec_from_file_location("max_sensitivity", example)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # the one line: importing the module registers the test
        rep = run_trust(model, ds, ["saliency"], **kw)
    finally:
        unregister_test("max_sensitivity")
    assert rep.tests == [*before.tests, "max_sensitivity"]
    for m in rep.methods:
        assert set(rep.scores[m]) == {*before.scores[m], "max_sensitivity"}
        for k, s in before.scores[m].items():  # adding a test changes no other test's numbers
            torch.testing.assert_close(rep.scores[m][k].values, s.values, rtol=0, atol=0)
        assert rep.scores[m]["max_sensitivity"].higher_is_better is False
    # the random control redraws U[0,1) noise: ||u2 - u1|| / ||u1|| -> sqrt((1/6) / (1/3)) = 0.707 on 48x48
    assert 0.69 < rep.scores["control_random"]["max_sensitivity"].mean < 0.76
    header, rows = rep.table()
    assert "max sens" in header and header[-2] == "max_sensitivity"
    verdict = rep.passed["saliency"]["max_sensitivity"]
    assert rows[0][-2] == {True: "pass", False: "FAIL"}[verdict]
    sens = rep.scores["saliency"]["max_sensitivity"].mean
    if verdict:  # the reading lists it among the passed tests, or else gives its own numbers
        assert rep.readings["saliency"].endswith(", max_sensitivity")
    else:
        assert f"no more stable than random noise (max-sensitivity {sens:.2f};" in rep.readings["saliency"]

    # the real CLI, with the file imported first (as a user's script would), then the report
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import max_sensitivity  # noqa\n"
            "from cnnlens.cli import main; sys.exit(main(sys.argv[2:]))")
    env = {"PYTHONPATH": str(SRC), "COLUMNS": "250", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path), "trust", str(run), "--methods", "saliency",
                        "--fast", "--n-images", "4", "--steps", "4"], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert "max sens" in p.stdout and "max_sensitivity" in p.stdout
    data = json.loads((run / "trust" / "scores.json").read_text())
    assert data["tests"]["max_sensitivity"]["columns"][0]["title"] == "max-sensitivity (Yeh et al. 2019)"
    assert data["methods"]["saliency"]["reading"] in p.stdout
    cli("report", str(run))  # a plain `cnnlens report`: it renders from scores.json alone
    trust = _section((run / "report" / "index.html").read_text(), "trust")
    assert "max-sensitivity (Yeh et al. 2019)" in trust and "<th>max_sensitivity</th>" in trust
    mean = data["methods"]["saliency"]["scores"]["max_sensitivity"]["mean"]
    assert f"{mean:.3f}" in trust
