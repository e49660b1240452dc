"""Helpers for the robustness tests: run directories written by the real writers, subprocess CLI runs."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import torch

from conftest import SRC


def make_run(out: Path, *, in_channels: int | None = None, size: int = 16, seed: int = 0) -> Path:
    """An (untrained) compact run on digits at ``size``, written with cnnlens' own writers.

    ``in_channels`` different from the data's makes a run whose model no longer fits its data.
    """
    from cnnlens.config import RunConfig
    from cnnlens.data import load_dataset
    from cnnlens.io import write_yaml
    from cnnlens.models import create_model
    from cnnlens.train.run import _model_meta, save_model

    cfg = RunConfig().replace(data={"spec": "digits", "image_size": size}, model={"name": "compact"})
    ds = load_dataset("digits", **cfg.data.loader_options())
    c = in_channels or ds.channels
    torch.manual_seed(seed)
    net = create_model("compact", in_channels=c, num_classes=ds.num_classes, input_size=ds.size)
    meta = _model_meta(cfg, ds, net, {}, 1, 0.0)
    meta["input_shape"] = [c, *ds.size]
    meta["mean"], meta["std"] = [ds.mean[0]] * c, [ds.std[0]] * c
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / "config.yaml", cfg.to_dict())
    save_model(out, net, meta)
    return out


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "COLUMNS": "40"}


def run_cli(*args: str, fsize_limit: int | None = None, timeout: int = 600,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m cnnlens ARGS``; ``fsize_limit`` bytes: no file may grow beyond it (a full disk:
    the kernel refuses the write with EFBIG; Python ignores SIGXFSZ, so it is an OSError)."""

    def limit() -> None:
        if fsize_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.run([sys.executable, "-m", "cnnlens", *args], env={**env(), **(extra_env or {})},
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# `error: ...` from cnnlens, `cnnlens train: error: ...` from argparse
ERROR_LINE = re.compile(r"(cnnlens( [a-z]+)*: )?error: ")


def assert_clean_cli_error(p: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 2, one `error:` line holding every fragment, no traceback. Returns the line."""
    assert p.returncode == 2, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    errors = [line for line in p.stderr.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == 1, p.stderr  # the message is one line: never wrapped, whatever COLUMNS says
    msg = errors[0]
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg
