"""Atomic files: a kill mid-write leaves the old or the new version, never a truncated one; a full disk
or a read-only folder is a clear error naming the path, and what was saved before stays intact."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from robust_runs import assert_clean_cli_error, env, make_run, run_cli, tree_hashes

A = b"A" * (4 << 20)
B = b"B" * (4 << 20) + b"tail"


# The writer runs in a fresh interpreter, not os.fork(): forking pytest's multi-threaded process
# (torch's thread pool) can deadlock the child before it writes anything.
WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch

    from cnnlens.io import write_bytes
    from cnnlens.train.safety import atomic_checkpoint_io

    kind, target = sys.argv[1], Path(sys.argv[2])
    A = b"A" * (4 << 20)
    B = b"B" * (4 << 20) + b"tail"
    io = atomic_checkpoint_io()
    ckpts = [{"step": k, "w": torch.full((1 << 20,), float(k))} for k in (0, 1)]
    i = 0
    while True:  # write the two versions in turn until killed
        if kind == "bytes":
            write_bytes(target, (A, B)[i % 2])
        else:
            io.save_checkpoint(ckpts[i % 2], target)
        if i == 0:
            sys.stdout.write("r")
            sys.stdout.flush()
        i += 1
""")


def _kill_while_writing(kind: str, target: Path, rounds: int) -> None:
    """Start a writer, SIGKILL it at a random moment, check the target; ``rounds`` times."""
    rng = random.Random(0)
    for _ in range(rounds):
        p = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(target)], stdout=subprocess.PIPE,
                             env=env())
        try:
            assert p.stdout.read(1) == b"r"
            time.sleep(rng.uniform(0.0, 0.3))
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        assert p.returncode == -signal.SIGKILL
        _check(kind, target)


def _check(kind: str, target: Path) -> None:
    if kind == "bytes":
        data = target.read_bytes()
        assert data in (A, B), f"torn file of {len(data)} bytes"
    else:
        from cnnlens.train.safety import load_checkpoint

        ck = load_checkpoint(target)  # raises on a truncated file
        assert torch.equal(ck["w"], torch.full((1 << 20,), float(ck["step"])))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bytes", "checkpoint"])
def test_sigkill_during_writes_never_leaves_a_torn_file(kind, tmp_path):
    target = tmp_path / ("f.bin" if kind == "bytes" else "last.ckpt")
    _kill_while_writing(kind, target, rounds=4)
    # temporary files a kill leaves behind are hidden, named after the target, and never the target
    for p in tmp_path.iterdir():
        assert p == target or re.fullmatch(rf"\.{re.escape(target.name)}\..+\.tmp", p.name), p


