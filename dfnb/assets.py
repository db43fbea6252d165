"""Where dfnb's inputs come from: the repository root, the shared assets folder, a mirror, and the one sha256.

Weights (official ONNX release tarballs) and audio are never part of the repository. They are looked up in a
mirror (``$DFNB_MIRROR``, laid out like ``../shared``) and then in ``<repo>/../shared``; every file is
checked against its sha256 (:func:`sha256_file`). :mod:`dfnb.releases` finds weights, :mod:`dfnb.clips` audio;
what dfnb builds from them (imported checkpoints, exports) goes under :func:`models_dir`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["REPO_ROOT", "MIRROR_ENV", "shared_dir", "mirror_dir", "models_dir", "sha256_file"]

REPO_ROOT = Path(__file__).resolve().parent.parent
MIRROR_ENV = "DFNB_MIRROR"
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def shared_dir() -> Path:
    """``<repo>/../shared``: official releases under ``models/onnx-official``, audio under ``data``."""
    return REPO_ROOT.parent / "shared"


def mirror_dir() -> Path | None:
    """The folder named by ``$DFNB_MIRROR`` (laid out like ``../shared``), or None when unset."""
    m = os.environ.get(MIRROR_ENV)
    return Path(m) if m else None


def models_dir(given: Path | str | None = None) -> Path:
    """Where dfnb keeps imported models and exports: ``given``, else ``$DFNB_MODELS_DIR``, else ``<repo>/models``."""
    return Path(given or os.environ.get("DFNB_MODELS_DIR") or REPO_ROOT / "models")


def sha256_file(path: Path | str) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks, memoised per (path, mtime, size)."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]
