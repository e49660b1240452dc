"""A cache of decoded image folders: one safetensors file of uint8 pixels per source.

The key is a SHA-256 over the source's root, every file's relative path, size and modification
time (ns), and the decoding options; any change to the folder gives a new key, so a stale cache is
never used. Cache files live in ``$CNNLENS_CACHE``, else ``$XDG_CACHE_HOME/cnnlens``, else
``~/.cache/cnnlens`` (never inside the user's data folder), are written atomically, and a newer
cache of the same root replaces the older one. The cache is an optimization: a cache that cannot
be read or written is logged and ignored, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import write_bytes

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where cache files go: ``$CNNLENS_CACHE``, ``$XDG_CACHE_HOME/cnnlens`` or ``~/.cache/cnnlens``."""
    env = os.environ.get("CNNLENS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "cnnlens"


@dataclass(frozen=True)
class CacheKey:
    """Identifies one decoded source: ``prefix`` names the root, ``digest`` its exact content."""

    prefix: str
    digest: str

    @property
    def filename(self) -> str:
        return f"{self.prefix}-{self.digest[:32]}.safetensors"


def fingerprint(kind: str, root: Path, files: list[Path], options: dict[str, object]) -> CacheKey:
    """Key over ``root``, each file's relative path, size and mtime (ns), and ``options``.

    Raises ``FileNotFoundError`` naming a file that vanished while being listed.
    """
    root = root.resolve()
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, kind, str(root), options], sort_keys=True, default=str).encode())
    parts = []
    for f in files:
        name = os.path.abspath(f)
        try:
            st = os.stat(name)
        except FileNotFoundError:
            raise FileNotFoundError(f"{f} disappeared while the folder was being read; retry") from None
        parts.append(f"\0{os.path.relpath(name, root)}\0{st.st_size}\0{st.st_mtime_ns}")
    h.update("".join(parts).encode())
    root_id = hashlib.sha256(f"{kind}\0{root}".encode()).hexdigest()[:12]
    return CacheKey(prefix=f"{kind}-{root_id}", digest=h.hexdigest())


def load(key: CacheKey) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The cached tensors and metadata for ``key``, or None (absent, damaged or another key)."""
    path = cache_dir() / key.filename
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("cnnlens", "{}"))
            if meta.get("digest") != key.digest or meta.get("version") != CACHE_VERSION:
                return None
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as e:  # a damaged cache is only a slower load
        log.warning("ignoring unreadable cache %s (%s); decoding again", path, e)
        return None
    log.debug("cache hit %s", path)
    return tensors, meta


def save(key: CacheKey, tensors: dict[str, torch.Tensor], meta: dict) -> Path | None:
    """Write the cache file atomically and drop older caches of the same root; None on failure."""
    from safetensors.torch import save as st_save

    folder = cache_dir()
    path = folder / key.filename
    try:
        blob = st_save({k: v.contiguous() for k, v in tensors.items()},
                       metadata={"cnnlens": json.dumps({**meta, "digest": key.digest,
                                                        "version": CACHE_VERSION})})
        write_bytes(path, blob)
        for old in folder.glob(f"{key.prefix}-*.safetensors"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:
        log.warning("could not write the decode cache %s (%s); the next load decodes again", path, e)
        return None
    log.debug("cached %s", path)
    return path
