"""Hidden-state figures: a GRU's state over time as a heatmap, its norm, and its path in a 2-D PCA plane.

A DeepFilterNet GRU has hundreds of units and a clip has hundreds of hops: drawn whole, a heatmap or a PCA
path is too dense to show anything. Every helper here can therefore keep a time ``window`` (seconds) and the
heatmap the ``units`` most active ones; chunk starts are marked (``boundaries``, seconds, output time —
:func:`dfnb.metrics.boundary_times`) so a reset at every call is visible as a seam.

Notebook: 03_compare_outputs
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .errors import StateError
from .figure import axes_for, join_title
from .plot_curves import styled_lines

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["top_units", "plot_hidden_heatmap", "plot_state_norm", "plot_pca_path"]


def _states(h, name: str = "h") -> np.ndarray:
    a = np.asarray(h, dtype=np.float64)
    if a.ndim != 2 or 0 in a.shape:
        raise StateError(f"{name} must be a non-empty [T, H] array (hops × hidden units), got shape {a.shape}")
    return a


def _window(n: int, hop_s: float, window) -> slice:
    if window is None:
        return slice(0, n)
    lo, hi = (max(0, int(round(t / hop_s))) for t in window)
    if hi <= lo:
        raise StateError(f"window must be (start, stop) seconds with stop > start, got {window}")
    return slice(min(lo, n - 1), min(hi, n))


def top_units(*traces, k: int = 32) -> np.ndarray:
    """Indices of the ``k`` hidden units with the largest variance over all the ``[T, H]`` traces, in unit order."""
    a = np.concatenate([_states(t) for t in traces])
    k = min(int(k), a.shape[1])
    return np.sort(np.argsort(a.var(axis=0))[::-1][:k])


def _marks(ax, boundaries, window) -> None:
    if boundaries is None:
        return
    b = np.asarray(boundaries, dtype=np.float64)
    if window is not None:
        b = b[(b >= window[0]) & (b <= window[1])]
    for t in b:
        ax.axvline(t, color="k", ls=(0, (3, 2)), lw=1.0, alpha=0.8, gid="chunk-boundary")


def plot_hidden_heatmap(h: np.ndarray, hop_s: float = 0.01, *, ax=None, title: str = "", vmin: float = -1,
                        vmax: float = 1, units=None, window=None, boundaries=None, colorbar: bool = True) -> Figure:
    """GRU hidden state ``[T, H]`` as an image: time across, hidden unit up, diverging colours in [vmin, vmax].

    ``units``: indices of the units to show (e.g. :func:`top_units`); ``window``: (start, stop) in seconds;
    ``boundaries``: chunk starts (seconds) drawn as dotted lines.
    """
    a = _states(h)
    sel = np.arange(a.shape[1]) if units is None else np.asarray(units, dtype=int)
    w = _window(a.shape[0], hop_s, window)
    img = a[w][:, sel]
    fig, ax = axes_for(ax)
    extent = (w.start * hop_s, w.stop * hop_s, -0.5, len(sel) - 0.5)
    im = ax.imshow(img.T, origin="lower", aspect="auto", extent=extent, cmap="RdBu_r", vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    _marks(ax, boundaries, (w.start * hop_s, w.stop * hop_s))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("hidden unit" if units is None else f"{len(sel)} most active units")
    shown = f"{len(sel)} of {a.shape[1]} units" if units is not None else f"H={a.shape[1]}"
    ax.set_title(join_title(title, f"{shown}, {w.stop - w.start} of {a.shape[0]} hops"))
    if colorbar:
        fig.colorbar(im, ax=ax, label="activation")
    return fig


def plot_state_norm(states: Mapping[str, np.ndarray], hop_s: float = 0.01, *, ax=None, title: str = "",
                    window=None, boundaries=None) -> Figure:
    """L2 norm of each hidden-state trace ``[T, H]`` over time (distinct styles; the legend names hidden lines)."""
    norms = {k: np.linalg.norm(_states(v, k), axis=1) for k, v in states.items()}
    fig, ax = axes_for(ax)
    styled_lines(ax, {k: np.arange(v.size) * hop_s for k, v in norms.items()}, norms, tol=1e-3)
    _marks(ax, boundaries, window)
    if window is not None:
        ax.set_xlim(*window)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("‖h‖₂")
    if norms:
        ax.legend(loc="best", fontsize="x-small")
    ax.grid(alpha=0.3)
    ax.set_title(join_title(title, "hidden-state L2 norm"))
    return fig


def _pca_2d(states: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Project every ``[T, H]`` trace onto the top two principal axes of their concatenation.

    Signs are fixed so that each axis's largest loading is positive. Returns the projections and the
    explained-variance ratio of the two axes.
    """
    arrays = {k: _states(v, k) for k, v in states.items()}
    widths = {a.shape[1] for a in arrays.values()}
    if len(widths) != 1:
        raise StateError(f"all state traces must have the same hidden size H for a shared PCA, got {sorted(widths)}")
    stacked = np.concatenate(list(arrays.values()))
    mean = stacked.mean(axis=0)
    _, s, vt = np.linalg.svd(stacked - mean, full_matrices=False)
    comps = np.zeros((2, stacked.shape[1]))
    k = min(2, vt.shape[0])
    comps[:k] = vt[:k]
    for i in range(k):
        if comps[i, np.argmax(np.abs(comps[i]))] < 0:
            comps[i] = -comps[i]
    var = s**2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return {name: (a - mean) @ comps.T for name, a in arrays.items()}, ratio


def plot_pca_path(states: Mapping[str, np.ndarray], *, ax=None, title: str = "", marks=None) -> Figure:
    """Paths of several hidden-state traces in one 2-D PCA plane (fitted on all of them); o = start, ■ = end.

    ``marks``: hop indices (e.g. the first hop of every chunk) drawn as filled dots on every path, so a state
    that returns to the same place at every chunk start shows as a cluster of dots.
    """
    if not states:
        raise StateError("plot_pca_path needs at least one [T, H] state trace: pass {name: states}")
    paths, ratio = _pca_2d(states)
    fig, ax = axes_for(ax, figsize=(5.5, 5.0))
    for name, p in paths.items():
        (line,) = ax.plot(p[:, 0], p[:, 1], lw=0.8, alpha=0.8, label=name, gid=f"pca-path:{name}")
        ax.plot(p[0, 0], p[0, 1], "o", color=line.get_color(), ms=8, mfc="none")
        ax.plot(p[-1, 0], p[-1, 1], "s", color=line.get_color(), ms=6)
        if marks is not None:
            idx = np.asarray([i for i in marks if 0 <= i < len(p)], dtype=int)
            ax.scatter(p[idx, 0], p[idx, 1], s=14, color=line.get_color(), edgecolor="k", lw=0.4, zorder=3,
                       gid=f"pca-marks:{name}")
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% var)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% var)")
    detail = "PCA (o start, ■ end" + (", • call starts)" if marks is not None else ")")
    ax.set_title(join_title(title, detail))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return fig
