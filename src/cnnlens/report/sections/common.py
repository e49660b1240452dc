"""What every section uses: the lazily loaded run (:class:`RunView`), a figure entry, a copy beside
the page, the wording of a layer transform."""

from __future__ import annotations

from pathlib import Path
from functools import cached_property
from typing import Any

import torch



class RunView:
    """The run directory, with the model and dataset loaded only when a figure needs images."""

    def __init__(self, path: Path, trust_code: bool = False) -> None:
        self.path = path
        self.trust_code = trust_code
        self.missing: list[dict[str, str]] = []

    def load(self, record: Any, what: str) -> Any:
        """The record, or ``None`` (noted for the page: what is left out, the file, the command)."""
        if record.exists(self.path):
            return record.load(self.path)
        self.missing.append({"what": what, "file": str(record.path(self.path).relative_to(self.path)),
                             "command": record.maker(self.path)})
        return None

    @cached_property
    def loaded(self):  # noqa: ANN201 (cnnlens.train.Run)
        from ...train import load_run

        return load_run(self.path, trust_code=self.trust_code)

    @cached_property
    def dataset(self):  # noqa: ANN201
        """The images the figures show: read from the data spec alone, no model built (no user code runs)."""
        from ...train import load_run_dataset

        return load_run_dataset(self.path)

    def images(self, indices: list[int]) -> torch.Tensor:
        return self.dataset.images[torch.as_tensor(indices, dtype=torch.long)]


def fig_entry(file: str, alt: str, caption: str) -> dict[str, str]:
    return {"file": file, "alt": alt, "caption": caption}


def transform_note(info: dict[str, Any]) -> str:
    """What a layer method did with its layer, for a caption: the token/channels-last transform and
    a Score-CAM channel cap (from explanations.json / confused.json)."""
    parts = []
    t = info.get("layer_transform")
    if t and t != "none":
        parts.append(t)
    ex = info.get("extras") or {}
    if isinstance(ex.get("channels_scored"), int) and ex.get("channels_scored") != ex.get("channels"):
        parts.append(f"Score-CAM scored the {ex['channels_scored']} most varying of {ex['channels']} "
                     "channels")
    return f" ({'; '.join(parts)})" if parts else ""


def copy_beside(src: Path, dst: Path) -> None:
    """Copy a figure beside the page (atomically, like every file cnnlens writes)."""
    from ...io import write_bytes

    write_bytes(dst, Path(src).read_bytes())


def cell_word(word: str) -> str:
    return "—" if word == "-" else word