@pytest.mark.slow
def test_write_error_names_the_path_and_keeps_the_old_file(tmp_path):
    """In-process: the kernel refuses the write (file size limit), the old version survives."""
    code = textwrap.dedent("""
        import resource, sys
        from cnnlens.io import WriteError, write_bytes
        target = sys.argv[1]
        write_bytes(target, b"old")
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        try:
            write_bytes(target, b"x" * 5000)
        except WriteError as e:
            print("ERR", e)
    """)
    target = tmp_path / "keep.txt"
    p = subprocess.run([sys.executable, "-c", code, str(target)], env=env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ERR cannot write " + str(target)) and "File too large" in p.stdout
    assert target.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["keep.txt"]  # the temporary file was removed


@pytest.mark.slow
def test_full_disk_during_evaluate_is_a_clear_error_and_loses_nothing(tmp_path):
    run = make_run(tmp_path / "run")
    ok = run_cli("evaluate", str(run))
    assert ok.returncode == 0, ok.stderr
    before = tree_hashes(run)
    assert "eval/metrics.json" in before
    p = run_cli("evaluate", str(run), fsize_limit=1000)  # every eval file is larger than 1000 bytes
    assert_clean_cli_error(p, f"cannot write {run / 'eval'}", "File too large")
    after = tree_hashes(run)
    # timings.json (small) records the failed stage's time; every other file is byte for byte intact
    # and no temporary file is left
    assert json.loads((run / "timings.json").read_text())["evaluate"]
    assert {k: v for k, v in after.items() if k != "timings.json"} == \
        {k: v for k, v in before.items() if k != "timings.json"}


@pytest.mark.slow
def test_full_disk_during_training_names_the_checkpoint_and_keeps_the_history(tmp_path):
    out = tmp_path / "run"
    p = run_cli("train", "--data", "digits", "--model", "compact", "--epochs", "1", "--image-size", "16",
                "--batch-size", "256", "--out", str(out), fsize_limit=200_000)  # a checkpoint is ~2 MB
    assert_clean_cli_error(p, f"cannot write {out / 'checkpoints'}", ".ckpt", "File too large")
    assert len((out / "history.csv").read_text().splitlines()) == 2  # epoch 1 was recorded
    assert list((out / "checkpoints").glob("*")) == []  # no partial checkpoint, no temporary file


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt 2>/dev/null || exit 1"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _in_tmpfs(script: str, mnt: Path, size: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) in a private mount namespace where ``mnt`` is a fresh tmpfs of ``size``."""
    mnt.mkdir()
    full = f'set -e\nmount -t tmpfs -o size={size} tmpfs "{mnt}"\n' + script
    return subprocess.run(["unshare", "-m", "sh", "-c", full], env=env(), capture_output=True, text=True,
                          timeout=600)


UNSHARE = _unshare_works()
needs_mount = pytest.mark.skipif(not UNSHARE and os.geteuid() == 0,
                                 reason="root without mount namespaces: no way to make a read-only folder")


@pytest.mark.slow
@needs_mount
def test_read_only_folder_is_a_clear_error(tmp_path):
    run = make_run(tmp_path / "src")
    py = f'{sys.executable} -m cnnlens'
    if UNSHARE:  # a real read-only file system
        mnt = tmp_path / "mnt"
        p = _in_tmpfs(f'cp -r "{run}" "{mnt}/run"\nmount -o remount,ro "{mnt}"\n'
                      f'set +e\n{py} evaluate "{mnt}/run"\necho "rc=$?" >&2\n', mnt, "16m")
        where, why = mnt / "run", "Read-only file system"  # its lock file is the first write
        err = p.stderr
        assert "rc=2" in err, err
        p = subprocess.CompletedProcess(p.args, 2, p.stdout, err.replace("rc=2", ""))
    else:  # not root: a folder without write permission
        os.chmod(run, 0o555)
        try:
            p = run_cli("evaluate", str(run))
        finally:
            os.chmod(run, 0o755)
        where, why = run, "Permission denied"
    assert_clean_cli_error(p, f"cannot write {where}", why)


@pytest.mark.slow
@pytest.mark.skipif(not UNSHARE, reason="needs a mount namespace for a real full tmpfs")
def test_really_full_disk_is_a_clear_error_and_keeps_every_saved_byte(tmp_path):
    run = make_run(tmp_path / "src")
    assert run_cli("evaluate", str(run)).returncode == 0
    mnt = tmp_path / "mnt"
    py = f'{sys.executable} -m cnnlens'
    script = (f'cp -r "{run}" "{mnt}/run"\ncd "{mnt}/run"\nfind . -type f | sort | xargs sha256sum > /tmp/.b_$$\n'
              f'dd if=/dev/zero of="{mnt}/spare" bs=4k count=1 2>/dev/null\n'
              f'dd if=/dev/zero of="{mnt}/filler" bs=4k 2>/dev/null || true\n'
              f'rm "{mnt}/spare"\n'  # one free page: the run's lock file fits, the evaluation does not
              f'set +e\n{py} evaluate "{mnt}/run"\necho "rc=$?" >&2\n'
              f'find . -type f | sort | xargs sha256sum > /tmp/.a_$$\n'
              f'cmp /tmp/.b_$$ /tmp/.a_$$ && echo SAME >&2; rm -f /tmp/.b_$$ /tmp/.a_$$\n')
    p = _in_tmpfs(script, mnt, "4m")
    assert "rc=2" in p.stderr and "SAME" in p.stderr, p.stderr
    cleaned = subprocess.CompletedProcess(p.args, 2, p.stdout, p.stderr.replace("rc=2", "").replace("SAME", ""))
    assert_clean_cli_error(cleaned, f"cannot write {mnt / 'run' / 'eval'}", "No space left on device")
