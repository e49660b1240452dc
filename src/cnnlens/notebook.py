"""``cnnlens.load_run(path).show()``: the run's report inline in Jupyter, as an iframe of the file.

No IPython import: Jupyter displays any object with ``_repr_html_`` (what ``IPython.display.IFrame``
does too), so this works wherever the notebook front end renders HTML, and needs no widget.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from .errors import CnnlensError


class ReportFrame:
    """An ``<iframe>`` of ``RUN/report/index.html``. ``src`` is the page's path relative to the working
    directory (the notebook's folder: Jupyter serves files under it); ``uri`` its ``file://`` address
    for a browser."""

    def __init__(self, page: Path, width: str | int = "100%", height: int = 800) -> None:
        self.page = page
        self.width = width
        self.height = height

    @property
    def src(self) -> str:
        try:
            return Path(os.path.relpath(self.page)).as_posix()
        except ValueError:  # another drive (Windows)
            return self.page.resolve().as_uri()

    @property
    def uri(self) -> str:
        return self.page.resolve().as_uri()

    def _repr_html_(self) -> str:
        src, uri = html.escape(self.src, quote=True), html.escape(self.uri, quote=True)
        width = html.escape(str(self.width), quote=True)
        return (f'<iframe src="{src}" width="{width}" height="{int(self.height)}" '
                'style="border: 1px solid #ddd"></iframe>'
                f'<p style="font-size: .8em">cnnlens report: <a href="{src}" target="_blank">{src}</a> '
                f'(or open <code>{uri}</code> in a browser)</p>')

    def __repr__(self) -> str:
        return f"ReportFrame({str(self.page)!r})"


def report_frame(run_dir: str | os.PathLike[str], width: str | int = "100%", height: int = 800
                 ) -> ReportFrame:
    """The frame of ``run_dir``'s report; a run without one is a :class:`CnnlensError` naming the command."""
    page = Path(run_dir) / "report" / "index.html"
    if not page.is_file():
        raise CnnlensError(f"{page} does not exist: write the report first with `cnnlens report {run_dir}`")
    return ReportFrame(page, width, height)
