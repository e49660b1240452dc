"""Device selection (CUDA when present, with no flag) and the device's name in the report."""

from __future__ import annotations

import html
import json
import shutil
import subprocess

import pytest
import torch

from cnnlens.device import default_device, describe_device, device_record
from cnnlens.errors import CnnlensError


@pytest.mark.parametrize("accelerator", [None, "auto", "AUTO"])
def test_auto_picks_cuda_when_present_else_cpu(accelerator):
    assert default_device(accelerator, cuda_available=True, env="") == torch.device("cuda")
    assert default_device(accelerator, cuda_available=False, env="") == torch.device("cpu")


def test_an_accelerator_given_to_training_is_followed():
    assert default_device("cpu", cuda_available=True, env="") == torch.device("cpu")
    assert default_device("gpu", cuda_available=True, env="") == torch.device("cuda")
    assert default_device("cuda", cuda_available=True, env="") == torch.device("cuda")
    assert default_device("tpu", cuda_available=True, env="") == torch.device("cpu")


def test_cnnlens_device_overrides_the_choice():
    assert default_device(None, cuda_available=True, env="cpu") == torch.device("cpu")
    assert default_device("cpu", cuda_available=True, env="cuda:1") == torch.device("cuda", 1)
    assert default_device(None, cuda_available=False, env="  ") == torch.device("cpu")  # blank: unset


def test_the_environment_is_read_when_not_given(monkeypatch):
    monkeypatch.setenv("CNNLENS_DEVICE", "cpu")
    assert default_device(cuda_available=True) == torch.device("cpu")
    monkeypatch.delenv("CNNLENS_DEVICE")
    assert default_device(cuda_available=True) == torch.device("cuda")


def test_cuda_without_cuda_is_an_error_naming_where_it_came_from():
    with pytest.raises(CnnlensError, match=r"CNNLENS_DEVICE=cuda asks for CUDA.*use cpu"):
        default_device(None, cuda_available=False, env="cuda")
    with pytest.raises(CnnlensError, match=r"accelerator 'gpu' asks for CUDA"):
        default_device("gpu", cuda_available=False, env="")
    with pytest.raises(CnnlensError, match=r"CNNLENS_DEVICE='gpu0' is not a device"):
        default_device(None, cuda_available=True, env="gpu0")


def lscpu_model() -> str:
    """The CPU model as util-linux's lscpu reads it (the independent reference for /proc/cpuinfo)."""
    if not shutil.which("lscpu"):
        pytest.skip("lscpu (util-linux) is not installed")
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    return next(
        " ".join(line.split(":", 1)[1].split()) for line in out.splitlines() if line.startswith("Model name:")
    )


def test_cpu_name_has_the_model_and_the_thread_count():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device("cpu") == f"cpu ({lscpu_model()}, 1 thread)"
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == f"cpu ({lscpu_model()}, 2 threads)"
    finally:
        torch.set_num_threads(old)


def test_cuda_name_has_the_index_and_the_gpu(monkeypatch):
    names = {0: "NVIDIA H200", 1: "NVIDIA A100-SXM4-80GB"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: names[i])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert describe_device("cuda:0") == "cuda:0 (NVIDIA H200)"
    assert describe_device("cuda") == "cuda:1 (NVIDIA A100-SXM4-80GB)"  # the current device
    rec = device_record("cuda:0")
    assert rec["device"] == "cuda:0" and rec["name"] == "cuda:0 (NVIDIA H200)"
    assert rec["torch"] == torch.__version__ and rec["cuda"] == torch.version.cuda
    assert device_record("cpu")["cuda"] is None


@pytest.mark.slow
def test_the_demo_records_the_device_and_the_report_names_it(demo_run):
    out, _ = demo_run
    rec = json.loads((out / "device.json").read_text())
    want = "cuda" if torch.cuda.is_available() else "cpu"  # `cnnlens demo` takes no device flag
    assert rec["device"].split(":")[0] == want
    if want == "cpu":
        assert rec["name"].startswith(f"cpu ({lscpu_model()}, ") and rec["name"].endswith(
            ("thread)", "threads)")
        )
    page = (out / "report" / "index.html").read_text()
    timing = page[page.index('<section id="timings">') :]
    assert f'<p id="device">Device: {html.escape(rec["name"])}</p>' in timing
    assert f"The analysis stages ran on {html.escape(rec['name'])} (torch {rec['torch']}" in timing
