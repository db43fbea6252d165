"""Figure helpers for comparing outputs: spectrograms on one dB scale, error vs time and chunk size, latency.

House rules: every helper takes ``ax=None`` (it makes its own figure when None) and returns the Figure;
panels that are compared share one dB scale (``vmin``/``vmax`` or ``dynamic_range``, see
``shared_db_limits``); titles carry the key parameters (hop, chunk size, SNR, budget...); ``title`` is put
before them. Signals are mono 1-D arrays at ``sr`` (48 kHz by default). matplotlib is imported only when a
helper runs; if no backend was chosen by then, Agg is used. Figures of the model's states (LSNR, GRU hidden
states) are in :mod:`dfnb.state_plot`, built on :func:`figure_axes` and :func:`titled`.

Notebook: 03_compare_outputs
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import AudioError, DfnbError, ExportError
from .metrics import SNR_CAP_DB, as_signal, error_per_hop, snr_of_difference
from .placement import marker_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DB_FLOOR", "spectrogram_db", "shared_db_limits", "plot_spectrogram", "plot_spectrograms",
    "plot_difference_spectrogram", "plot_error_vs_time", "plot_error_vs_chunk", "plot_latency", "save_figure",
    "figure_axes", "titled", "pyplot",
]

#: Lowest value spectrograms take, in dB (power re. a full-scale sine).
DB_FLOOR = -120.0
_HOP = 480  # DeepFilterNet's hop at 48 kHz; spectrogram panels use it
_SPEC_CMAP = "magma"


def _pyplot():
    """Import pyplot, choosing Agg only when nobody (MPLBACKEND, rcParams, an earlier pyplot) chose a backend."""
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        import matplotlib

        unresolved = getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: "?")  # private, mpl >= 3.7
        if unresolved() is None:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pyplot():
    """matplotlib.pyplot, with Agg chosen only when nobody chose a backend (for figure modules beside this one)."""
    return _pyplot()


def figure_axes(ax, figsize=(8.0, 3.5)):
    """``(figure, axes)``: those of ``ax``, or a new constrained-layout figure of ``figsize`` when ``ax`` is None."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return fig, ax


def titled(title: str, detail: str) -> str:
    """``"title — detail"`` (either alone when the other is empty): a caller's title before the key parameters."""
    return f"{title} — {detail}" if title and detail else (title or detail)


def _fmt_db(v: float) -> str:
    return "inf" if v == math.inf else f"{v:.1f}"


