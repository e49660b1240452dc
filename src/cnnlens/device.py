"""Which device cnnlens runs on when nobody says, and that device's name for people.

The bottom layer (next to :mod:`cnnlens.io` and :mod:`cnnlens.config`): imports only torch,
:mod:`cnnlens.errors`. Nothing is chosen at import time; every caller asks
when it needs a device.

* :func:`default_device` -- ``cuda`` when a CUDA device is present, else ``cpu``; the environment
  variable ``CNNLENS_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) overrides it, and a Lightning
  ``accelerator`` (``cpu``, ``gpu``, ...) given to ``cnnlens train``/``run`` is followed.
* :func:`describe_device` -- ``"cpu (AMD EPYC 7B13, 2 threads)"`` or ``"cuda:0 (NVIDIA H200)"``:
  what the report's timing section and the benchmarks print; :func:`device_record` gives it with
  the torch and CUDA versions for ``RUN/device.json`` (:class:`cnnlens.rundir.DeviceRecord`).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .errors import CnnlensError

ENV = "CNNLENS_DEVICE"
"""Environment variable that overrides :func:`default_device` (e.g. ``CNNLENS_DEVICE=cpu``)."""


def default_device(
    accelerator: str | None = None, *, cuda_available: bool | None = None, env: str | None = None
) -> torch.device:
    """The device to run on when the caller named none.

    Args:
        accelerator: the Lightning accelerator the run was trained with (``None``/``"auto"``: pick;
            ``"cpu"``: the CPU; ``"gpu"``/``"cuda"``: CUDA device 0; ``"mps"``: Apple's GPU).
        cuda_available: whether a CUDA device is present (default: ``torch.cuda.is_available()``;
            tests pass it to check the choice on a machine without one).
        env: the value of ``CNNLENS_DEVICE`` (default: read from the environment); it wins over
            ``accelerator`` when set and not empty.

    ``auto`` picks ``cuda`` when one is present, else ``cpu`` (like Lightning's ``auto`` for one device,
    less Apple's MPS, whose bfloat16 and float64 support is partial). A CUDA request on a machine
    without CUDA is a :class:`~cnnlens.errors.CnnlensError` naming where it came from.
    """
    have_cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    env = os.environ.get(ENV, "") if env is None else env
    if env.strip():
        try:
            dev = torch.device(env.strip())
        except RuntimeError:
            raise CnnlensError(
                f"{ENV}={env!r} is not a device; use cpu, cuda, cuda:N or mps (or unset it)"
            ) from None
        where = f"{ENV}={env}"
    else:
        acc = (accelerator or "auto").lower()
        if acc == "auto":
            return torch.device("cuda" if have_cuda else "cpu")
        names = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps"}
        if acc not in names:
            return torch.device("cpu")  # tpu, hpu, ...: their runs are loaded back onto the CPU
        dev, where = torch.device(names[acc]), f"accelerator {accelerator!r}"
    if dev.type == "cuda" and not have_cuda:
        raise CnnlensError(
            f"{where} asks for CUDA, but torch finds no CUDA device (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda or 'none'}); use cpu, or install a CUDA build of torch"
        )
    return dev


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: str | torch.device) -> str:
    """``"cpu (<model name>, N threads)"`` (N: torch's intra-op threads) or ``"cuda:I (<GPU name>)"``."""
    dev = torch.device(device)
    if dev.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({cpu_name()}, {n} thread{'s' if n != 1 else ''})"
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(dev)


def device_record(device: str | torch.device) -> dict[str, str | None]:
    """What ``RUN/device.json`` holds: the device, its name, and the torch and CUDA versions."""
    dev = torch.device(device)
    return {
        "device": str(dev),
        "name": describe_device(dev),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
    }
