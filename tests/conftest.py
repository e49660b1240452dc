"""Shared fixtures: one tiny demo run (through the real CLI) reused by the pipeline tests, and the
``device`` the oracle tests run on.

``CNNLENS_TEST_DEVICE`` chooses the devices of every test that takes the ``device`` fixture (the oracle
tests: Captum, pytorch-grad-cam, lime, exact Shapley, hand-computed values): unset -> ``cpu``;
``cuda`` (or ``cuda:N``) -> that GPU; ``cpu,cuda`` -> each such test once per device; ``auto`` ->
``cuda`` when present, else ``cpu``. A CUDA device that torch cannot see stops the session at once
(exit status 4) with the reason: a GPU check that silently ran on the CPU would prove nothing. On CUDA
the tests run in full float32 (TF32 off for convolutions and matmuls), so the tolerances are the CPU's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src"


def cli(*args: str, cwd: Path | None = None, check: bool = True, timeout: int = 600
        ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cnnlens ARGS`` in a subprocess on this checkout's sources."""
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "COLUMNS": "40"}  # a narrow console: nothing the CLI prints may depend on the width
    p = subprocess.run([sys.executable, "-m", "cnnlens", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"cnnlens {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


#: session fixtures that run the pipeline or train: a test that takes one is in the slow tier.
SLOW_FIXTURES = ("demo_run", "digits_compact_run")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that takes a fixture from :data:`SLOW_FIXTURES` (directly or through
    another fixture), so ``-m "not slow"`` never pays for a training or a demo run."""
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`cnnlens demo --fast` once for the whole session: (run dir, completed process)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    p = cli("demo", "--fast", "--out", str(out))
    return out, p



TEST_DEVICE_ENV = "CNNLENS_TEST_DEVICE"


def _test_devices() -> list[str]:
    raw = [d.strip().lower() for d in os.environ.get(TEST_DEVICE_ENV, "").split(",") if d.strip()]
    out: list[str] = []
    for d in raw or ["cpu"]:
        if d == "auto":
            d = "cuda" if torch.cuda.is_available() else "cpu"
        if d not in out:
            out.append(d)
    return out


TEST_DEVICES = _test_devices()


def pytest_configure(config: pytest.Config) -> None:
    for d in TEST_DEVICES:
        try:
            dev = torch.device(d)
        except RuntimeError:
            pytest.exit(f"{TEST_DEVICE_ENV}={os.environ.get(TEST_DEVICE_ENV)!r}: {d!r} is not a device; "
                        "use cpu, cuda, cuda:N, auto, or a comma-separated list (cpu,cuda)", returncode=4)
        if dev.type not in ("cpu", "cuda"):
            pytest.exit(f"{TEST_DEVICE_ENV}: {d!r} is not supported by the tests; use cpu or cuda",
                        returncode=4)
        if dev.type == "cuda":
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (dev.index or 0) >= n:
                pytest.exit(f"{TEST_DEVICE_ENV}={os.environ.get(TEST_DEVICE_ENV)} asks for {d}, but torch "
                            f"{torch.__version__} (CUDA build: {torch.version.cuda or 'none'}) sees {n} CUDA "
                            f"device(s); unset it to test on the CPU", returncode=4)


@pytest.fixture(params=TEST_DEVICES)
def device(request: pytest.FixtureRequest):
    """The device of an oracle test (one parametrization per device in ``CNNLENS_TEST_DEVICE``).
    On CUDA, TF32 is off for the test's duration (and restored), so float32 means float32."""
    dev = torch.device(request.param)
    if dev.type != "cuda":
        yield dev
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.cuda.device(dev):
            yield dev
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
@pytest.fixture(scope="session")
def digits_compact_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cnnlens.train("digits", "compact", epochs=1, batch_size=128, seed=0)`, trained once for the
    whole session. Read-only: take :func:`digits_run` to write into a run."""
    import cnnlens

    out = tmp_path_factory.mktemp("digits-compact") / "run"
    return cnnlens.train("digits", "compact", out=out, epochs=1, batch_size=128, seed=0).path


@pytest.fixture
def digits_run(digits_compact_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's 1-epoch digits run (a stage may write into it)."""
    return Path(shutil.copytree(digits_compact_run, tmp_path / "run"))


#: a user's model file (``FILE.py:Tiny``): one conv, global mean, a linear head
TINY_MODEL_SRC = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))
'''


def layer_output(model: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s output on ``x`` (no grad), read with a plain forward hook: an independent check
    of what cnnlens's own hooks capture."""
    store = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return store["a"]
