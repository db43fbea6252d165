"""Named audio clips: what each one is (``data/manifest.json``), where its file is, and loading it checked.

The audio never lives in this repository. Each manifest entry names a file relative to a *data root*; the
roots are searched in this order (see :func:`data_roots`):

1. ``$DFNB_MIRROR/data`` — when the ``DFNB_MIRROR`` environment variable is set (a folder laid out like
   ``../shared``: ``<mirror>/data/voicebank-demand/...``);
2. ``<repo>/../shared/data`` — when that folder exists beside the checkout.

The first root that holds the file wins, and its sha256 must match the manifest (checked once per process
per file, unless the file changes) — a mismatch is a :class:`~dfnb.errors.ChecksumError`, never a silent
fallback to another root.

Notebook: 00_tour
"""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dfnb.args import shown
from dfnb.assets import MIRROR_ENV, REPO_ROOT, sha256_file, shared_dir
from dfnb.audio import read_audio
from dfnb.errors import AssetNotFoundError, AudioError, ChecksumError

__all__ = [
    "MIRROR_ENV",
    "KINDS",
    "data_roots",
    "manifest_path",
    "clip_names",
    "clip_info",
    "clip_path",
    "load_clip",
    "load_pair",
]

KINDS = ("noisy", "clean", "noise", "rir", "enhanced")
"""Clip kinds: noisy speech, clean reference, noise only, room impulse response, another system's output."""

_VERIFIED: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256) already checked


def _shared_data() -> Path:
    return shared_dir() / "data"


def manifest_path() -> Path:
    """``<repo>/data/manifest.json``."""
    return REPO_ROOT / "data" / "manifest.json"


def data_roots() -> list[tuple[str, Path]]:
    """The data roots searched, in order, as ``(label, path)``: ``$DFNB_MIRROR/data`` (if the variable is set),
    then ``<repo>/../shared/data`` (if it exists)."""
    roots = []
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        roots.append((f"${MIRROR_ENV}", Path(mirror).expanduser() / "data"))
    shared = _shared_data()
    if shared.is_dir():
        roots.append(("../shared", shared))
    return roots


@cache
def _manifest() -> dict[str, dict[str, Any]]:
    p = manifest_path()
    try:
        entries = json.loads(p.read_text(encoding="utf-8"))["clips"]
        return {e["name"]: e for e in entries}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AssetNotFoundError(f"the clip manifest {p} is missing or unreadable ({e}); restore it with "
                                 "`git checkout -- data/manifest.json`.") from None


def clip_names(kind: str | None = None) -> list[str]:
    """Names of all clips in manifest order, or only those of one ``kind`` (one of :data:`KINDS`)."""
    if kind is not None and kind not in KINDS:
        raise AssetNotFoundError(f"there is no clip kind {shown(kind)}; kinds are {', '.join(KINDS)} "
                                 "(or pass kind=None for all clips).")
    return [n for n, e in _manifest().items() if kind is None or e["kind"] == kind]


def clip_info(name: str) -> dict[str, Any]:
    """A copy of the manifest entry: name, file, sha256, source, licence, clean, kind, duration_s, sr, ..."""
    m = _manifest()
    if not isinstance(name, str) or name not in m:
        raise AssetNotFoundError(f"unknown clip {shown(name)}; known clips: {', '.join(m)} "
                                 f"(see {manifest_path()}).")
    return copy.deepcopy(m[name])


def _verify(path: Path, info: dict[str, Any], label: str) -> None:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, info["sha256"])
    if key in _VERIFIED:
        return
    actual = sha256_file(path)
    if actual != info["sha256"]:
        raise ChecksumError(
            f"{path} (clip {info['name']!r}, found in {label}) has sha256 {actual}, but {manifest_path().name} "
            f"expects {info['sha256']}: the file is corrupt, truncated or a different file. Restore it from its "
            f"source ({info['source']}) or remove it from {label} so the next data root is used.")
    _VERIFIED.add(key)


def clip_path(name: str) -> Path:
    """Path of the clip's file in the first data root holding it, sha256-verified (see module doc)."""
    info = clip_info(name)
    tried = []
    for label, root in data_roots():
        p = root / info["file"]
        if p.is_file():
            _verify(p, info, label)
            return p
        tried.append(f"{label}: {p} (no such file)")
    if not os.environ.get(MIRROR_ENV):
        tried.append(f"${MIRROR_ENV}: not set")
    if not _shared_data().is_dir():
        tried.append(f"../shared: {_shared_data()} (folder does not exist)")
    raise AssetNotFoundError(
        f"clip {shown(name)} ({info['file']}) was not found. Tried:\n  " + "\n  ".join(tried) +
        f"\nTo fix: set {MIRROR_ENV} to a folder laid out like ../shared (holding data/{info['file']}), "
        f"or put the shared folder beside the checkout ({_shared_data()}). Source of the file: {info['source']}.")


def load_clip(name: str) -> tuple[np.ndarray, int]:
    """The clip as (float32 mono samples, sample rate)."""
    return read_audio(clip_path(name))


def load_pair(name: str) -> tuple[np.ndarray, np.ndarray | None, int]:
    """A clip and its clean reference: (noisy, clean or None when there is none, sample rate)."""
    info = clip_info(name)
    noisy, sr = load_clip(name)
    if not info.get("clean"):
        return noisy, None, sr
    clean, sr_c = load_clip(info["clean"])
    if sr_c != sr or len(clean) != len(noisy):
        raise AudioError(f"clip {shown(name)} ({len(noisy)} samples @ {sr} Hz) and its clean reference "
                         f"{info['clean']!r} ({len(clean)} samples @ {sr_c} Hz) are not sample-aligned; "
                         f"fix the 'clean' link in {manifest_path()}.")
    return noisy, clean, sr
