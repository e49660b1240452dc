"""A run directory is data (#18 item 1): a run whose model.json names user code (a Python file or a
TorchScript program planted in the run) never runs it through any command or API without the
explicit opt-in (--trust-code / trust_code=True), and loads with it."""

from __future__ import annotations

import json
import shutil
import sys
import warnings

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.cli import main
from cnnlens.errors import CnnlensError
from conftest import TINY_MODEL_SRC, cli

BENIGN = TINY_MODEL_SRC

EVIL = BENIGN.replace("class Tiny", "class Evil") + '''
open({marker!r}, "a").write("imported\\n")
'''


class PrintingTiny(nn.Module):
    """Tiny's layers; its TorchScript forward prints a marker, so running the program shows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("TORCHSCRIPT-RAN")  # noqa: T201
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """(run with a planted Python module, run with a planted TorchScript file, marker file)."""
    d = tmp_path_factory.mktemp("planted")
    (d / "tiny.py").write_text(BENIGN)
    base = d / "base"
    cnnlens.import_model(f"{d / 'tiny.py'}:Tiny", "digits", out=base, trust_code=True)
    marker = d / "MARKER"
    py_run, ts_run = d / "py_run", d / "ts_run"
    shutil.copytree(base, py_run)
    shutil.copytree(base, ts_run)
    (py_run / "evilmod.py").write_text(EVIL.format(marker=str(marker)))
    net = PrintingTiny()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), str(ts_run / "net.pt"))
    for run, name in ((py_run, f"{py_run / 'evilmod.py'}:Evil"), (ts_run, str(ts_run / "net.pt"))):
        meta = json.loads((run / "model.json").read_text())
        meta["model"]["name"] = name
        (run / "model.json").write_text(json.dumps(meta))
    (ts_run / "config.yaml").unlink()  # a run with model.json alone
    return py_run, ts_run, marker


COMMANDS = [
    ["evaluate", "{run}"],
    ["predict", "{run}", "--out", "{tmp}/p.csv"],
    ["report", "{run}"],
    ["explain", "{run}", "--methods", "saliency"],
    ["trust", "{run}", "--fast", "--methods", "saliency"],
    ["filters", "{run}", "--layer", "conv", "--steps", "2"],
    ["featuremaps", "{run}", "--layer", "conv", "--image", "0"],
    ["dream", "{run}", "--layer", "conv", "--image", "0", "--steps", "1"],
    ["compare", "{run}", "{run}", "--out", "{tmp}/cmp"],
]


@pytest.mark.parametrize("which", ["python", "torchscript"])
def test_no_command_runs_planted_code_without_trust_code(planted, which, tmp_path, capfd):
    py_run, ts_run, marker = planted
    run, file = (py_run, "evilmod.py") if which == "python" else (ts_run, "net.pt")
    shutil.rmtree(run / "eval", ignore_errors=True)  # compare loads only runs not yet evaluated
    for cmd in COMMANDS:
        args = [a.format(run=run, tmp=tmp_path) for a in cmd]
        assert main(args) == 2, args
        captured = capfd.readouterr()
        err = " ".join(captured.err.split())
        assert file in err and "--trust-code" in err, (args, err)
        assert "nothing from the file is executed" in err, (args, err)
        assert "TORCHSCRIPT-RAN" not in captured.out + captured.err
        assert not marker.exists(), args
    assert not any("evilmod" in m for m in sys.modules)


@pytest.mark.parametrize("which", ["python", "torchscript"])
def test_no_api_runs_planted_code_without_trust_code(planted, which, tmp_path, capfd):
    py_run, ts_run, marker = planted
    run = py_run if which == "python" else ts_run
    from cnnlens.predict import predict
    from cnnlens.report.compare import compare_runs
    from cnnlens.report.html import build_report

    shutil.rmtree(run / "eval", ignore_errors=True)
    calls = [lambda: cnnlens.load_run(run), lambda: build_report(run, split="val"),
             lambda: predict(run, out=tmp_path / "p.csv"),
             lambda: compare_runs([run, run], tmp_path / "cmp")]
    for call in calls:
        with pytest.raises(CnnlensError, match="trust_code=True"):
            call()
    # a report of what the run already holds needs no model: it renders from the records alone
    assert "<html" in build_report(run).read_text().lower()
    assert not marker.exists()
    assert "TORCHSCRIPT-RAN" not in capfd.readouterr().out


@pytest.mark.slow
def test_real_cli_refuses_then_loads_with_trust_code(planted, tmp_path):
    py_run, ts_run, marker = planted
    for cmd in (["evaluate", str(py_run)], ["predict", str(py_run), "--out", str(tmp_path / "p.csv")],
                ["report", str(py_run)], ["predict", str(ts_run), "--out", str(tmp_path / "t.csv")]):
        p = cli(*cmd, check=False)
        assert p.returncode == 2 and "Traceback" not in p.stderr, cmd
        assert "--trust-code" in p.stderr and "TORCHSCRIPT-RAN" not in p.stdout, cmd
        assert not marker.exists(), cmd
    cli("evaluate", str(py_run), "--trust-code")
    assert marker.read_text().startswith("imported")  # the opt-in really loads (and runs) it
    marker.unlink()
    p = cli("predict", str(ts_run), "--out", str(tmp_path / "t.csv"), "--trust-code")
    assert "TORCHSCRIPT-RAN" in p.stdout
    assert (tmp_path / "t.csv").read_text().count("\n") == 271  # header + the 270 test images


def test_trust_code_loads_the_same_model(planted, capfd):
    py_run, ts_run, marker = planted
    a = cnnlens.load_run(ts_run, trust_code=True)
    b = cnnlens.load_run(py_run.parent / "base", trust_code=True)
    x = b.dataset.normalize(b.dataset.images[:4])
    with torch.no_grad():
        assert torch.equal(a.model(x), b.model(x))
    assert "TORCHSCRIPT-RAN" in capfd.readouterr().out


@pytest.mark.slow
def test_builtin_and_torchvision_models_need_no_opt_in(tmp_path):
    for name, opts in (("mlp", {"hidden": [8]}), ("torchvision:resnet18", {})):
        cnnlens.import_model(name, "digits", out=tmp_path / name.replace(":", "_"), model_options=opts)
        run = cnnlens.load_run(tmp_path / name.replace(":", "_"))
        assert run.meta["model"]["name"] == name
    with pytest.raises(CnnlensError, match="trust_code=True"):
        cnnlens.create_model(f"{tmp_path / 'x.py'}:Net")
