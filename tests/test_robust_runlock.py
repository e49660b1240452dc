"""One writer per run directory (RUN/.cnnlens.lock): two real writers race, stale locks, readers."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from robust_runs import assert_clean_cli_error, env, make_run, run_cli

from cnnlens.runlock import LOCK_NAME, RunLocked, read_lock, run_lock


def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cnnlens", *args], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, procs: list[subprocess.Popen[str]], timeout: float = 300) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if time.monotonic() - t0 > timeout or all(p.poll() is not None for p in procs):
            outs = [p.communicate() if p.poll() is not None else ("", "") for p in procs]
            raise AssertionError(f"{path} never appeared: {outs}")
        time.sleep(0.02)


def _write_lock(run: Path, **fields) -> Path:
    rec = {"pid": 1, "host": socket.gethostname(), "command": "cnnlens train --out x",
           "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **fields}
    p = run / LOCK_NAME
    p.write_text(json.dumps(rec))
    return p


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.slow
def test_two_train_commands_race_for_one_out_one_fails_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    procs = {1: _popen("train", "--data", "digits", "--image-size", "16", "--epochs", "1", "--seed", "1",
                       "--out", str(out)),
             2: _popen("train", "--data", "digits", "--image-size", "16", "--epochs", "2", "--seed", "2",
                       "--out", str(out))}
    lock = out / LOCK_NAME
    holder_pid = None
    try:
        _wait_for(lock, list(procs.values()))
        holder_pid = json.loads(lock.read_text())["pid"]
        # freeze the winner while it holds the lock, so the other meets the lock however slowly it starts
        os.kill(holder_pid, signal.SIGSTOP)
        winner = next(s for s, p in procs.items() if p.pid == holder_pid)
        loser = 3 - winner
        lo_out, lo_err = procs[loser].communicate(timeout=300)
        p = subprocess.CompletedProcess([], procs[loser].returncode, lo_out, lo_err)
        msg = assert_clean_cli_error(p, str(out), "is being written by another cnnlens process",
                                     f"pid {holder_pid} on host {socket.gethostname()}", f"--seed {winner}",
                                     "since")
        assert "--out" in msg
    finally:
        if holder_pid is not None:
            os.kill(holder_pid, signal.SIGCONT)
    w_out, w_err = procs[winner].communicate(timeout=600)
    assert procs[winner].returncode == 0, w_err
    # the run directory describes one run: the winner's
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["train"]["epochs"] == winner and cfg["train"]["seed"] == winner
    with open(out / "history.csv") as fh:
        assert len(list(csv.DictReader(fh))) == winner
    assert json.loads((out / "model.json").read_text())["best_epoch"] <= winner
    assert not lock.exists()  # released at exit


@pytest.mark.slow
def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    run = make_run(tmp_path / "run")
    dead = _dead_pid()
    _write_lock(run, pid=dead)
    p = run_cli("evaluate", str(run))
    assert p.returncode == 0, p.stderr
    err = " ".join(p.stderr.split())
    assert "taking over the stale lock" in err and f"process {dead} is no longer running" in err
    assert (run / "eval" / "metrics.json").is_file()
    assert not (run / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_live_writer_blocks_writers_not_readers(tmp_path):
    import cnnlens
    from cnnlens.predict import predict

    run = make_run(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cnnlens.runlock import run_lock\n"
         "with run_lock(sys.argv[1], command='cnnlens explain RUN'):\n"
         "    print('held', flush=True); time.sleep(600)", str(run)],
        env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # writers: fail at once, naming the holder
        for cmd in (["evaluate", str(run)], ["report", str(run)]):
            p = run_cli(*cmd)
            assert_clean_cli_error(p, f"pid {holder.pid} on host", "cnnlens explain RUN")
        assert not (run / "eval").exists()
        # --break-lock never breaks a live holder on this host
        p = run_cli("evaluate", str(run), "--break-lock")
        assert_clean_cli_error(p, f"pid {holder.pid} on host")
        # readers do not look at the lock
        r = cnnlens.load_run(run)
        pred = predict(r, split="val", write_eval=False)
        assert len(pred) > 0
        info = read_lock(run)
        assert info is not None and info.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_lock_from_another_host_needs_break_lock_or_age(tmp_path, caplog):
    run = make_run(tmp_path / "run")
    _write_lock(run, pid=os.getpid(), host="far-away-host")
    p = run_cli("evaluate", str(run))
    assert_clean_cli_error(p, "on host far-away-host", "--break-lock")
    p = run_cli("evaluate", str(run), "--break-lock")
    assert p.returncode == 0, p.stderr
    assert "far-away-host" in p.stderr and "taking over" in " ".join(p.stderr.split())
    # older than the documented bound (7 days): stale without the flag
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8)).isoformat(timespec="seconds")
    _write_lock(run, pid=os.getpid(), host="far-away-host", started=old)
    with caplog.at_level(logging.WARNING, logger="cnnlens.runlock"):
        with run_lock(run) as held:
            assert read_lock(run).pid == os.getpid() and read_lock(run).host == socket.gethostname()
            assert held == (run / LOCK_NAME).resolve()
    assert "far-away-host 8 days ago" in caplog.text
    assert not (run / LOCK_NAME).exists()


def test_a_reused_pid_does_not_keep_a_lock(tmp_path, caplog):
    # a lock naming a running pid whose process started at another time: the pid was reused
    from cnnlens.runlock import _proc_start

    start = _proc_start(os.getpid())
    assert start is not None  # Linux: /proc/PID/stat
    _write_lock(tmp_path, pid=os.getpid(), proc_start=start - 1)
    with caplog.at_level(logging.WARNING, logger="cnnlens.runlock"):
        with run_lock(tmp_path):
            pass
    assert "the pid now belongs to another process" in caplog.text
    # the same pid with its real start time is alive: held
    _write_lock(tmp_path, pid=os.getpid(), proc_start=start)
    with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
        with run_lock(tmp_path):
            pass


def test_released_on_error_and_ctrl_c_reentrant_within_a_process(tmp_path):
    lock = tmp_path / LOCK_NAME
    for exc in (KeyboardInterrupt, ValueError):
        with pytest.raises(exc):
            with run_lock(tmp_path):
                assert lock.is_file()
                raise exc()
        assert not lock.exists()
    with run_lock(tmp_path):
        with run_lock(tmp_path):  # cnnlens run holds it around train(), which takes it again
            pass
        assert lock.is_file()  # still held by the outer block
    assert not lock.exists()


@pytest.mark.slow
def test_a_failing_command_leaves_no_lock(tmp_path):
    run = make_run(tmp_path / "run")
    p = run_cli("evaluate", str(run), "--split", "nosuch")
    assert p.returncode == 2
    assert not (run / LOCK_NAME).exists()


def test_a_missing_folder_is_created_for_the_lock_and_removed_if_left_empty(tmp_path):
    d = tmp_path / "new" / "run"
    with run_lock(d):
        assert (d / LOCK_NAME).is_file()
    assert not d.exists()
    with run_lock(tmp_path / "absent", create=False) as held:
        assert held is None
    assert not (tmp_path / "absent").exists()


def test_python_train_takes_the_lock_too(tmp_path):
    import cnnlens

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _write_lock(out, pid=holder.pid, command="cnnlens evaluate run")
        with pytest.raises(RunLocked, match=rf"pid {holder.pid} on host .*running `cnnlens evaluate run`"):
            cnnlens.train("digits", "compact", out=out, epochs=1)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()
        holder.wait()
