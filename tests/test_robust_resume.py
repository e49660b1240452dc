"""Crash and resume, Ctrl-C, determinism: real `python -m cnnlens train` subprocesses, killed.

A reference run trains 3 epochs uninterrupted. Another identical run is killed with SIGKILL (or
sent one Ctrl-C) once its first epoch is on disk, then resumed with --resume; its history and final
weights must equal the reference bit for bit (CPU). Small: digits at 16x16, 10 batches per epoch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import SRC

pytestmark = pytest.mark.slow  # every test here trains (and kills) real runs

ARGS = ["train", "--data", "digits", "--model", "compact", "--epochs", "3", "--image-size", "16",
        "--batch-size", "128", "--seed", "4"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "COLUMNS": "40"}


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cnnlens", *ARGS, "--out", str(out), *extra], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _wait_first_epoch(p: subprocess.Popen[str], out: Path, timeout: float = 300) -> None:
    """Until history.csv has a data row and last.ckpt exists (the first epoch is on disk: the history
    row is written before the checkpoint, so either alone can be a moment early)."""
    t0 = time.monotonic()
    hist, last = out / "history.csv", out / "checkpoints" / "last.ckpt"
    while time.monotonic() - t0 < timeout:
        if last.exists() and hist.exists() and len(hist.read_text().strip().splitlines()) >= 2:
            return
        if p.poll() is not None:
            raise AssertionError(f"training ended before its first epoch was saved: {p.communicate()}")
        time.sleep(0.05)
    p.kill()
    raise AssertionError("no epoch was saved in time")


def _history_wo_seconds(run: Path) -> list[list[str]]:
    rows = [line.split(",") for line in (run / "history.csv").read_text().strip().splitlines()]
    assert rows[0][1] == "seconds"
    return [r[:1] + r[2:] for r in rows]  # wall-clock seconds differ between runs; all else must not


def _assert_same_run(a: Path, b: Path) -> None:
    assert _history_wo_seconds(a) == _history_wo_seconds(b)
    assert len(_history_wo_seconds(a)) == 4  # header + 3 epochs
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    la = torch.load(a / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    lb = torch.load(b / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for k in la:
        assert torch.equal(la[k], lb[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted run, started at once and awaited by the tests that need it."""
    out = tmp_path_factory.mktemp("ref") / "run"
    p = _start(out)
    state: dict[str, object] = {}

    def get() -> Path:
        if "rc" not in state:
            rc, so, se = _finish(p)
            state["rc"] = rc
            assert rc == 0, se
        return out

    yield get
    if p.poll() is None:
        p.kill()
        p.wait()


def test_sigkill_mid_training_then_resume_equals_uninterrupted(reference, tmp_path):
    out = tmp_path / "killed"
    p = _start(out)
    _wait_first_epoch(p, out)
    time.sleep(0.3)  # into the next epoch (or a checkpoint write): SIGKILL lands wherever it lands
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (out / "model.json").exists(), "the run finished before it was killed; the test proves nothing"
    # what the kill left is complete: the last checkpoint loads (never a truncated file)
    ck = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert 0 <= ck["epoch"] <= 2
    rc, so, se = _finish(_start(out, "--resume"))
    assert rc == 0, se
    _assert_same_run(reference(), out)


def test_ctrl_c_saves_the_epoch_stops_cleanly_and_resume_equals_uninterrupted(reference, tmp_path):
    out = tmp_path / "interrupted"
    p = _start(out)
    _wait_first_epoch(p, out)
    p.send_signal(signal.SIGINT)
    rc, so, se = _finish(p)
    assert rc == 130, se
    assert "Traceback" not in se
    assert "Ctrl-C" in se and "--resume" in se and str(out) in se
    hist = (out / "history.csv").read_text().strip().splitlines()
    ck = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    # the running epoch was finished and checkpointed; the history and the checkpoint agree
    assert len(hist) - 1 == ck["epoch"] + 1 and 2 <= len(hist) - 1 <= 3
    assert not (out / "model.json").exists() or len(hist) - 1 == 3
    rc, so, se = _finish(_start(out, "--resume"))
    assert rc == 0, se
    _assert_same_run(reference(), out)


def test_same_seed_twice_gives_identical_history_and_weights(tmp_path):
    """Two trainings in one process (the global RNG state differs between them) agree exactly."""
    import cnnlens
    from cnnlens.config import RunConfig

    cfg = RunConfig().replace(data={"image_size": 16})
    runs = []
    for i in range(2):
        torch.manual_seed(100 + i)  # a different global RNG state before each: the runs must not depend on it
        runs.append(cnnlens.train(data="digits", model="compact", epochs=2, batch_size=128, seed=11, config=cfg,
                                  out=tmp_path / f"r{i}"))
    assert _history_wo_seconds(runs[0].path) == _history_wo_seconds(runs[1].path)
    assert (runs[0].path / "model.safetensors").read_bytes() == (runs[1].path / "model.safetensors").read_bytes()
    # and a different seed does give a different model (the comparison can fail)
    other = cnnlens.train(data="digits", model="compact", epochs=2, batch_size=128, seed=12, config=cfg,
                          out=tmp_path / "other")
    w0 = load_file(str(runs[0].path / "model.safetensors"))
    w2 = load_file(str(other.path / "model.safetensors"))
    assert any(not torch.equal(w0[k], w2[k]) for k in w0)
