"""One writer per run directory: the ``RUN/.cnnlens.lock`` file. The bottom layer (errors only).

A command that writes into a run directory holds its lock for as long as it writes::

    with run_lock(run_dir):
        ...  # write into run_dir

The lock is a file created atomically (a hard link of a complete temporary file, or ``O_EXCL``
where links are not supported), so it either does not exist or holds the whole record: ``pid``,
``host``, ``command``, ``started`` (UTC, ISO 8601) and the process's start time. A second writer
fails at once with a :class:`RunLocked` (a :class:`~cnnlens.errors.CnnlensError`) naming the holder.
Readers never look at the lock and never block.

A folder that cannot be written (read-only, full) is a :class:`~cnnlens.io.WriteError` naming it, before
the command does any work. The lock is removed when the block ends, also on an error or Ctrl-C. A process killed outright
(SIGKILL, power loss) leaves it behind; the next writer checks it:

* written on this host by a process that no longer runs (its pid is gone, or now belongs to a
  process started later): stale, taken over with a logged warning;
* written on another host: it cannot be checked from here, so it counts as held until it is
  :data:`OTHER_HOST_STALE_AFTER_S` old (7 days), or until the user breaks it (``break_lock=True``,
  ``--break-lock`` on the command line). A live holder on this host is never broken.

The lock is re-entrant within a process (``cnnlens run`` holds it around ``train()``, which takes it
too). In a data-parallel job only global rank 0 takes it (see :func:`_nonzero_rank`): it is the only
process that writes, and the other ranks are started by it or beside it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import inspect
import json
import logging
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import CnnlensError
from .io import WriteError

log = logging.getLogger(__name__)

LOCK_NAME = ".cnnlens.lock"
#: a lock written on another host is taken over only once it is this old (or with break_lock)
OTHER_HOST_STALE_AFTER_S = 7 * 24 * 3600
_GUARD_STALE_S = 60.0  # the takeover guard is held for milliseconds; older means its holder died

F = TypeVar("F", bound=Callable[..., Any])

_held: dict[Path, int] = {}  # lock path -> depth, for the locks this process holds
_held_mutex = threading.Lock()


class RunLocked(CnnlensError):
    """Another process is writing into the run directory; the message names it."""


@dataclass(frozen=True)
class LockInfo:
    """What a lock file records about its holder."""

    pid: int
    host: str
    command: str
    started: str  # UTC, ISO 8601
    proc_start: int | None = None  # the holder's start time in clock ticks since boot (Linux), if known

    def age_s(self) -> float | None:
        try:
            t = _dt.datetime.fromisoformat(self.started)
        except (TypeError, ValueError):
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return (_dt.datetime.now(_dt.timezone.utc) - t).total_seconds()

    def describe(self) -> str:
        age = self.age_s()
        since = self.started + (f" ({_human(age)} ago)" if age is not None and age >= 0 else "")
        return f"pid {self.pid} on host {self.host}, running `{self.command}`, since {since}"


def lock_path(run_dir: str | os.PathLike[str]) -> Path:
    """``RUN/.cnnlens.lock``."""
    return Path(run_dir) / LOCK_NAME


def read_lock(run_dir: str | os.PathLike[str]) -> LockInfo | None:
    """The holder recorded in ``RUN/.cnnlens.lock``; ``None`` if there is no lock.

    A lock file that is not a lock record (damaged) is reported with pid 0 and host ``?``.
    """
    p = lock_path(run_dir)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return None
    try:
        d = json.loads(raw.decode("utf-8"))
        return LockInfo(pid=int(d["pid"]), host=str(d["host"]), command=str(d.get("command", "?")),
                        started=str(d.get("started", "?")),
                        proc_start=int(d["proc_start"]) if d.get("proc_start") is not None else None)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return LockInfo(pid=0, host="?", command="?", started=_mtime_iso(p))


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike[str], *, command: str | None = None, break_lock: bool = False,
             create: bool = True) -> Iterator[Path | None]:
    """Hold the write lock of ``run_dir`` inside the block; yields the lock file (``None``: not taken).

    Args:
        run_dir: the run directory (or any output folder with one writer at a time).
        command: recorded as the holder's command; default: this process's command line.
        break_lock: take over a lock written on another host, which cannot be checked from here
            (a live holder on this host is never broken).
        create: create ``run_dir`` when missing (and remove it again if it is still empty when the
            lock is released: the command failed before writing); with ``False`` a missing folder
            is not locked (a command on a run that does not exist fails on its own).

    Raises:
        RunLocked: another live process holds the lock; the message names its pid, host,
            command and start time.
    """
    d = Path(run_dir)
    if _nonzero_rank():
        yield None
        return
    made = not d.is_dir()
    if made:
        if not create:
            yield None
            return
        d.mkdir(parents=True, exist_ok=True)
    p = lock_path(d).resolve()
    with _held_mutex:
        depth = _held.get(p, 0)
        if depth:
            _held[p] = depth + 1
    if not depth:
        _acquire(p, command or _command_line(), break_lock)
        with _held_mutex:
            _held[p] = 1
    try:
        yield p
    finally:
        with _held_mutex:
            _held[p] -= 1
            last = _held[p] == 0
            if last:
                del _held[p]
        if last:
            _release(p)
            if made:  # a folder made only for the lock, and left empty (the command failed early)
                with contextlib.suppress(OSError):
                    d.rmdir()


@contextlib.contextmanager
def run_locks(run_dirs: Iterable[str | os.PathLike[str]], **kw: Any) -> Iterator[None]:
    """:func:`run_lock` on several folders at once (each taken in turn, all released)."""
    with contextlib.ExitStack() as stack:
        for d in dict.fromkeys(Path(r) for r in run_dirs):
            stack.enter_context(run_lock(d, **kw))
        yield


def writes_run(param: str = "out") -> Callable[[F], F]:
    """Decorator: the function runs holding the write lock of its ``param`` argument (a folder)::

        @writes_run("out")
        def import_model(..., out: str | Path, ...) -> ...: ...
    """
    def deco(fn: F) -> F:
        sig = inspect.signature(fn)
        if param not in sig.parameters:
            raise TypeError(f"{fn.__qualname__} has no parameter {param!r} to lock")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            folder = sig.bind(*args, **kwargs).arguments[param]
            with run_lock(folder):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco


def holds_lock(run_dir: str | os.PathLike[str]) -> bool:
    """Whether this process holds the lock of ``run_dir``."""
    with _held_mutex:
        return lock_path(run_dir).resolve() in _held


# ---- internals -------------------------------------------------------------------------------------

def _acquire(p: Path, command: str, break_lock: bool) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "proc_start": _proc_start(os.getpid()), "cnnlens_lock": 1}
    data = (json.dumps(record, indent=2) + "\n").encode("utf-8")
    for _ in range(3):  # create; if a stale lock is in the way, remove it and try again
        if _create(p, data):
            return
        info = read_lock(p.parent)
        if info is None:
            continue  # released between our attempt and the read
        why = _stale_reason(info, p, break_lock)
        if why is None:
            raise RunLocked(_held_message(p, info))
        _take_over(p, info, why)
    info = read_lock(p.parent)
    raise RunLocked(_held_message(p, info) if info else f"could not take the lock {p}; try again")


def _create(p: Path, data: bytes) -> bool:
    """Create ``p`` holding ``data``, atomically; ``False`` if it exists.

    Raises:
        WriteError: the folder cannot be written (read-only, full, no permission); nothing is left.
    """
    try:
        return _create_or_fail(p, data)
    except OSError as e:
        raise WriteError(f"cannot write {p.parent} (its lock file {p.name}): {e.strerror or e}. Nothing "
                         "was written; check that the folder is writable and has free space.") from e


def _create_or_fail(p: Path, data: bytes) -> bool:
    fd, tmp = tempfile.mkstemp(prefix=f"{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, p)  # atomic, fails if p exists; p appears with its whole content
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        try:  # a file system without hard links: O_EXCL create, then write
            fd2 = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd2, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(p)
            raise
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _stale_reason(info: LockInfo, p: Path, break_lock: bool) -> str | None:
    """Why the lock ``info`` may be taken over, or ``None`` if its holder may still be writing."""
    if info.pid == 0 and info.host == "?":
        age = info.age_s()
        return "the lock file is damaged" if age is None or age > 5 else None  # 5 s: being written
    if info.host == socket.gethostname():
        if not _alive(info.pid):
            return f"process {info.pid} is no longer running"
        now = _proc_start(info.pid)
        if info.proc_start is not None and now is not None and now != info.proc_start:
            return f"process {info.pid} is no longer running (the pid now belongs to another process)"
        return None
    age = info.age_s()
    if age is not None and age > OTHER_HOST_STALE_AFTER_S:
        bound = _human(OTHER_HOST_STALE_AFTER_S)
        return f"it was written on host {info.host} {_human(age)} ago (over {bound})"
    if break_lock:
        return f"it was written on host {info.host} and --break-lock (break_lock=True) was given"
    return None


def _take_over(p: Path, info: LockInfo, why: str) -> None:
    """Remove the stale lock ``p`` (still holding ``info``); one process at a time does this."""
    guard = p.with_name(p.name + ".takeover")
    try:
        fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - guard.stat().st_mtime > _GUARD_STALE_S:
                guard.unlink()
        return  # another process is taking over right now; the caller tries again
    os.close(fd)
    try:
        if read_lock(p.parent) == info:  # not replaced by a new holder meanwhile
            log.warning("taking over the stale lock %s: %s (it was held by %s)", p, why, info.describe())
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    finally:
        with contextlib.suppress(OSError):
            guard.unlink()


def _release(p: Path) -> None:
    info = read_lock(p.parent)
    if info is None or info.pid != os.getpid() or info.host != socket.gethostname():
        log.warning("the lock %s was removed or taken over by another process while this one held it%s",
                    p, f" (now: {info.describe()})" if info else "")
        return
    with contextlib.suppress(FileNotFoundError):
        p.unlink()


def _held_message(p: Path, info: LockInfo) -> str:
    run = p.parent
    msg = (f"{run} is being written by another cnnlens process: {info.describe()}. One command at a "
           "time may write into a run directory: wait for that one to finish, or write a new run "
           "elsewhere (another --out).")
    if info.host != socket.gethostname():
        msg += (f" The lock was written on another host, so it cannot be checked from here; if no "
                f"process there is still writing, pass --break-lock (or remove {p}).")
    else:
        msg += f" If that process is gone, the next writer takes its lock ({p}) over by itself."
    return msg


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return True
    return True


def _proc_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # field 22; the command name (field 2) is in parentheses and may hold spaces
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _nonzero_rank() -> bool:
    """A data-parallel process other than global rank 0 (it writes nothing, so it takes no lock).

    Read from the variables the launchers set (the ones Lightning reads, plus ``NODE_RANK``):
    Lightning's own launcher starts ranks 1.. with ``LOCAL_RANK``; torchrun sets ``RANK``; SLURM
    ``SLURM_PROCID``.
    """
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK"):
        v = os.environ.get(var)
        if v is not None and v.strip().isdigit() and int(v) != 0:
            return True
    return False


def _command_line() -> str:
    argv = list(sys.argv)
    if not argv or not argv[0]:
        return "python"
    first = Path(argv[0])
    if first.name == "cnnlens" or (first.name == "__main__.py" and first.parent.name == "cnnlens"):
        return shlex.join(["cnnlens", *argv[1:]])
    return shlex.join(["python", *argv])


def _mtime_iso(p: Path) -> str:
    try:
        return _dt.datetime.fromtimestamp(p.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
    except OSError:
        return "?"


def _human(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 3 * 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} days"
