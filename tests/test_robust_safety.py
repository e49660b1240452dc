"""Nothing trusted blindly: pickled payloads are refused, hostile strings are escaped in the report."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robust_runs import assert_clean_cli_error, run_cli

pytestmark = pytest.mark.slow  # every test here runs the CLI (train, run, models summary)


class Payload:
    """Unpickling this runs a shell command (the classic attack through torch.load)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CustomThing:
    """An ordinary custom class: still needs arbitrary unpickling, still refused."""

    def __init__(self) -> None:
        self.w = torch.ones(2)


NET = """
import torch
from torch import nn
class Net(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, input_size=16):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)
    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
"""


@pytest.mark.parametrize("content", ["payload", "custom_class"])
def test_weights_file_needing_unpickling_is_refused_python_and_cli(content, tmp_path):
    from cnnlens.models.weights import read_state_dict

    marker = tmp_path / "PWNED"
    evil = tmp_path / "weights.pt"
    obj = {"conv.weight": Payload(marker)} if content == "payload" else CustomThing()
    torch.save(obj, evil)
    with pytest.raises(ValueError, match=r"needs arbitrary unpickling.*weights_only=True.*safetensors") as ei:
        read_state_dict(evil)
    assert str(evil) in str(ei.value)
    (tmp_path / "net.py").write_text(NET)
    p = run_cli("models", "summary", f"{tmp_path / 'net.py'}:Net", "--input", "1x16x16", "--weights", str(evil),
                "--trust-code")
    assert_clean_cli_error(p, str(evil), "needs arbitrary unpickling")
    assert not marker.exists()  # the payload never ran


@pytest.mark.parametrize("damage", ["payload", "truncated"])
def test_resume_refuses_an_unsafe_or_truncated_checkpoint(damage, tmp_path):
    from cnnlens.train.safety import atomic_checkpoint_io, load_checkpoint

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    marker = tmp_path / "PWNED"
    good = {"epoch": 0, "state_dict": {"model.w": torch.ones(64, 64)}}
    atomic_checkpoint_io().save_checkpoint(good, last)
    assert torch.equal(load_checkpoint(last)["state_dict"]["model.w"], torch.ones(64, 64))
    if damage == "payload":
        torch.save({**good, "loops": Payload(marker)}, last)
        want = "needs arbitrary unpickling"
    else:
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
        want = "damaged or truncated"
    with pytest.raises(ValueError, match=want):
        load_checkpoint(last)
    with pytest.raises(ValueError, match="weights_only=False"):
        atomic_checkpoint_io().load_checkpoint(last, weights_only=False)
    p = run_cli("train", "--data", "digits", "--epochs", "1", "--image-size", "16", "--out", str(out), "--resume")
    assert_clean_cli_error(p, str(last), want)
    assert not marker.exists()


# ---- the report -----------------------------------------------------------------------------------

HOSTILE_CLASSES = ["<script>alert(1)", "<b>bold", "\"quote'", "a&b $x$ {{ 7*7 }}", "<img src=x onerror=alert(2)>"]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`cnnlens run` on a class-per-folder dataset whose folder, class and run names are hostile."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "<svg onload=alert(3)>data"
    rng = np.random.default_rng(0)
    for k, name in enumerate(HOSTILE_CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(8):
            a = rng.integers(0, 60, (16, 16)).astype(np.uint8)
            a[:, 3 * k:3 * k + 3] = 220
            Image.fromarray(a).save(root / name / f"<i>{i}.png")
    out = base / "<i>run\"&'"
    p = run_cli("run", "--data", f"folder:{root}", "--epochs", "1", "--batch-size", "8", "--out", str(out),
                extra_env={"CNNLENS_CACHE": str(base / "cache")})
    assert p.returncode == 0, p.stderr
    return out / "report", (out / "report" / "index.html").read_text(encoding="utf-8")


def test_report_escapes_every_hostile_string(hostile_report):
    folder, html = hostile_report
    parser = _Tags()
    parser.feed(html)
    tags = {t for t, _ in parser.tags}
    assert "svg" not in tags and "i" not in tags  # nothing from the data became markup
    # the only scripts are the explorer's two files, empty elements (no inline script to inject into)
    assert [a.get("src") for t, a in parser.tags if t == "script"] == ["explore/data.js", "explore/explore.js"]
    assert len(re.findall(r"<script\b", html)) == len(re.findall(r'<script src="explore/[a-z]+\.js"></script>', html))
    assert not any(a.startswith("on") for _, attrs in parser.tags for a in attrs)
    text = "".join(parser.text)
    # the hostile strings are shown as text, exactly
    for name in HOSTILE_CLASSES:
        assert name in text, name
    assert "<i>run\"&'" in text  # the run name
    assert "<svg onload=alert(3)>data" in text  # a config value (the data path in config.yaml)
    assert "&lt;script&gt;alert(1)" in html and "&#34;quote&#39;" in html
    assert "{{ 7*7 }}" in text  # shown as written, not evaluated as a template


def test_report_links_only_files_beside_it(hostile_report):
    folder, html = hostile_report
    parser = _Tags()
    parser.feed(html)
    refs = [attrs[k] for _, attrs in parser.tags for k in ("src", "href") if attrs.get(k)]
    assert refs, "the report shows figures"
    for r in refs:
        assert r.startswith("#") or (not re.match(r"^[a-z]+:", r) and not r.startswith("/")), r
        if not r.startswith("#"):
            assert (folder / r).is_file(), r
