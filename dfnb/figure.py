"""One figure: the pyplot backend choice, an axis to draw on, titles, number formats and saving as PNG.

The shared base of :mod:`dfnb.plot` (spectra), :mod:`dfnb.plot_curves` (lines over time and chunk size) and
:mod:`dfnb.plot_states` (hidden states). matplotlib is imported only when a helper runs; if no backend was
chosen by then, Agg is used.

Explained where the figures appear: Notebook 03 (through :mod:`dfnb.plot`).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from .errors import ExportError
from .placement import marker_text

__all__ = ["pyplot", "axes_for", "join_title", "fmt_db", "save_figure"]


def pyplot():
    """Import pyplot, choosing Agg only when nobody (MPLBACKEND, rcParams, an earlier pyplot) chose a backend."""
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        import matplotlib

        unresolved = getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: "?")  # private, mpl >= 3.7
        if unresolved() is None:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def axes_for(ax=None, figsize=(8.0, 3.5)):
    """``(figure, ax)``: the given axis and its figure, or a new constrained-layout figure with one axis."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = pyplot().subplots(figsize=figsize, layout="constrained")
    return fig, ax


def join_title(title: str, detail: str) -> str:
    """``"title — detail"`` (either may be empty)."""
    return f"{title} — {detail}" if title and detail else (title or detail)


def fmt_db(v: float) -> str:
    """``"inf"`` or the value with one decimal."""
    return "inf" if v == math.inf else f"{v:.1f}"


def save_figure(fig, path) -> Path:
    """Write ``fig`` as PNG (dpi 120) to ``path`` (suffix forced to .png), creating the parent directory.

    The PNG carries dfnb's tag (a ``Comment`` text chunk), so dfnb may replace it later (:mod:`dfnb.placement`).
    Returns the path written; raises :class:`~dfnb.errors.ExportError` when it cannot be written.

    Examples
    --------
    >>> save_figure(plot_spectrograms({"noisy": noisy}), "out/noisy")  # doctest: +SKIP
    PosixPath('out/noisy.png')
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        p = p.with_suffix(".png")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, format="png", dpi=120, bbox_inches="tight", metadata={"Comment": marker_text()})
    except OSError as e:
        raise ExportError(f"cannot write figure to {p}: {e.strerror or e}; choose a writable directory") from e
    return p
