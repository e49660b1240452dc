"""Models trained elsewhere (#17 item 3): `cnnlens import`, `import_model`, --weights, --model-option as
YAML, the normalization recorded in the run, and runs of `train(model=net)` opened by the CLI."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from dataclasses import replace

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.cli import main
from cnnlens.config import parse_model_options
from cnnlens.data.base import align_classes, load_dataset
from cnnlens.errors import CnnlensError
from cnnlens.importing import parse_normalize
from conftest import TINY_MODEL_SRC, cli

# A third-party-style FER2013 model: flattens with x.view, F.relu as a function, takes raw [0,1] input.
THIRD_PARTY = '''
import torch
from torch import nn
import torch.nn.functional as F


class FerNet(nn.Module):
    def __init__(self, num_classes=7, io_list=((1, 8), (8, 16))):
        super().__init__()
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in io_list):
            raise ValueError(f"io_list must be pairs (in, out); got {io_list!r}")
        self.convs = nn.ModuleList([nn.Conv2d(a, b, 3, padding=1) for a, b in io_list])
        self.fc = nn.Linear(io_list[-1][1] * 8 * 8, num_classes)

    def forward(self, x):
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc(x)
'''
IO_LIST = [[1, 4], [4, 8]]


def _import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def third_party(tmp_path):
    """(model file, torch.save'd state dict, the model itself built from our own import of the file)."""
    f = tmp_path / "fernet.py"
    f.write_text(THIRD_PARTY)
    torch.manual_seed(3)
    net = _import_file(f, "fernet_reference").FerNet(num_classes=10, io_list=IO_LIST).eval()
    with torch.no_grad():  # a trained-looking model: far from its initialization, and class-specific
        for p in net.parameters():
            p.mul_(4)
    w = tmp_path / "fernet_weights.pt"
    torch.save(net.state_dict(), w)
    return f, w, net


# ---- end to end through the real CLI ------------------------------------------------------------

@pytest.mark.slow
def test_import_third_party_model_then_evaluate_predict_explain_report(third_party, tmp_path):
    f, w, net = third_party
    run = tmp_path / "theirs"
    cli("import", f"{f}:FerNet", "--data", "digits", "--weights", str(w), "--model-option",
        "io_list=[[1,4],[4,8]]", "--normalize", "none", "--trust-code", "--out", str(run))
    meta = json.loads((run / "model.json").read_text())
    assert meta["normalization"] == "none" and meta["mean"] == [0.0] and meta["std"] == [1.0]
    assert meta["model"]["options"] == {"io_list": IO_LIST}
    assert not (run / "history.csv").exists()

    # the model's own inference on raw [0,1] pixels, computed here without cnnlens
    ds = load_dataset("digits")
    idx = ds.indices("test")
    with torch.no_grad():
        own = net(ds.images[idx].float() / 255).argmax(1)

    out = tmp_path / "pred.csv"
    cli("predict", str(run), "--out", str(out), "--trust-code")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["label"]) for r in rows] == own.tolist()

    cli("evaluate", str(run), "--trust-code")
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] == int((own == ds.labels[idx]).sum()) / len(idx)

    cli("explain", str(run), "--methods", "saliency,gradcam", "--trust-code")
    assert (run / "explain" / "saliency.npy").exists() and (run / "explain" / "gradcam.npy").exists()

    cli("trust", str(run), "--fast", "--methods", "saliency,gradcam", "--n-images", "4", "--steps", "4",
        "--trust-code")
    assert set(json.loads((run / "trust" / "scores.json").read_text())["methods"]) >= {"saliency", "gradcam"}

    cli("report", str(run), "--trust-code")
    page = (run / "report" / "index.html").read_text()
    assert "<b>imported</b>" in page and "Normalization: none" in page
    assert 'id="training"' not in page and 'id="data"' in page and 'id="failures"' in page
    assert 'id="trust"' in page


def test_wrong_normalization_changes_predictions_and_the_run_uses_the_recorded_one(third_party, tmp_path):
    """The point of --normalize: with the dataset's statistics the same weights predict differently."""
    f, w, net = third_party
    raw = cnnlens.import_model(f"{f}:FerNet", "digits", out=tmp_path / "raw", weights=w,
                               model_options={"io_list": IO_LIST}, normalize="none", trust_code=True)
    std = cnnlens.import_model(f"{f}:FerNet", "digits", out=tmp_path / "std", weights=w,
                               model_options={"io_list": IO_LIST}, trust_code=True)
    ds = load_dataset("digits")
    imgs = ds.images[ds.indices("test")]
    # Run.dataset normalizes as the model expects: raw pixels / 255 for "none", train statistics otherwise
    assert torch.equal(raw.dataset.normalize(imgs), imgs.float() / 255)
    assert torch.equal(std.dataset.normalize(imgs), (imgs.float() / 255 - ds.mean[0]) / ds.std[0])
    with torch.no_grad():
        p_raw = raw.model(raw.dataset.normalize(imgs)).argmax(1)
        p_std = std.model(std.dataset.normalize(imgs)).argmax(1)
        own = net(imgs.float() / 255).argmax(1)
    assert torch.equal(p_raw, own)
    assert (p_std != own).any()


