"""The explorer's data side of the report (issue #21), without a browser: what data.js holds, its
escaping, the atlases' bytes, the colour tables; and ``Run.show()`` for notebooks."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from torch import nn

from cnnlens.errors import CnnlensError
from cnnlens.report.explore import CMAP_NAMES, atlas, atlas_layout, colormaps, png_data_uri, script_json
from cnnlens.train.run import Run


def _decode(uri: str) -> np.ndarray:
    head, b64 = uri.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_script_json_cannot_close_the_script_or_break_a_line():
    nasty = {"c": ["</script><script>alert(1)</script>", "<!-- x", "a\u2028b\u2029c", "&amp;", "'\""]}
    text = script_json(nasty)
    for bad in ("</script", "<script", "<!--", "\u2028", "\u2029", "&"):
        assert bad not in text
    assert json.loads(text) == nasty  # still the same JSON value


def test_script_json_refuses_nan():
    with pytest.raises(ValueError):
        script_json({"x": float("nan")})


@pytest.mark.parametrize("n", [1, 5, 16, 17])
def test_map_atlas_holds_exactly_the_quantized_bytes(n):
    rng = np.random.default_rng(n)
    q = rng.integers(0, 256, size=(n, 7, 5), dtype=np.uint8)
    img = _decode(png_data_uri(atlas(q)))
    cols = atlas_layout(n)
    assert img.dtype == np.uint8 and img.ndim == 2 and img.shape[1] == cols * 5
    for k in range(n):  # tile k at (k % cols, k // cols), as the page reads it
        r, c = divmod(k, cols)
        assert np.array_equal(img[r * 7:(r + 1) * 7, c * 5:(c + 1) * 5], q[k])


def test_rgb_pixels_atlas_round_trips():
    px = np.random.default_rng(0).integers(0, 256, size=(3, 4, 6, 3), dtype=np.uint8)
    img = _decode(png_data_uri(atlas(px)))
    assert np.array_equal(img[:4, :6], px[0]) and np.array_equal(img[:4, 6:12], px[1])
    assert np.array_equal(img[4:8, :6], px[2]) and not img[4:8, 6:].any()


def test_colour_tables_are_matplotlibs_sampled_at_256():
    import matplotlib

    luts = colormaps()
    assert set(luts) == set(CMAP_NAMES) and "cividis" in luts  # the colour-blind-safe choice
    for name, lut in luts.items():
        assert len(lut) == 256 and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in lut)
        for k in (0, 77, 128, 255):
            want = [round(v * 255) for v in matplotlib.colormaps[name](k / 255)[:3]]
            assert lut[k] == want, (name, k)
    assert luts["gray"][0] == [0, 0, 0] and luts["gray"][255] == [255, 255, 255]


def _run(path):
    return Run(path=path, model=nn.Identity(), classes=["a"], config=None, meta={})


def test_show_frames_the_report_file(tmp_path, monkeypatch):
    page = tmp_path / 'run "x"' / "report" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text("<!doctype html>")
    monkeypatch.chdir(tmp_path)
    frame = _run(tmp_path / 'run "x"').show(height=600)
    html = frame._repr_html_()
    assert '<iframe src="run &quot;x&quot;/report/index.html"' in html and 'height="600"' in html
    assert page.resolve().as_uri() in html  # file:///.../run%20%22x%22/report/index.html


def test_show_without_a_report_names_the_command(tmp_path):
    with pytest.raises(CnnlensError, match=r"index\.html does not exist.*`cnnlens report .*run`"):
        _run(tmp_path / "run").show()
