"""End to end in a real headless Chromium (Debian's `chromium`): the demo run's report page.

Chromium is driven over the DevTools pipe (cnnlens.report.browser, stdlib only). `make test`
installs Chromium when it is missing; without it these tests fail and say how to install it.
The full-page screenshot is kept as a test artifact under artifacts/test-report/ (printed).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import cli

from cnnlens.report.browser import Browser, find_chromium

ARTIFACTS = Path(os.environ.get("CNNLENS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))
EXPECTED = ["data", "model", "training", "failures", "looks", "trust", "filters", "timings"]


def test_demo_report_in_chromium(demo_run):
    out, _ = demo_run
    find_chromium()  # fails with the install hint when there is none
    page = out / "report" / "index.html"
    html = page.read_text()
    with Browser() as b:
        tab = b.open(page.resolve().as_uri())
        info = tab.inspect()
        shot = tab.screenshot(ARTIFACTS / "test-report" / "demo_report.png")
        errors = tab.console_errors
        urls = tab.requested_urls
    print(f"\nscreenshot of the demo report: {shot}")  # noqa: T201  (where the artifact is)
    # the Explore section is there when the run has explore/explore.json (issue #21)
    explore = ["explore"] if (out / "explore" / "explore.json").exists() else []
    assert info["sections"] == EXPECTED[:-1] + explore + EXPECTED[-1:]
    for key in EXPECTED + explore:  # each section has its heading and opens with findings
        assert re.search(rf'<section id="{key}">\s*<h2>[^<]+</h2>\s*<div class="findings">', html), key
    # every image loads: as many as the page names, each decoded with a real size
    assert len(info["images"]) == len(re.findall(r"<img ", html)) >= 15
    bad = [i["src"] for i in info["images"] if not i["complete"] or i["naturalWidth"] == 0]
    assert bad == []
    assert errors == []
    # self-contained: the page asked only for files beside it, nothing from a network
    assert urls and all(u.startswith(("file://", "data:")) for u in urls)  # data: the explorer's atlases
    files = {u.rsplit("/report/", 1)[1] for u in urls[1:] if u.startswith("file://")}
    assert files == {i["src"] for i in info["images"] if not i["src"].startswith("data:")} | (
        {"explore/data.js", "explore/explore.js", "explore/explore.css"} if explore else set())
    # the screenshot is a PNG as tall as the page
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height = int.from_bytes(data[20:24], "big")
    assert height >= info["height"] - 1 and height > 3000


@pytest.mark.slow
def test_the_checks_catch_a_broken_page(tmp_path):
    """The same checks fail on a page with a missing image and a script error."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><html><body><section id="x"></section><img src="missing.png">'
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    with Browser() as b:
        tab = b.open(page.as_uri())
        info = tab.inspect()
        errors = tab.console_errors
    assert info["images"][0]["naturalWidth"] == 0
    assert any("boom" in e for e in errors)
    assert any("undefinedFunction" in e for e in errors)
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors)


def test_report_pdf(demo_run, tmp_path):
    import shutil

    src, _ = demo_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    p = cli("report", str(run), "--pdf")
    pdf = run / "report" / "report.pdf"
    assert str(pdf) in p.stdout.replace("\n", "")
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-"
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 5  # the long page spans several A4 pages
