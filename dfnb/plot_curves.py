"""Line figures: per-hop error against time, error against chunk size, LSNR traces and drift, per-hop latency.

Overlapping lines stay readable: each series gets its own line style (and marker), a line hidden by a later
one is drawn wider and paler so it shows as a rim, and the legend says which line hides which
(:func:`coincident_labels`). Identical outputs (SNR of the difference = +inf, per hop ``SNR_CAP_DB``) are drawn
at the top of a y-axis scaled to the finite values, and the panel says so. Chunk boundaries are in output time
(:func:`dfnb.metrics.boundary_times`).

Explained where the figures appear: Notebook 03 (through :mod:`dfnb.plot`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import AudioError, DfnbError
from .figure import axes_for, join_title, pyplot
from .metrics import SNR_CAP_DB, as_signal, boundary_times, error_per_hop

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["coincident_labels", "styled_lines", "plot_error_vs_time", "plot_lsnr", "plot_lsnr_drift",
           "plot_error_vs_chunk", "plot_latency"]

_STYLES = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 1)), "P")]


def coincident_labels(series: Mapping[str, np.ndarray], tol: float = 1.0, x: Mapping | None = None) -> dict[str, str]:
    """Legend labels that say when a line is hidden: ``"full (hidden under step)"`` if every point of ``full`` is
    within ``tol`` of a line drawn after it (non-finite points must match exactly; with ``x`` — one x array per
    series — the x values must match too); other names unchanged."""
    names = list(series)
    arrays = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in series.items()}
    labels = {}
    for i, a in enumerate(names):
        under = []
        for b in names[i + 1:]:
            p, q = arrays[a], arrays[b]
            if p.shape != q.shape or (x is not None and not np.allclose(x[a], x[b], rtol=1e-3)):
                continue
            fin = np.isfinite(p) & np.isfinite(q)
            if fin.any() and np.array_equal(np.isfinite(p), np.isfinite(q)) and np.all(np.abs(p[fin] - q[fin]) <= tol):
                under.append(b)
        labels[a] = f"{a} (hidden under {', '.join(under)})" if under else a
    return labels


def styled_lines(ax, x, series: Mapping[str, np.ndarray], *, markers: bool = False, tol: float = 1.0,
                 lw: float = 1.2, labels: Mapping[str, str] | None = None) -> None:
    """Draw ``series`` against ``x`` (shared, or ``{name: x}``) with distinct line styles (and markers); a line
    that a later one hides is drawn wider, so it shows as a rim around it, and its label says so
    (:func:`coincident_labels`, or the given ``labels``)."""
    if labels is None:
        labels = coincident_labels(series, tol, x if isinstance(x, Mapping) else None)
    for i, (name, y) in enumerate(series.items()):
        ls, mk = _STYLES[i % len(_STYLES)]
        hidden = labels[name] != name
        ax.plot(x[name] if isinstance(x, Mapping) else x, y, ls="-" if hidden else ls, marker=mk if markers else None,
                ms=9 if hidden else 5, mfc="none" if hidden else None, lw=lw + 2.5 if hidden else lw,
                alpha=0.55 if hidden else 1.0, label=labels[name], zorder=2 + i, gid=f"series:{name}")


def _display_top(curves: Mapping[str, np.ndarray], ymax) -> tuple[float, bool]:
    """The y-axis top: ``ymax``, or 10 dB over the largest finite value below the cap (≥ 40, ≤ the cap); and
    whether any point (identical output, SNR = cap) must be drawn clipped at it."""
    vals = np.concatenate([np.ravel(c) for c in curves.values()]) if curves else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    below = vals[vals < SNR_CAP_DB]
    top = float(ymax) if ymax is not None else min(SNR_CAP_DB, max(40.0, 10 * np.ceil(below.max() / 10) + 10)
                                                   if below.size else SNR_CAP_DB)
    clipped = bool(np.any(np.asarray([v for c in curves.values() for v in np.ravel(c)]) >= top))
    return top, clipped


def _snr_axes(ax, curves, top, clipped, exact_db, ylabel="SNR of difference (dB)") -> None:
    if exact_db is not None:
        ax.axhline(exact_db, color="0.45", ls="--", lw=1, zorder=1, label=f"exact (≥ {exact_db:g} dB)")
    bottom = min([0.0] + [float(np.nanmin(c)) - 5 for c in curves.values() if np.isfinite(c).any()])
    ax.set_ylim(bottom, top + 3)
    if clipped:
        ax.text(0.99, 0.99, f"points ≥ {top:g} dB (identical) drawn at the top", transform=ax.transAxes,
                ha="right", va="top", fontsize="x-small", color="0.3")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def plot_error_vs_time(reference, tests: Mapping[str, np.ndarray], sr: int = 48000, *, hop: int = 480,
                       chunk_hops: int | None = None, delay_samples: int = 0, ax=None, title: str = "",
                       exact_db: float | None = None, ymax: float | None = None) -> Figure:
    """Per-hop SNR of the difference of each test against ``reference``; identical hops are drawn at the top.

    With ``chunk_hops``, a dotted vertical line marks each chunk boundary in output time (``delay_samples``:
    the runtime's delay, see :func:`boundary_times`); ``exact_db`` draws the exactness threshold.
    """
    if not tests:
        raise AudioError("plot_error_vs_time needs at least one test signal: pass {name: samples}")
    ref = as_signal(reference, "reference")
    times = None if chunk_hops is None else boundary_times(ref.size, sr, chunk_hops=chunk_hops, hop=hop,
                                                           delay_samples=delay_samples)
    curves = {name: error_per_hop(ref, test, hop) for name, test in tests.items()}  # validates before drawing
    top, clipped = _display_top(curves, ymax)
    fig, ax = axes_for(ax, figsize=(10.0, 3.8))
    t = (np.arange(-(-ref.size // hop)) + 0.5) * hop / sr
    styled_lines(ax, t, {k: np.minimum(c, top) for k, c in curves.items()}, lw=1.0)
    detail = f"hop {hop}"
    if times is not None:
        for k, b in enumerate(times):
            ax.axvline(b, color="0.5", ls=":", lw=0.8, gid="chunk-boundary",
                       label=f"chunk boundary (every {chunk_hops} hops, output time)" if k == 0 else None)
        detail += f", chunk {chunk_hops} hops ({1000 * chunk_hops * hop / sr:g} ms)"
    ax.set_title(join_title(title, detail))
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, ref.size / sr)
    _snr_axes(ax, curves, top, clipped, exact_db)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", borderaxespad=0)
    return fig


def plot_lsnr(lsnrs: Mapping[str, np.ndarray], hop_s: float = 0.01, *, ax=None, title: str = "",
              boundaries=None) -> Figure:
    """LSNR traces (the model's local SNR estimate, one value per hop) against time; identical traces are named
    in the legend (``coincident_labels``), ``boundaries`` (seconds) dotted."""
    fig, ax = axes_for(ax)
    traces = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in lsnrs.items()}
    styled_lines(ax, {k: np.arange(v.size) * hop_s for k, v in traces.items()}, traces, tol=0.05)
    for b in [] if boundaries is None else boundaries:
        ax.axvline(b, color="0.6", ls=":", lw=0.7, gid="chunk-boundary")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("LSNR (dB)")
    if traces:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", borderaxespad=0)
    ax.grid(alpha=0.3)
    ax.set_title(join_title(title, f"LSNR, hop {1000 * hop_s:g} ms"))
    return fig


def plot_lsnr_drift(reference, test, hop_s: float = 0.01, *, names=("reference", "test"), boundaries=None,
                    title: str = "") -> Figure:
    """Two stacked panels: both LSNR traces, then ``test − reference`` (dB) with its largest |drift| printed."""
    a, b = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (reference, test))
    n = min(a.size, b.size)
    fig, (top, bottom) = pyplot().subplots(2, 1, figsize=(8.0, 4.6), sharex=True, height_ratios=(2, 1),
                                           layout="constrained")
    plot_lsnr({names[0]: a[:n], names[1]: b[:n]}, hop_s, ax=top, title=title, boundaries=boundaries)
    top.set_xlabel("")
    drift = b[:n] - a[:n]
    bottom.plot(np.arange(n) * hop_s, drift, color="tab:red", lw=1.0)
    bottom.axhline(0, color="0.5", lw=0.6)
    worst = float(np.max(np.abs(drift))) if n else 0.0
    bottom.set_ylabel("drift (dB)")
    bottom.set_xlabel("time (s)")
    bottom.set_title(f"{names[1]} − {names[0]}: largest |drift| {worst:.3g} dB", fontsize="small")
    bottom.set_ylim(-max(worst, 0.01) * 1.2, max(worst, 0.01) * 1.2)
    bottom.grid(alpha=0.3)
    return fig


def plot_error_vs_chunk(chunks: Sequence[int], snrs: Mapping[str, Sequence[float]], *, ax=None,
                        title: str = "", exact_db: float | None = None, ymax: float | None = None) -> Figure:
    """SNR of the difference against chunk size, one line per variant (distinct styles, slightly offset so
    coinciding points stay visible, the legend names hidden lines); identical (+inf) points drawn at the top."""
    x = np.asarray(chunks, dtype=np.float64)
    ys = {name: np.asarray(y, dtype=np.float64) for name, y in snrs.items()}
    for name, y in ys.items():
        if y.shape != x.shape:
            raise DfnbError(f"{name!r} has {y.size} SNRs for {x.size} chunk sizes: give one SNR per chunk size")
    top, clipped = _display_top(ys, ymax)
    fig, ax = axes_for(ax, figsize=(9.0, 4.0))
    log = x.size and np.all(x > 0)
    n = len(ys)
    offsets = {k: x * 2.0 ** (0.035 * (i - (n - 1) / 2)) if log else x for i, k in enumerate(ys)}
    styled_lines(ax, offsets, {k: np.minimum(y, top) for k, y in ys.items()}, markers=True,
                 labels=coincident_labels(ys, 1.0))  # hidden by value at the same chunk size, before the offsets
    if log:
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [f"{c:g}" for c in x])
        ax.minorticks_off()
    ax.set_xlabel("chunk size (hops)")
    _snr_axes(ax, ys, top, clipped, exact_db)
    ax.set_title(join_title(title, "error vs chunk size"))
    if snrs:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", borderaxespad=0)
    return fig


def plot_latency(latencies_us: Mapping[str, np.ndarray], *, budget_us: float = 10000, ax=None,
                 title: str = "") -> Figure:
    """Per-hop latency distributions (box: quartiles, whiskers 1–99th percentile) on a log axis, budget line."""
    if not latencies_us:
        raise DfnbError("plot_latency needs at least one latency series: pass {name: microseconds}")
    data = []
    for name, v in latencies_us.items():
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise DfnbError(f"latencies of {name!r} must be positive finite microseconds (got {a.size} values)")
        data.append(a)
    fig, ax = axes_for(ax, figsize=(max(4.0, 1.4 * len(data) + 2), 4.0))
    ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2, "alpha": 0.4})
    names = list(latencies_us)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20 if len(names) > 3 else 0)
    ax.set_yscale("log")
    ax.axhline(budget_us, color="tab:red", ls="--", lw=1.2, label=f"budget {budget_us / 1000:g} ms")
    for i, a in enumerate(data, start=1):
        ax.annotate(f"p50 {np.median(a):.0f} µs\np99 {np.percentile(a, 99):.0f} µs", (i + 0.3, np.median(a)),
                    fontsize="x-small", va="center")
    ax.set_ylabel("latency per hop (µs)")
    ax.set_title(join_title(title, f"budget {budget_us / 1000:g} ms"))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3, axis="y", which="both")
    return fig