# ---- the Python API ------------------------------------------------------------------------------

def test_import_model_builtin_with_weights_and_classes(tmp_path):
    ds = load_dataset("digits")
    src = cnnlens.create_model("mlp", in_channels=1, num_classes=10, input_size=32, hidden=[16])
    from cnnlens.models import save_weights

    save_weights(src, tmp_path / "w.safetensors")
    names = [f"digit {i}" for i in range(10)]
    run = cnnlens.import_model("mlp", "digits", out=tmp_path / "run", weights=tmp_path / "w.safetensors",
                               model_options={"hidden": [16]}, normalize="0.5,0.25", classes=names)
    assert run.normalization == "custom" and run.mean == (0.5,) and run.std == (0.25,)
    assert run.classes == names and run.dataset.classes == names
    assert torch.equal(run.dataset.labels, ds.labels)  # new names: output k is dataset class k
    again = cnnlens.load_run(tmp_path / "run")
    x = again.dataset.normalize(ds.images[:5])
    assert torch.equal(x, (ds.images[:5].float() / 255 - 0.5) / 0.25)
    with torch.no_grad():
        assert torch.equal(again.model(x), src.eval()(x))
    with pytest.raises(FileExistsError, match="already holds a run"):
        cnnlens.import_model("mlp", "digits", out=tmp_path / "run", model_options={"hidden": [16]})


def test_import_refuses_user_code_without_opt_in(third_party, tmp_path):
    f, w, _ = third_party
    with pytest.raises(CnnlensError, match=r"fernet\.py.*trust_code=True"):
        cnnlens.import_model(f"{f}:FerNet", "digits", out=tmp_path / "run", weights=w)
    assert not (tmp_path / "run").exists()


def test_bad_option_in_user_init_names_the_option(third_party, tmp_path):
    f, _, _ = third_party
    with pytest.raises(CnnlensError, match=r"FerNet\(.*io_list='1,28'.*raised ValueError.*io_list"):
        cnnlens.create_model(f"{f}:FerNet", in_channels=1, num_classes=10, input_size=32,
                             trust_code=True, io_list="1,28")


def test_models_summary_takes_yaml_model_options(third_party, capsys):
    f, _, _ = third_party
    assert main(["models", "summary", f"{f}:FerNet", "--input", "1x32x32", "--model-option",
                 "io_list=[[1,4],[4,8]]", "--trust-code"]) == 0
    out = capsys.readouterr().out
    # hand count: conv 1->4 (4*9+4) + conv 4->8 (8*4*9+8) + fc (8*8*8*10+10)
    assert f"Total params: {40 + 296 + 5130:,}" in out
    assert main(["models", "summary", f"{f}:FerNet", "--model-option", "io_list=[[1,4],[4,8]]"]) == 2
    assert "--trust-code" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_bad_model_option_is_an_error_not_a_traceback(third_party):
    f, _, _ = third_party
    p = cli("models", "summary", f"{f}:FerNet", "--input", "1x32x32", "--model-option", "io_list=1,28",
            "--trust-code", check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "io_list" in p.stderr and "raised ValueError" in p.stderr


def test_parse_model_options_reads_yaml():
    got = parse_model_options(["io_list=[[1,28],[28,56],[56,112]]", "width=64", "lr=1e-3", "bn=true",
                               "hidden=1800,1050", "name=abc", "p=0.5"])
    assert got == {"io_list": [[1, 28], [28, 56], [56, 112]], "width": 64, "lr": 0.001, "bn": True,
                   "hidden": "1800,1050", "name": "abc", "p": 0.5}
    assert type(got["width"]) is int and type(got["bn"]) is bool
    for bad in ("width", "=3", "a b=1", "x=[1,"):
        with pytest.raises(CnnlensError, match="--model-option"):
            parse_model_options([bad])


def test_parse_normalize():
    ds = load_dataset("digits")
    assert parse_normalize("dataset", ds) == ("dataset", ds.mean, ds.std)
    assert parse_normalize("none", ds) == ("none", (0.0,), (1.0,))
    assert parse_normalize("0.5,0.2", ds) == ("custom", (0.5,), (0.2,))
    assert parse_normalize((0.5, 0.2), ds) == ("custom", (0.5,), (0.2,))
    rgb = replace(ds, images=ds.images.expand(-1, 3, -1, -1).contiguous())
    assert parse_normalize("0.4,0.5,0.6,0.1,0.2,0.3", rgb) == ("custom", (0.4, 0.5, 0.6), (0.1, 0.2, 0.3))
    assert parse_normalize(([0.4, 0.5, 0.6], [0.1, 0.2, 0.3]), rgb)[1:] == ((0.4, 0.5, 0.6), (0.1, 0.2, 0.3))
    for bad in ("0.5", "0.5,0", "a,b", "0.1,0.2,0.3"):
        with pytest.raises(CnnlensError):
            parse_normalize(bad, ds)


def test_align_classes_permutes_or_renames():
    ds = load_dataset("digits")
    order = ["9", "8", "7", "6", "5", "4", "3", "2", "1", "0"]
    perm = align_classes(ds, order)
    assert perm.classes == order and torch.equal(perm.labels, 9 - ds.labels)
    renamed = align_classes(ds, list("abcdefghij"))
    assert renamed.classes == list("abcdefghij") and torch.equal(renamed.labels, ds.labels)
    with pytest.raises(CnnlensError, match="share"):
        align_classes(ds, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "x"])
    with pytest.raises(CnnlensError, match="10 outputs"):
        align_classes(ds, ["0", "1"])


