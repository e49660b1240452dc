"""Decode image files to one uint8 tensor, in parallel threads (Pillow releases the GIL).

JPEGs are decoded at a reduced DCT scale when the target is smaller (Pillow's ``draft``), then
resized with Pillow's antialiased bilinear filter, ignoring the aspect ratio (as Keras'
``flow_from_directory(target_size=...)`` does). Grey images become 3 channels by repetition when
3 are asked for, colour images become grey by ITU-R 601-2 luma when 1 is asked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import cache as _cache
from ..errors import CnnlensError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                              ".pgm"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


@dataclass
class Decoded:
    """Result of decoding ``files``.

    Attributes:
        images: ``uint8 [n_ok, C, H, W]``, in the order of ``ok``.
        ok: indices into ``files`` of the decoded files.
        bad: index into ``files`` -> why it could not be decoded.
        from_cache: whether the pixels came from the cache.
    """

    images: torch.Tensor
    ok: list[int]
    bad: dict[int, str] = field(default_factory=dict)
    from_cache: bool = False


def _workers(workers: int | None) -> int:
    return max(1, workers or os.cpu_count() or 1)


def probe(path: Path) -> tuple[tuple[int, int], int] | str:
    """``((width, height), channels)`` from the file header, or the reason it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size, (1 if im.mode in _GREY_MODES else 3)
    except UnidentifiedImageError:
        return "not an image Pillow can read (damaged, or not an image file)"
    except (OSError, ValueError, SyntaxError) as e:
        return f"cannot be read as an image ({e})"


def _decode_one(path: Path, size: tuple[int, int], channels: int, out: np.ndarray) -> str | None:
    from PIL import Image, UnidentifiedImageError

    w, h = size
    try:
        with Image.open(path) as im:
            mode = "L" if channels == 1 else "RGB"
            if im.format == "JPEG":
                im.draft(mode, (w, h))
            im = im.convert(mode)
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            a = np.asarray(im)
    except UnidentifiedImageError:
        return "not an image Pillow can read (damaged, or not an image file)"
    except Image.DecompressionBombError as e:
        return f"is too large to decode safely ({e})"
    except (OSError, ValueError, SyntaxError) as e:  # truncated files raise OSError
        return f"cannot be decoded ({e}); the file is damaged or truncated"
    if channels == 3:
        out[...] = a.transpose(2, 0, 1)
    else:
        out[0] = a
    return None


