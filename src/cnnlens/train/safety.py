"""Nothing lost, nothing trusted: atomic Lightning checkpoints, safe checkpoint loading, Ctrl-C.

* :class:`AtomicCheckpointIO` is the Lightning ``CheckpointIO`` plugin ``train()`` uses: a checkpoint
  is serialized in memory and written through :mod:`cnnlens.io` (temporary file in the same folder,
  fsync, rename), so a kill during a save leaves the previous ``last.ckpt`` intact, and a full disk
  or read-only folder is a :class:`cnnlens.io.WriteError` naming the file. Loading always uses
  ``torch.load(weights_only=True)``.
* :func:`load_checkpoint` reads a Lightning checkpoint without unpickling arbitrary objects; a file
  that needs it (a pickled class, a ``__reduce__`` payload) or a truncated file is refused with an
  explanation.
* :class:`GracefulInterrupt` turns Ctrl-C into a clean stop: the first Ctrl-C lets the running epoch
  finish so that its checkpoint is saved (a resumed run then repeats an uninterrupted one exactly),
  a second Ctrl-C stops at once and keeps the checkpoint of the last complete epoch. Either way
  ``train()`` raises :class:`TrainingInterrupted` whose message says how to resume.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_path
from ..errors import CnnlensError, CnnlensTypeError

log = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by Ctrl-C; the message says what was saved and how to resume."""


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a Lightning/torch checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file needs arbitrary unpickling (refused: it could run any code) or is
            truncated/damaged; the message names the file and what to do.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    try:
        obj = torch.load(str(p), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0] if lines else "")
        raise CnnlensError(
            f"checkpoint {p} needs arbitrary unpickling to load ({why}). Unpickling can run any code, so "
            "cnnlens only reads tensors and plain values from checkpoints (torch.load(weights_only=True)). "
            "A checkpoint written by cnnlens never needs more: this file was written by other code or "
            "was tampered with. Train again, or, if you trust the file, re-save its state_dict as "
            "safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CnnlensError(f"checkpoint {p} is damaged or truncated ({first}); "
                         "delete it and resume from another checkpoint, or train again") from None
    if not isinstance(obj, dict):
        raise CnnlensError(f"checkpoint {p} holds a {type(obj).__name__}, not a Lightning checkpoint dict")
    return obj


def _checkpoint_io_class() -> type:
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Lightning checkpoints written atomically through :mod:`cnnlens.io`, read with weights_only."""

        def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
            if storage_options is not None:
                raise CnnlensTypeError("AtomicCheckpointIO takes no storage_options")
            buf = io.BytesIO()
            torch.save(checkpoint, buf)
            # the bytes go to a temporary file beside `path`, fsynced, then renamed over it
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                fh.write(buf.getbuffer())

        def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None
                            ) -> dict[str, Any]:
            if weights_only is False:
                raise CnnlensError("cnnlens never loads checkpoints with weights_only=False")
            return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")

        def remove_checkpoint(self, path: Any) -> None:
            Path(path).unlink(missing_ok=True)

    return AtomicCheckpointIO


def atomic_checkpoint_io() -> Any:
    """A new :class:`AtomicCheckpointIO` (built lazily: Lightning is imported only when training)."""
    return _checkpoint_io_class()()


def _interrupt_callback_class() -> type:
    import lightning as L

    class GracefulInterrupt(L.Callback):
        """See the module docstring. ``requested``: first Ctrl-C seen; ``forced``: second one."""

        def __init__(self) -> None:
            self.requested = False
            self.forced = False
            self.epoch = 0  # 1-based epoch running when Ctrl-C came
            self.completed = 0  # epochs completed (and checkpointed) so far in this run
            self.batch = 0
            self.batches = 0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.batch = 0
            nb = trainer.num_training_batches
            self.batches = int(nb) if isinstance(nb, int) or float(nb).is_integer() else 0

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            self.batch = batch_idx + 1

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            self.completed = trainer.current_epoch + 1
            if self.requested:
                trainer.should_stop = True

        def handle(self, trainer: Any) -> None:
            """The SIGINT handler's work (runs in the main thread between bytecodes)."""
            if not self.requested:
                self.requested = True
                self.epoch = trainer.current_epoch + 1
                left = f" ({self.batches - self.batch} batches left)" if self.batches else ""
                log.warning("Ctrl-C: finishing epoch %d%s, then saving a checkpoint and stopping. "
                            "Press Ctrl-C again to stop now (the checkpoint of the last complete epoch is "
                            "kept).", self.epoch, left)
                return
            self.forced = True
            raise KeyboardInterrupt

    return GracefulInterrupt


def interrupt_callback() -> Any:
    """A new :class:`GracefulInterrupt` callback."""
    return _interrupt_callback_class()()


@contextlib.contextmanager
def sigint_to(handler: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT to ``handler()`` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def resume_hint(out: Path, completed: int) -> str:
    """The message of :class:`TrainingInterrupted`."""
    last = out / "checkpoints" / "last.ckpt"
    saved = (f"{last} holds epoch {completed}" if completed and last.exists()
             else "no epoch was completed, so there is no checkpoint yet" if not last.exists()
             else f"{last} holds the last complete epoch")
    return (f"training interrupted; {saved}. Continue with the same command plus --resume "
            f"(cnnlens train ... --out {out} --resume), or cnnlens.train(..., out={str(out)!r}, resume=True)")