# ---- --weights on train, runs of train(model=net) ------------------------------------------------

TINY = TINY_MODEL_SRC


@pytest.mark.slow
def test_train_weights_flag_starts_from_the_file(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY)
    torch.manual_seed(5)
    init = _import_file(tmp_path / "tiny.py", "tiny_ref").Tiny()
    with torch.no_grad():
        for p in init.parameters():
            p.fill_(0.25)  # far from any random initialization
    torch.save(init.state_dict(), tmp_path / "init.pt")
    args = ("train", "--data", "digits", "--model", f"{tmp_path / 'tiny.py'}:Tiny", "--epochs", "1",
            "--lr", "1e-12", "--weights", str(tmp_path / "init.pt"), "--out", str(tmp_path / "run"))
    p = cli(*args, check=False)
    assert p.returncode == 2 and "--trust-code" in p.stderr and "tiny.py" in p.stderr
    cli(*args, "--trust-code")
    run = cnnlens.load_run(tmp_path / "run", trust_code=True)
    for name, t in run.model.state_dict().items():  # one epoch at lr 1e-12 (Adam) moves nothing visibly
        assert torch.allclose(t, torch.full_like(t, 0.25), atol=1e-6), name


@pytest.mark.slow
def test_run_of_train_with_a_module_instance_opens_in_the_cli(tmp_path):
    (tmp_path / "tiny_mod.py").write_text(TINY)
    sys.path.insert(0, str(tmp_path))
    try:
        import tiny_mod
    finally:
        sys.path.remove(str(tmp_path))
    run = cnnlens.train("digits", tiny_mod.Tiny(), out=tmp_path / "run", epochs=1)
    assert run.meta["model"]["name"] == f"{(tmp_path / 'tiny_mod.py').resolve()}:Tiny"
    cli("evaluate", str(tmp_path / "run"), "--trust-code")
    with torch.no_grad():
        x = run.dataset.normalize(run.dataset.images[:16])
        ref = run.model(x)
    again = cnnlens.load_run(tmp_path / "run", trust_code=True)
    with torch.no_grad():
        assert torch.equal(again.model(x), ref)

    class Local(nn.Module):  # not rebuildable from a file: the error says how to re-import it
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(32 * 32, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    cnnlens.train("digits", Local(), out=tmp_path / "local", epochs=1)
    p = cli("evaluate", str(tmp_path / "local"), check=False)
    assert p.returncode == 2
    err = " ".join(p.stderr.split())
    assert "cnnlens import FILE.py:Local" in err and "--weights" in err and "model.safetensors" in err


def test_import_force_replaces_a_trained_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text("{}")
    (run / "history.csv").write_text("epoch\n1\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text("{}")
    cnnlens.import_model("mlp", "digits", out=run, model_options={"hidden": [8]}, force=True)
    assert not (run / "history.csv").exists() and not (run / "checkpoints").exists()
    assert not (run / "eval").exists()
    imported = json.loads((run / "model.json").read_text())["imported"]
    assert imported == {"weights": None, "weights_sha256": None}
    assert cnnlens.load_run(run).history == []
