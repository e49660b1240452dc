"""Timing of the stages: each stage's wall and CPU time goes into ``RUN/timings.json``
(:class:`cnnlens.rundir.Timings`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..rundir import Timings

log = logging.getLogger("cnnlens.pipeline")

Progress = Callable[[int, int], None] | None
"""A ``(done, total)`` callback (the CLI's progress bar), or ``None``."""


def record_timing(run_dir: str | Path, stage: str, seconds: float, cpu_seconds: float | None = None) -> None:
    """Add ``stage`` to ``RUN/timings.json`` (``{stage: {"wall_s": .., "cpu_s": ..}}``, in stage order)."""
    t = Timings.load(run_dir)
    t.add(stage, seconds, cpu_seconds)
    t.save(run_dir)


@contextmanager
def timed(run_dir: str | Path, stage: str) -> Iterator[None]:
    """Record the wall and CPU (this process) time of the block as ``stage``, also when it fails."""
    t0, c0 = time.perf_counter(), time.process_time()
    done = False
    try:
        yield
        done = True
    finally:
        try:
            record_timing(run_dir, stage, time.perf_counter() - t0, time.process_time() - c0)
        except OSError as e:
            if done:
                raise
            # the block's own error (e.g. a full disk) is the one to report, not this follow-up
            log.warning("could not record the time of %s: %s", stage, e)
