"""Shared fixtures: one tiny demo run (through the real CLI) reused by the pipeline tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`cnnlens demo --fast` once for the whole session: (run dir, completed process)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    p = cli("demo", "--fast", "--out", str(out))
    return out, p

