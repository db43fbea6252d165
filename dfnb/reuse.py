"""Find an export of these weights or make one: how notebooks, the demo and the study get a model folder
without exporting the same variant twice and without replacing anything that is already there.

Notebook: 02_stateful_export
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .errors import DfnbError, ExportError
from .export import default_folder, export_model
from .folder import inspect_folder

__all__ = ["ensure_export"]


def ensure_export(loaded: Any, variant: str, root: Path | str = "models", *, say=print) -> Path:
    """``root/<short>_<variant>`` if it already holds this variant of these weights, else a fresh export.

    A folder that exists but holds something else (another variant, other weights, anything unreadable) is
    never replaced: the export goes to a new temporary folder instead, and ``say`` tells where.

    Examples
    --------
    >>> ensure_export(load_model("DeepFilterNet3"), "full", "models")  # doctest: +SKIP
    PosixPath('models/dfn3_full')

    Notebook: 02_stateful_export
    """
    out = default_folder(loaded.name, variant, root)
    if out.exists():
        why = _mismatch(out, loaded, variant)
        if why is None:
            say(f"reusing {out} (already exported from the same weights)")
            return out
        other = default_folder(loaded.name, variant, tempfile.mkdtemp(prefix="dfnb_export_"))
        say(f"{out} {why}; left untouched, exporting to {other} instead")
        out = other
    try:
        return export_model(loaded, variant, out)
    except ExportError:  # another run put its export there meanwhile: reuse it if it is this one
        if out.exists() and _mismatch(out, loaded, variant) is None:
            say(f"reusing {out} (exported meanwhile by another run from the same weights)")
            return out
        raise


def _mismatch(folder: Path, loaded: Any, variant: str) -> str | None:
    """None if ``folder`` is a usable export of ``variant`` of ``loaded``'s weights, else why not."""
    try:
        man = inspect_folder(folder).manifest or {}
    except DfnbError as e:
        return f"is not usable ({str(e).splitlines()[0][:80]})"
    if man.get("variant") == variant and man.get("weights", {}).get("sha256") == loaded.source_sha256:
        return None
    return "holds another variant or other weights"