def decode_files(files: list[Path], size: tuple[int, int], channels: int, *, workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Decoded:
    """Decode ``files`` to ``uint8 [n_ok, channels, H, W]`` with ``size = (W, H)``, in threads."""
    if channels not in (1, 3):
        raise CnnlensError(f"channels must be 1 or 3; got {channels!r}")
    w, h = size
    out = np.empty((len(files), channels, h, w), np.uint8)
    bad: dict[int, str] = {}
    done = 0

    def job(i: int) -> tuple[int, str | None]:
        return i, _decode_one(files[i], size, channels, out[i])

    with ThreadPoolExecutor(_workers(workers)) as ex:
        for i, why in ex.map(job, range(len(files))):
            if why is not None:
                bad[i] = why
            done += 1
            if progress is not None and (done % 64 == 0 or done == len(files)):
                progress(done, len(files))
    ok = [i for i in range(len(files)) if i not in bad]
    images = torch.from_numpy(out if not bad else out[ok])
    return Decoded(images=images, ok=ok, bad=bad)


def common_size(root: Path, files: list[Path], sizes: list[tuple[int, int]], default_size: int
                ) -> tuple[tuple[int, int], str]:
    """The ``(W, H)`` to decode ``files`` (of header ``sizes``) at when no size was asked for, and a
    warning ("" when every image has that size).

    One size: that size. Several: the size more than half of the images share (the odd ones are
    resized to it), else ``default_size`` squared. The warning names the odd images (count and the
    first five), the chosen size and how to choose it.
    """
    if not sizes:
        return (default_size, default_size), ""
    tally: dict[tuple[int, int], int] = {}
    for wh in sizes:
        tally[wh] = tally.get(wh, 0) + 1
    top, n = max(tally.items(), key=lambda kv: kv[1])
    if len(tally) == 1:
        return top, ""
    if 2 * n > len(sizes):
        chosen, why = top, f"the size of {n} of the {len(sizes)} images"
    else:
        chosen, why = (default_size, default_size), f"no size is shared by most of the {len(sizes)} images"
    odd = [(f, wh) for f, wh in zip(files, sizes) if wh != chosen]
    shown = ", ".join(f"{_rel(f, root)} ({w}x{h})" for f, (w, h) in odd[:5])
    shown += ", ..." if len(odd) > 5 else ""
    note = (f"{root}: images have {len(tally)} different sizes; {len(odd)} image(s) are resized to "
            f"{chosen[0]}x{chosen[1]} ({why}): {shown}. Set the size explicitly with image_size=N "
            "(CLI: --image-size N) for N x N")
    return chosen, note


def _rel(f: Path, root: Path) -> str:
    try:
        return str(f.relative_to(root))
    except ValueError:
        return str(f)


def decode_folder(kind: str, root: Path, files: list[Path], *, size: tuple[int, int] | None,
                  channels: int | None, cache: bool = True, workers: int | None = None,
                  default_size: int = 128,
                  progress: Callable[[int, int], None] | None = None) -> Decoded:
    """Decode ``files`` under ``root`` through the cache.

    ``size=None`` keeps the images' own size when all share one, else :func:`common_size` (the
    size most of them share, else ``default_size`` squared, with a warning naming the odd ones);
    ``channels=None`` gives 1 when every image is grey, else 3. Both are
    read from the file headers. Files that cannot be read are reported in ``Decoded.bad``.
    """
    # "sizing": the rule of common_size, so pixels cached under the older rule (any mix -> 128) are not reused
    options = {"size": size, "channels": channels, "default_size": default_size, "sizing": "common"}
    key = _cache.fingerprint(kind, root, files, options) if cache else None
    if key is not None:
        hit = _cache.load(key)
        if hit is not None:
            tensors, meta = hit
            bad = {int(k): v for k, v in meta.get("bad", {}).items()}
            ok = tensors["ok"].tolist()
            if len(ok) + len(bad) == len(files):
                if meta.get("note"):
                    log.warning("%s", meta["note"])  # the same warning as the first time
                return Decoded(images=tensors["images"], ok=ok, bad=bad, from_cache=True)
    bad: dict[int, str] = {}
    todo = list(range(len(files)))
    note = ""
    if size is None or channels is None:
        with ThreadPoolExecutor(_workers(workers)) as ex:
            probes = list(ex.map(probe, files))
        for i, pr in enumerate(probes):
            if isinstance(pr, str):
                bad[i] = pr
        good = [pr for pr in probes if not isinstance(pr, str)]
        todo = [i for i in todo if i not in bad]
        if size is None:
            size, note = common_size(root, [files[i] for i in todo], [pr[0] for pr in good], default_size)
            if note:
                log.warning("%s", note)
        if channels is None:
            channels = 1 if good and all(pr[1] == 1 for pr in good) else 3
    dec = decode_files([files[i] for i in todo], size, channels, workers=workers, progress=progress)
    for j, why in dec.bad.items():
        bad[todo[j]] = why
    ok = [todo[j] for j in dec.ok]
    result = Decoded(images=dec.images, ok=ok, bad=dict(sorted(bad.items())))
    if key is not None:
        _cache.save(key, {"images": result.images, "ok": torch.tensor(ok, dtype=torch.int64)},
                    {"bad": {str(k): v for k, v in result.bad.items()}, "root": str(root), "note": note})
    return result
