"""The trust stage (``RUN/trust/``): the trust protocol's scores and its randomization figure."""

from __future__ import annotations

from typing import Any

from ..rundir import TrustScores
from ..train import Run
from .timing import Progress


def trust_run(
    run: Run,
    methods: list[str] | tuple[str, ...] | None,
    n_images: int = 32,
    steps: int = 50,
    progress: Progress = None,
    split: str | None = None,
    *,
    devices: int | str | None = None,
    strategy: str | None = None,
    accelerator: str | None = None,
    num_nodes: int | None = None,
    **options: Any,
) -> Any:
    """The trust protocol (:func:`cnnlens.metrics.run_trust`) on ``n_images`` images of ``split``
    (``None``: test if labeled, else val; fewer when it is smaller; ``options``: any other
    :func:`run_trust` keyword, e.g. ``seed``, ``substrate``, ``cascade``, ``independent``,
    ``max_cost``). With ``devices``/``strategy``/``accelerator``/``num_nodes`` the images are split across processes (:func:`trust_dataset`).
    Writes ``RUN/trust/`` (:class:`TrustScores`: ``scores.json``, ``table.csv``; ``randomization.png``);
    like ``cnnlens trust``, it records no timing (:func:`analyze` times it as the stage ``trust``).
    Returns the :class:`cnnlens.metrics.TrustReport`, or ``None`` in a data-parallel process other
    than global rank 0 (rank 0 gathers and writes)."""
    from ..data.splits import label_split
    from ..metrics import run_trust, trust_dataset

    ds = run.dataset  # normalized as the model expects (model.json)
    split = label_split(ds, split)
    n = min(n_images, len(ds.indices(split)))
    methods = None if methods is None else list(methods)
    if any(v is not None for v in (devices, strategy, accelerator, num_nodes)):
        rep = trust_dataset(run.model, ds, methods, n_images=n, steps=steps,
                            shard_dir=run.path / "trust" / ".shards", accelerator=accelerator or "auto",
                            devices=devices or 1, strategy=strategy or "auto", num_nodes=num_nodes or 1,
                            split=split, **options)
        if rep is None:  # another rank: global rank 0 gathers and writes everything
            return None
    else:
        rep = run_trust(run.model, ds, methods, n_images=n, steps=steps, progress=progress, split=split,
                        **options)
    save_trust(run, rep)
    return rep


def save_trust(run: Run, report: Any) -> None:
    """``RUN/trust/``: the record of a :class:`TrustReport` and its cascading-randomization figure."""
    from ..report.fig_trust import plot_trust

    TrustScores.from_report(report).save(run.path)
    plot_trust(report, run.path / "trust")
