"""Headless Chromium for the report: print a page to PDF and inspect it (images, console, requests).

A tiny client of the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (commands go to the
browser's fd 3, replies come from its fd 4, each message JSON terminated by a NUL byte): no
websocket library, no server, no network. The browser runs with a fresh ``--user-data-dir`` in a
temporary folder and is stopped when the :class:`Browser` is closed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..io import write_bytes

log = logging.getLogger(__name__)

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
)

# what the page is checked for, evaluated in the page: every <img> and every section id
_INSPECT_JS = """JSON.stringify({
  title: document.title,
  sections: Array.from(document.querySelectorAll('section[id]')).map(s => s.id),
  images: Array.from(document.images).map(i => ({
    src: i.getAttribute('src'), complete: i.complete,
    naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})),
  height: document.documentElement.scrollHeight,
  width: document.documentElement.scrollWidth
})"""


def find_chromium(path: str | os.PathLike[str] | None = None) -> str:
    """The Chromium executable: ``path``, else ``$CNNLENS_CHROMIUM``, else the first of
    chromium / chromium-browser / google-chrome on ``PATH``."""
    for cand in ([str(path)] if path else []) + (
        [os.environ["CNNLENS_CHROMIUM"]] if os.environ.get("CNNLENS_CHROMIUM") else []
    ):
        if Path(cand).is_file() or shutil.which(cand):
            return shutil.which(cand) or cand
        raise FileNotFoundError(
            f"Chromium not found at {cand!r}; install it (Debian: apt-get install chromium) "
            "or point CNNLENS_CHROMIUM at the executable"
        )
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no Chromium on PATH (looked for " + ", ".join(CANDIDATES) + "); install it "
        "(Debian: apt-get install chromium) or set CNNLENS_CHROMIUM to the executable"
    )


class BrowserError(RuntimeError):
    """Chromium failed to start, answered with an error, or did not answer in time."""


class Browser:
    """One headless Chromium, driven over the DevTools pipe.

    Usage::

        with Browser() as b:
            page = b.open("file:///.../index.html")   # waits for the load event
            info = page.inspect()                      # sections, images (naturalWidth), size
            page.screenshot("shot.png"); page.pdf("report.pdf")
            page.console_errors                        # console errors, exceptions, failed loads
    """

    def __init__(self, executable: str | None = None, timeout_s: float = 60.0) -> None:
        self.executable = find_chromium(executable)
        self.timeout_s = timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="cnnlens-chromium-")
        self._next_id = 0
        self._buf = b""
        self._events: list[dict[str, Any]] = []
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # move the child's ends above 4 first so dup2 onto 3/4 cannot clobber one of them
        hi_r, hi_w = os.dup(to_child_r), os.dup(from_child_w)
        while hi_r < 5 or hi_w < 5:
            hi_r, hi_w = os.dup(hi_r), os.dup(hi_w)

        def child_fds() -> None:  # runs in the child before exec
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        cmd = [
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._tmp.name}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=child_fds,
                close_fds=False,
            )
        finally:
            for fd in {to_child_r, from_child_w, hi_r, hi_w}:
                os.close(fd)
        self._w = to_child_w
        self._r = from_child_r

    # -- protocol ------------------------------------------------------------------------------
    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply (events that arrive meanwhile are kept)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        want = self._next_id
        while True:
            m = self._read(timeout_s)
            if m.get("id") == want:
                if "error" in m:
                    raise BrowserError(f"{method} failed: {m['error'].get('message')}")
                return m.get("result", {})
            if "method" in m:
                self._events.append(m)

    def wait_event(
        self, method: str, session: str | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Wait for an event named ``method`` (returns its params)."""
        for i, e in enumerate(self._events):
            if e["method"] == method and (session is None or e.get("sessionId") == session):
                del self._events[i]
                return e.get("params", {})
        while True:
            m = self._read(timeout_s)
            if m.get("method") == method and (session is None or m.get("sessionId") == session):
                return m.get("params", {})
            if "method" in m:
                self._events.append(m)

    def events(self, session: str | None = None) -> list[dict[str, Any]]:
        """Events received so far (for a session), read without waiting."""
        while True:
            ready, _, _ = select.select([self._r], [], [], 0)
            if not ready and b"\0" not in self._buf:
                break
            self._events.append(self._read(1.0))
        return [e for e in self._events if session is None or e.get("sessionId") == session]

    def _read(self, timeout_s: float | None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer within {timeout_s or self.timeout_s:.0f} s")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    err = (
                        self._proc.stderr.read().decode(errors="replace")[-2000:] if self._proc.stderr else ""
                    )
                    raise BrowserError(
                        f"Chromium ({self.executable}) exited (code {self._proc.poll()}): {err}"
                    )
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    # -- pages ---------------------------------------------------------------------------------
    def open(self, url: str, width: int = 1200, height: int = 900, *, javascript: bool = True) -> Page:
        """A new tab at ``url`` (``file://`` paths are fine), after its load event (``javascript=False``:
        with scripts disabled, as a reader who turned JavaScript off)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        if not javascript:
            self.send("Emulation.setScriptExecutionDisabled", {"value": True}, session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        return page

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.send("Browser.close", timeout_s=5)
            except (BrowserError, OSError):
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._proc.stderr:
            self._proc.stderr.close()
        self._tmp.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """A tab of :class:`Browser` (a DevTools session)."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str) -> Any:
        r = self.browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session,
        )
        if "exceptionDetails" in r:
            raise BrowserError(f"script failed: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 20.0) -> Any:
        """Poll ``expression`` in the page until it is truthy; its value (a :class:`BrowserError` after
        ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            v = self.evaluate(expression)
            if v:
                return v
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression!r} stayed false for {timeout_s:.0f} s")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A real mouse click (pressed + released) at the centre of the first element matching
        ``selector``, scrolled into view first."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                           "button": "left", "clickCount": 1}, self.session)

    def hover(self, selector: str, fx: float = 0.5, fy: float = 0.5) -> None:
        """Move the mouse over the first element matching ``selector``, at the fractions ``fx``, ``fy``
        of its width and height."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            f" return [r.left + {float(fx)} * r.width, r.top + {float(fy)} * r.height]; }})()")
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        self.browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box[0], "y": box[1]},
                          self.session)

    _KEYS = {"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40, "Enter": 13, "Escape": 27}

    def press(self, key: str) -> None:
        """Press and release a key (``ArrowLeft``, ``ArrowRight``, ...) as the keyboard would."""
        code = self._KEYS.get(key, 0)
        for kind in ("rawKeyDown", "keyUp"):
            self.browser.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                         "windowsVirtualKeyCode": code,
                                                         "nativeVirtualKeyCode": code}, self.session)

    def canvas_pixels(self, selector: str) -> tuple[int, int, bytes]:
        """``(width, height, RGBA bytes)`` of the canvas matching ``selector``, as drawn."""
        got = self.evaluate(
            f"(() => {{ const c = document.querySelector({json.dumps(selector)}); if (!c) return null;"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let s = '';"
            " for (let i = 0; i < d.length; i += 8192)"
            " s += String.fromCharCode.apply(null, d.subarray(i, i + 8192));"
            " return [c.width, c.height, btoa(s)]; })()")
        if got is None:
            raise BrowserError(f"no canvas matches {selector!r}")
        return int(got[0]), int(got[1]), base64.b64decode(got[2])

    def back(self) -> None:
        """The browser's Back button (the previous entry of this tab's history)."""
        h = self.browser.send("Page.getNavigationHistory", session=self.session)
        if h["currentIndex"] < 1:
            raise BrowserError("no earlier page in this tab's history")
        entry = h["entries"][h["currentIndex"] - 1]["id"]
        self.browser.send("Page.navigateToHistoryEntry", {"entryId": entry}, self.session)

    def inspect(self) -> dict[str, Any]:
        """``{title, sections: [id], images: [{src, complete, naturalWidth, naturalHeight}], width,
        height}``."""
        return json.loads(self.evaluate(_INSPECT_JS))

    @property
    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        out = []
        for e in self.browser.events(self.session):
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(
                    "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
                )
            elif e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
            elif e["method"] == "Network.loadingFailed":
                out.append(f"load failed: {p.get('errorText')} (request {p.get('requestId')})")
        return out

    @property
    def requested_urls(self) -> list[str]:
        """Every URL the page asked for (the page itself included)."""
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events(self.session)
            if e["method"] == "Network.requestWillBeSent"
        ]

    def screenshot(self, path: str | os.PathLike[str], full_page: bool = True, selector: str | None = None
                   ) -> Path:
        """PNG of the page (the whole scrollable page by default; ``selector``: just that element)."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            r = self.evaluate(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                " const r = e.getBoundingClientRect();"
                " return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()")
            if r is None:
                raise BrowserError(f"no element matches {selector!r}")
            params.update(captureBeyondViewport=True,
                          clip={"x": r[0], "y": r[1], "width": r[2], "height": r[3], "scale": 1})
        elif full_page:
            m = self.browser.send("Page.getLayoutMetrics", session=self.session)
            size = m.get("cssContentSize") or m["contentSize"]
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            )
        data = self.browser.send("Page.captureScreenshot", params, self.session, timeout_s=120)["data"]
        return write_bytes(path, base64.b64decode(data))

    def pdf(self, path: str | os.PathLike[str]) -> Path:
        """Print the page to PDF (A4, backgrounds printed)."""
        data = self.browser.send(
            "Page.printToPDF",
            {
                "printBackground": True,
                "paperWidth": 8.27,
                "paperHeight": 11.69,
                "marginTop": 0.4,
                "marginBottom": 0.4,
                "marginLeft": 0.4,
                "marginRight": 0.4,
                "preferCSSPageSize": False,
            },
            self.session,
            timeout_s=180,
        )["data"]
        return write_bytes(path, base64.b64decode(data))


def print_pdf(
    html: str | os.PathLike[str], pdf: str | os.PathLike[str] | None = None, executable: str | None = None
) -> Path:
    """Print ``html`` (a file) to ``pdf`` (default: beside it, ``.pdf``) with headless Chromium."""
    src = Path(html).resolve()
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist; write the report first (cnnlens report RUN)")
    out = Path(pdf) if pdf else src.with_suffix(".pdf")
    with Browser(executable) as b:
        page = b.open(src.as_uri())
        page.pdf(out)
    log.info("PDF written to %s", out)
    return out
