"""Shared fixtures: one tiny demo run (through the real CLI) reused by the pipeline tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def cli(*args: str, cwd: Path | None = None, check: bool = True, timeout: int = 600
        ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cnnlens ARGS`` in a subprocess on this checkout's sources."""
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "COLUMNS": "200"}
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
