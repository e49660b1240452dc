"""Export a model's graph to TensorBoard (``tensorboard --logdir DIR``, GRAPHS tab)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from ..errors import CnnlensError

log = logging.getLogger(__name__)


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("exporting the graph to TensorBoard needs the tensorboard package: "
                          "pip install tensorboard  (or pip install 'cnnlens[tensorboard]')") from None
    return SummaryWriter


def export_graph(model: nn.Module, input_shape: tuple[int, int, int] | list[int],
                 logdir: str | os.PathLike[str]) -> Path:
    """Trace ``model`` on zeros ``[1, C, H, W]`` (eval mode) and write its graph as a TensorBoard
    event file into ``logdir``. The model's training flags are restored. Returns the event file.

    The file is written in a temporary folder beside ``logdir`` and moved in when complete.
    """
    SummaryWriter = _summary_writer()
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise CnnlensError(f"input_shape must be (C, H, W) with positive sizes; got {input_shape!r}")
    out = Path(logdir)
    out.mkdir(parents=True, exist_ok=True)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    modes = [m.training for m in model.modules()]
    tmp = Path(tempfile.mkdtemp(prefix=".tb-", dir=out))
    model.eval()
    try:
        writer = SummaryWriter(log_dir=str(tmp))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notice
                writer.add_graph(model, torch.zeros(1, *shape, device=dev), use_strict_trace=False)
        except RuntimeError as e:
            raise CnnlensError(f"{type(model).__name__} could not be traced for TensorBoard on input "
                             f"{shape}: {str(e).splitlines()[0]}") from None
        finally:
            writer.close()
        events = sorted(tmp.glob("events.out.tfevents.*"))
        if not events:
            raise OSError(f"TensorBoard wrote no event file into {tmp}")
        target = out / events[0].name
        os.replace(events[0], target)
    finally:
        for m, t in zip(model.modules(), modes):
            m.training = t
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("graph of %s written to %s", type(model).__name__, target)
    return target