def spectrogram_db(x, sr: int = 48000, n_fft: int = 960, hop: int = 480) -> np.ndarray:
    """Power spectrogram ``[F = n_fft//2 + 1, T = 1 + len//hop]`` in dB, Hann window, centred frames.

    0 dB is a full-scale sine; values are floored at -120 dB. ``sr`` is accepted for symmetry with the
    plot helpers (the numbers do not depend on it).
    """
    a = as_signal(x, "signal")
    if n_fft <= 0 or hop <= 0:
        raise AudioError(f"n_fft and hop must be positive, got n_fft={n_fft}, hop={hop}")
    padded = np.pad(a, (n_fft // 2, n_fft - n_fft // 2))  # len + n_fft samples → T = 1 + len//hop frames
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    spec = np.fft.rfft(frames * window, axis=1) * (2.0 / window.sum())
    power = spec.real**2 + spec.imag**2
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(power)
    return np.maximum(db, DB_FLOOR).T


def shared_db_limits(*specs_db, dynamic_range: float = 80.0) -> tuple[float, float]:
    """Common ``(vmin, vmax)`` for several dB spectrograms: the overall max (rounded up) and ``dynamic_range`` below."""
    if len(specs_db) == 1 and isinstance(specs_db[0], (list, tuple)):
        specs_db = tuple(specs_db[0])
    if not specs_db:
        raise DfnbError("shared_db_limits needs at least one spectrogram: pass the dB arrays to compare")
    if dynamic_range <= 0:
        raise DfnbError(f"dynamic_range must be positive dB, got {dynamic_range}")
    tops = [np.max(s[np.isfinite(s)]) for s in map(np.asarray, specs_db) if np.isfinite(s).any()]
    vmax = float(np.ceil(max(tops))) if tops else 0.0
    return vmax - float(dynamic_range), vmax


def _image(ax, spec_db, sr, hop, vmin, vmax, cmap=_SPEC_CMAP):
    dt = hop / sr
    extent = (-0.5 * dt, (spec_db.shape[1] - 0.5) * dt, 0.0, sr / 2000.0)
    im = ax.imshow(spec_db, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    return im


def plot_spectrogram(x, sr: int = 48000, *, ax=None, title: str = "", vmin=None, vmax=None, n_fft: int = 960,
                     hop: int = 480, colorbar: bool = True) -> Figure:
    """One spectrogram; give ``vmin``/``vmax`` (e.g. from ``shared_db_limits``) to compare with other panels.

    Parameters
    ----------
    x : array_like
        Mono samples at ``sr``.
    ax, title, vmin, vmax
        Axes (None: a new figure), title, colour limits in dB (None: the max and 80 dB below).
    n_fft, hop, colorbar
        STFT size and hop of the picture, and whether to draw a colorbar.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_spectrogram(noisy, 48000, title="noisy")  # doctest: +SKIP
    """
    spec = spectrogram_db(x, sr, n_fft, hop)
    if vmin is None or vmax is None:
        lo, hi = shared_db_limits(spec)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    fig, ax = figure_axes(ax)
    im = _image(ax, spec, sr, hop, vmin, vmax)
    ax.set_title(titled(title, f"n_fft {n_fft}, hop {hop}"))
    if colorbar:
        fig.colorbar(im, ax=ax, label="power (dB)")
    return fig


def plot_spectrograms(signals: Mapping[str, np.ndarray], sr: int = 48000, *, title: str = "",
                      dynamic_range: float = 80, ncols: int = 1, axes=None) -> Figure:
    """One panel per signal (titled by its key), all on one dB scale with one shared colorbar.

    Parameters
    ----------
    signals : mapping of str to array
        Mono signals at ``sr``, one panel each, in order.
    title, dynamic_range
        Figure title; the shared scale spans the loudest bin down ``dynamic_range`` dB.
    ncols, axes
        Grid columns of a new figure, or existing axes (one per signal) to draw on.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_spectrograms({"noisy": noisy, "enhanced": enhanced, "clean": clean})  # doctest: +SKIP
    """
    if not signals:
        raise AudioError("plot_spectrograms needs at least one signal: pass {name: samples}")
    names = list(signals)
    specs = [spectrogram_db(signals[k], sr) for k in names]
    vmin, vmax = shared_db_limits(*specs, dynamic_range=dynamic_range)
    if axes is None:
        ncols = max(1, int(ncols))
        nrows = -(-len(names) // ncols)
        fig, grid = _pyplot().subplots(nrows, ncols, figsize=(6.0 * ncols, 2.6 * nrows + 0.6), squeeze=False,
                                       sharex=True, sharey=True, layout="constrained")
        axes_list = list(grid.ravel())
        for extra in axes_list[len(names):]:
            extra.set_axis_off()
        axes_list = axes_list[: len(names)]
    else:
        axes_list = list(np.ravel(axes))
        if len(axes_list) < len(names):
            raise DfnbError(f"{len(names)} signals but only {len(axes_list)} axes: pass one axis per signal")
        axes_list = axes_list[: len(names)]
        fig = axes_list[0].figure
    im = None
    for i, (ax, name, spec) in enumerate(zip(axes_list, names, specs)):
        im = _image(ax, spec, sr, _HOP, vmin, vmax)
        ax.set_title(name)
        if axes is None:  # own shared grid: time labels only under the lowest panel of each column
            below = i + ncols < len(names)
            ax.set_xlabel("" if below else "time (s)")
            ax.tick_params(labelbottom=not below)
        if axes is None and i % ncols:
            ax.set_ylabel("")
            ax.tick_params(labelleft=False)
    fig.colorbar(im, ax=axes_list, label="power (dB)")
    fig.suptitle(titled(title, f"shared scale {vmin:.0f}…{vmax:.0f} dB, hop {_HOP}"))
    return fig


def plot_difference_spectrogram(reference, test, sr: int = 48000, *, ax=None, title: str = "", vmin: float = -120,
                                vmax: float = 0) -> Figure:
    """Spectrogram of ``reference - test`` on a fixed dB scale; the title gives the SNR of the difference.

    Parameters
    ----------
    reference, test : array_like
        Two time-aligned outputs of the same length (e.g. offline and a host's).
    ax, title, vmin, vmax
        Axes (None: a new figure), title, colour limits in dB.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_difference_spectrogram(offline, naive_host, title="chunk 7")  # doctest: +SKIP
    """
    snr = snr_of_difference(reference, test)
    diff = as_signal(reference, "reference") - as_signal(test, "test")
    fig, ax = figure_axes(ax)
    im = _image(ax, spectrogram_db(diff, sr), sr, _HOP, vmin, vmax)
    ax.set_title(titled(title, f"difference, SNR {_fmt_db(snr)} dB"))
    fig.colorbar(im, ax=ax, label="power of difference (dB)")
    return fig


def plot_error_vs_time(reference, tests: Mapping[str, np.ndarray], sr: int = 48000, *, hop: int = 480,
                       chunk_hops: int | None = None, ax=None, title: str = "") -> Figure:
    """Per-hop SNR of the difference of each test against ``reference`` (identical hops drawn at 200 dB).

    Parameters
    ----------
    reference : array_like
        The reference output (offline PyTorch).
    tests : mapping of str to array
        Outputs aligned with ``reference``, one curve each.
    hop, chunk_hops
        Samples per hop; with ``chunk_hops``, a dotted vertical line marks each chunk boundary in the clip.
    ax, title
        Axes (None: a new figure) and title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_error_vs_time(offline, {"naive host": y_naive, "exact": y_full}, chunk_hops=7)  # doctest: +SKIP

    Notebook: 03_compare_outputs
    """
    if not tests:
        raise AudioError("plot_error_vs_time needs at least one test signal: pass {name: samples}")
    if chunk_hops is not None and chunk_hops <= 0:
        raise DfnbError(f"chunk_hops must be a positive number of hops, got {chunk_hops}")
    ref = as_signal(reference, "reference")
    curves = {name: error_per_hop(ref, test, hop) for name, test in tests.items()}  # validates before drawing
    fig, ax = figure_axes(ax)
    n_hops = -(-ref.size // hop)
    t = (np.arange(n_hops) + 0.5) * hop / sr
    for name, curve in curves.items():
        ax.plot(t, curve, label=name, lw=1.2)
    detail = f"hop {hop}"
    if chunk_hops is not None:
        for k, b in enumerate(range(chunk_hops, n_hops, chunk_hops)):
            ax.axvline(b * hop / sr, color="0.5", ls=":", lw=0.8, gid="chunk-boundary",
                       label=f"chunk boundary (every {chunk_hops} hops)" if k == 0 else None)
        detail += f", chunk {chunk_hops} hops ({1000 * chunk_hops * hop / sr:g} ms)"
    ax.set_title(titled(title, detail))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("SNR of difference (dB)")
    ax.set_xlim(0, ref.size / sr)
    ax.axhline(SNR_CAP_DB, color="0.8", lw=0.6, zorder=0)
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_error_vs_chunk(chunks: Sequence[int], snrs: Mapping[str, Sequence[float]], *, ax=None,
                        title: str = "") -> Figure:
    """SNR of the difference against chunk size, one line per variant; exact (+inf) points drawn at 200 dB.

    Parameters
    ----------
    chunks : sequence of int
        Chunk sizes in hops (log-2 axis).
    snrs : mapping of str to sequence of float
        One SNR per chunk size for each variant.
    ax, title
        Axes (None: a new figure) and title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_error_vs_chunk([1, 7, 20], {"h0": snr_h0, "full": snr_full})  # doctest: +SKIP
    """
    x = np.asarray(chunks, dtype=np.float64)
    ys = {name: np.asarray(y, dtype=np.float64) for name, y in snrs.items()}
    for name, y in ys.items():
        if y.shape != x.shape:
            raise DfnbError(f"{name!r} has {y.size} SNRs for {x.size} chunk sizes: give one SNR per chunk size")
    fig, ax = figure_axes(ax, figsize=(6.0, 4.0))
    for name, y in ys.items():
        ax.plot(x, np.minimum(y, SNR_CAP_DB), "o-", label=name)
    if x.size and np.all(x > 0):
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [f"{c:g}" for c in x])
        ax.minorticks_off()
    ax.axhline(SNR_CAP_DB, color="0.8", lw=0.6, zorder=0)
    ax.set_xlabel("chunk size (hops)")
    ax.set_ylabel("SNR of difference (dB)")
    ax.set_title(titled(title, f"error vs chunk size (exact drawn at {SNR_CAP_DB:g} dB)"))
    if snrs:
        ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_latency(latencies_us: Mapping[str, np.ndarray], *, budget_us: float = 10000, ax=None,
                 title: str = "") -> Figure:
    """Per-hop latency distributions (box: quartiles, whiskers 1–99th percentile) on a log axis, budget line.

    Parameters
    ----------
    latencies_us : mapping of str to array
        Positive per-hop latencies in microseconds, one box each.
    budget_us, ax, title
        The realtime budget drawn as a line (one hop = 10 ms), axes (None: a new figure), title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_latency({"fast step host": us_fast, "Host full": us_full})  # doctest: +SKIP
    """
    if not latencies_us:
        raise DfnbError("plot_latency needs at least one latency series: pass {name: microseconds}")
    data = []
    for name, v in latencies_us.items():
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise DfnbError(f"latencies of {name!r} must be positive finite microseconds (got {a.size} values)")
        data.append(a)
    fig, ax = figure_axes(ax, figsize=(max(4.0, 1.4 * len(data) + 2), 4.0))
    ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2, "alpha": 0.4})
    names = list(latencies_us)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20 if len(names) > 3 else 0)
    ax.set_yscale("log")
    ax.axhline(budget_us, color="tab:red", ls="--", lw=1.2, label=f"budget {budget_us / 1000:g} ms")
    for i, a in enumerate(data, start=1):
        ax.annotate(f"p50 {np.median(a):.0f} µs\np99 {np.percentile(a, 99):.0f} µs", (i + 0.3, np.median(a)),
                    fontsize="x-small", va="center")
    ax.set_ylabel("latency per hop (µs)")
    ax.set_title(titled(title, f"budget {budget_us / 1000:g} ms"))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3, axis="y", which="both")
    return fig


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
