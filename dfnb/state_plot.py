"""Figures of what the model carries from hop to hop: LSNR traces and GRU hidden states (heatmap, norm, PCA path).

Same house rules as :mod:`dfnb.plot` (``ax=None`` makes a figure, every helper returns the Figure, titles
carry the key parameters). A state trace is ``[T, H]`` (hops × hidden units), e.g. ``Stream(...,
probes=["enc_emb_gru"]).trace.states["enc_emb_gru"][:, -1, 0]`` or ``enhance_offline(...,
probes=True).gru[name]``.

Notebook: 03_compare_outputs
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .errors import StateError
from .plot import figure_axes, titled

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_lsnr", "plot_hidden_heatmap", "plot_state_norm", "plot_pca_path"]


def _time_lines(ax, traces: Mapping[str, np.ndarray], hop_s: float, ylabel: str):
    for name, y in traces.items():
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        ax.plot(np.arange(y.size) * hop_s, y, label=name, lw=1.2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if traces:
        ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def plot_lsnr(lsnrs: Mapping[str, np.ndarray], hop_s: float = 0.01, *, ax=None, title: str = "") -> Figure:
    """LSNR traces (the model's local SNR estimate, one value per hop) against time.

    Parameters
    ----------
    lsnrs : mapping of str to array
        One trace per label (e.g. offline's ``lsnr`` probe and a runtime's ``trace.lsnr``).
    hop_s : float
        Seconds per value.
    ax, title
        Axes to draw on (None: a new figure) and a title put before the hop size.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_lsnr({"offline": off.lsnr, "stream": stream.trace.lsnr})  # doctest: +SKIP
    """
    fig, ax = figure_axes(ax)
    _time_lines(ax, lsnrs, hop_s, "LSNR (dB)")
    ax.set_title(titled(title, f"LSNR, hop {1000 * hop_s:g} ms"))
    return fig


def _states(h, name: str = "h") -> np.ndarray:
    a = np.asarray(h, dtype=np.float64)
    if a.ndim != 2 or 0 in a.shape:
        raise StateError(f"{name} must be a non-empty [T, H] array (hops × hidden units), got shape {a.shape}")
    return a


def plot_hidden_heatmap(h: np.ndarray, hop_s: float = 0.01, *, ax=None, title: str = "", vmin: float = -1,
                        vmax: float = 1) -> Figure:
    """GRU hidden state ``[T, H]`` as an image: time across, hidden unit up, diverging colours in [vmin, vmax].

    Parameters
    ----------
    h : array [T, H]
        One hidden-state trace.
    hop_s : float
        Seconds per hop.
    ax, title, vmin, vmax
        Axes (None: a new figure), title, colour limits (shared between panels that are compared).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    StateError
        ``h`` is not a non-empty 2-D array.

    Examples
    --------
    >>> fig = plot_hidden_heatmap(off.gru["enc_emb_gru"], title="encoder GRU")  # doctest: +SKIP
    """
    a = _states(h)
    fig, ax = figure_axes(ax)
    extent = (0.0, a.shape[0] * hop_s, -0.5, a.shape[1] - 0.5)
    im = ax.imshow(a.T, origin="lower", aspect="auto", extent=extent, cmap="RdBu_r", vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("hidden unit")
    ax.set_title(titled(title, f"H={a.shape[1]}, T={a.shape[0]} hops"))
    fig.colorbar(im, ax=ax, label="activation")
    return fig


def plot_state_norm(states: Mapping[str, np.ndarray], hop_s: float = 0.01, *, ax=None, title: str = "") -> Figure:
    """L2 norm of each hidden-state trace ``[T, H]`` over time.

    Parameters
    ----------
    states : mapping of str to array [T, H]
        One trace per label.
    hop_s, ax, title
        Seconds per hop, axes (None: a new figure), title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_state_norm({"stateless": h_naive, "full": h_exact})  # doctest: +SKIP
    """
    norms = {k: np.linalg.norm(_states(v, k), axis=1) for k, v in states.items()}
    fig, ax = figure_axes(ax)
    _time_lines(ax, norms, hop_s, "‖h‖₂")
    ax.set_title(titled(title, "hidden-state L2 norm"))
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


def plot_pca_path(states: Mapping[str, np.ndarray], *, ax=None, title: str = "") -> Figure:
    """Paths of several hidden-state traces in one 2-D PCA plane (fitted on all of them); o = start, ■ = end.

    Parameters
    ----------
    states : mapping of str to array [T, H]
        Traces of one GRU (same ``H``), e.g. the same GRU in two hosts.
    ax, title
        Axes (None: a new figure) and title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    StateError
        No traces, or traces of different hidden sizes.

    Examples
    --------
    >>> fig = plot_pca_path({"stateless": h_naive, "full": h_exact}, title="df_dec GRU")  # doctest: +SKIP
    """
    if not states:
        raise StateError("plot_pca_path needs at least one [T, H] state trace: pass {name: states}")
    paths, ratio = _pca_2d(states)
    fig, ax = figure_axes(ax, figsize=(5.5, 5.0))
    for name, p in paths.items():
        (line,) = ax.plot(p[:, 0], p[:, 1], lw=1.0, label=name, gid=f"pca-path:{name}")
        ax.plot(p[0, 0], p[0, 1], "o", color=line.get_color(), ms=7, mfc="none")
        ax.plot(p[-1, 0], p[-1, 1], "s", color=line.get_color(), ms=6)
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% var)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% var)")
    ax.set_title(titled(title, "PCA of hidden states (o start, ■ end)"))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return fig
