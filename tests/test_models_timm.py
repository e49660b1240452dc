"""timm:<name> models, weights from files on the user's terms, pretrained normalization (#20, models side).

Nothing here downloads: weights are random-init models saved to a file and loaded back, and the
--pretrained tests run with every route to the network closed (a dead proxy, the hub offline, empty
caches) and assert the error names the file to pass instead.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnlens.errors import CnnlensError
from cnnlens.models import create_model

timm = pytest.importorskip("timm")  # the `test` extra installs it; the no-timm path is tested below

SRC = Path(__file__).resolve().parents[1] / "src"


def _save(model: torch.nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("arch, kw", [
    ("convnext_atto", {}),
    ("vit_tiny_patch16_224", {"depth": 2}),
    ("efficientnet_b0", {}),
    ("resnet18", {}),
])
def test_timm_model_takes_the_data_s_channels_classes_and_size(arch, kw):
    m = create_model(f"timm:{arch}", in_channels=1, num_classes=7, input_size=32, **kw)
    # timm's own arguments: the stem takes 1 channel, the head gives 7 logits
    stem = m.get_submodule(m.pretrained_cfg["first_conv"])
    assert stem.in_channels == 1
    assert m.get_classifier().out_features == 7
    x = torch.randn(3, 1, 32, 32)
    assert m.eval()(x).shape == (3, 7)
    if arch.startswith("vit"):  # img_size went through: 32 / 16 = a 2x2 patch grid (+ class token)
        assert tuple(m.patch_embed.grid_size) == (2, 2)
        assert m.pos_embed.shape[1] == 4 + 1
        assert len(m.blocks) == 2  # the model option reached timm


@pytest.mark.slow
def test_swin_takes_img_size():
    m = create_model("timm:swin_tiny_patch4_window7_224", in_channels=3, num_classes=4, input_size=32)
    assert tuple(m.patch_embed.img_size) == (32, 32)
    assert m.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_weights_of_the_model_itself_load_exactly(tmp_path):
    torch.manual_seed(1)
    a = create_model("timm:convnext_atto", in_channels=1, num_classes=5, input_size=32)
    f = _save(a, tmp_path / "a.safetensors")
    torch.manual_seed(2)  # a different initialization, replaced by the file's
    b = create_model("timm:convnext_atto", in_channels=1, num_classes=5, input_size=32, weights=str(f))
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_original_timm_weights_load_backbone_adapt_stem_and_reinit_head(tmp_path, caplog):
    """ImageNet-form weights (3 channels, 1000 classes, 224 px) into a 1-channel, 5-class, 32 px ViT."""
    torch.manual_seed(0)
    orig = timm.create_model("vit_tiny_patch16_224", depth=2, num_classes=1000)
    f = _save(orig, tmp_path / "vit_in1k.safetensors")
    with caplog.at_level(logging.INFO):
        m = create_model("timm:vit_tiny_patch16_224", in_channels=1, num_classes=5, input_size=32, depth=2,
                         weights=str(f))
    # the blocks are the file's
    for k in ("blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias", "norm.weight", "cls_token"):
        assert torch.equal(m.state_dict()[k], orig.state_dict()[k]), k
    # one channel: the RGB kernels summed (a gray image x acts as the RGB image (x, x, x))
    assert torch.allclose(m.patch_embed.proj.weight, orig.patch_embed.proj.weight.sum(1, keepdim=True))
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(m.patch_embed.proj(x), orig.patch_embed.proj(x.expand(1, 3, 32, 32)), atol=1e-5)
    # position embeddings resampled from the 14x14 grid to 2x2 (bicubic, as timm does), class token kept
    assert m.pos_embed.shape == (1, 5, 192)
    assert torch.equal(m.pos_embed[:, 0], orig.pos_embed[:, 0])
    grid = orig.pos_embed[:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(2, 2), mode="bicubic", antialias=True, align_corners=False)
    assert torch.allclose(m.pos_embed[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 4, 192), atol=1e-5)
    # the head had 1000 rows there: fresh, and the log says so
    assert m.head.weight.shape == (5, 192)
    assert "head.weight" in caplog.text and "freshly initialized for 5" in caplog.text


def test_weights_of_another_architecture_are_refused(tmp_path):
    f = _save(timm.create_model("resnet18", num_classes=5), tmp_path / "r.safetensors")
    with pytest.raises(CnnlensError, match=r"r\.safetensors.*timm:convnext_atto"):
        create_model("timm:convnext_atto", in_channels=3, num_classes=5, input_size=32, weights=str(f))


def test_pickled_weights_are_refused_for_timm_too(tmp_path):
    f = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": Path("x")}, f)  # needs unpickling of a class
    with pytest.raises(CnnlensError, match="unpickling"):
        create_model("timm:resnet18", in_channels=3, num_classes=5, input_size=32, weights=str(f))


def test_unknown_timm_name_suggests_the_close_one():
    with pytest.raises(CnnlensError, match=r"did you mean 'convnext_atto'"):
        create_model("timm:convnxt_atto", in_channels=3, num_classes=5, input_size=32)


def test_timm_names_need_no_trust_code():
    from cnnlens.models.user import user_code_file

    assert user_code_file("timm:resnet18") is None


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """Every route to a download closed: a dead proxy, the hub offline, empty caches."""
    dead = "http://127.0.0.1:9"
    return {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200", "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
            "http_proxy": dead, "https_proxy": dead, "ALL_PROXY": dead, "NO_PROXY": "", "no_proxy": "",
            "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch"),
            "XDG_CACHE_HOME": str(tmp_path / "cache")}


@pytest.mark.slow
@pytest.mark.parametrize("model, where", [
    ("timm:resnet18", "https://huggingface.co/timm/resnet18"),
    ("torchvision:resnet18", "https://download.pytorch.org/models/resnet18"),
])
def test_pretrained_without_network_names_the_file_to_pass(tmp_path, model, where):
    p = subprocess.run([sys.executable, "-m", "cnnlens", "train", "--data", "digits", "--model", model,
                        "--pretrained", "--epochs", "1", "--out", str(tmp_path / "run")],
                       env=_offline_env(tmp_path), capture_output=True, text=True, timeout=300)
    err = " ".join(p.stderr.split())  # rich wraps long lines
    assert p.returncode == 2, p.stderr
    assert "error: " in err and "could not fetch the pretrained weights" in err
    assert "--weights FILE" in err and where in err
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "run" / "model.json").exists()


def test_without_timm_the_error_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(CnnlensError, match=r"pip install 'cnnlens\[timm\]'"):
        create_model("timm:resnet18", in_channels=3, num_classes=5, input_size=32)


@pytest.mark.slow
def test_pretrained_normalization_comes_from_pretrained_cfg(tmp_path):
    """--normalize pretrained: timm's pretrained_cfg mean/std (RGB averaged for gray data) in
    model.json, used by every stage, and named in the report's words."""
    from conftest import cli

    from cnnlens.report.html import describe_normalization

    torch.manual_seed(0)
    f = _save(timm.create_model("resnet18", num_classes=1000), tmp_path / "r18.safetensors")
    out = tmp_path / "run"
    cli("train", "--data", "digits", "--model", "timm:resnet18", "--weights", str(f), "--normalize",
        "pretrained", "--epochs", "1", "--batch-size", "256", "--out", str(out))
    meta = json.loads((out / "model.json").read_text())
    # ImageNet: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225); one gray channel: their means
    assert meta["normalization"] == "pretrained"
    assert meta["mean"] == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    assert meta["std"] == pytest.approx([(0.229 + 0.224 + 0.225) / 3])
    assert meta["initial_weights"] == str(f.resolve())
    assert "normalize: pretrained" in (out / "config.yaml").read_text()
    assert "pretrained weights' own" in describe_normalization(meta)
    from cnnlens import load_run

    run = load_run(out)
    assert run.dataset.mean == pytest.approx(meta["mean"])  # the stages read it from model.json


@pytest.mark.slow
def test_pretrained_normalization_needs_a_model_that_records_one(tmp_path):
    from conftest import cli

    p = cli("train", "--data", "digits", "--model", "compact", "--normalize", "pretrained", "--epochs", "1",
            "--out", str(tmp_path / "run"), check=False)
    assert p.returncode == 2
    assert "needs a timm: or torchvision: model" in " ".join(p.stderr.split())
