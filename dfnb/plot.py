"""Figure helpers for comparing outputs — the one import for notebooks: spectrograms and their differences on
one dB scale (here), plus the line figures of :mod:`dfnb.plot_curves` and the hidden-state figures of
:mod:`dfnb.plot_states`, re-exported.

House rules: every helper takes ``ax=None`` (it makes its own figure when None) and returns the Figure;
panels that are compared share one dB scale — a difference spectrogram is drawn on the *signal's* scale, so
its darkness says how far below the signal it is; whatever falls below the scale's floor is drawn in grey and
the panel says how far below the signal the difference is (an exact difference is "below the floor", never a
black panel that could be a broken output); chunk boundaries are ticked in *output* time
(:func:`boundary_times`); titles carry the key parameters. matplotlib is imported only when a helper runs.

Notebook: 03_compare_outputs
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .errors import AudioError, DfnbError
from .figure import axes_for, fmt_db, join_title, pyplot, save_figure
from .metrics import as_signal, boundary_times, snr_of_difference
from .plot_curves import (
    coincident_labels,
    plot_error_vs_chunk,
    plot_error_vs_time,
    plot_latency,
    plot_lsnr,
    plot_lsnr_drift,
    styled_lines,
)
from .plot_states import plot_hidden_heatmap, plot_pca_path, plot_state_norm

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DB_FLOOR", "UNDER_COLOR", "spectrogram_db", "shared_db_limits", "plot_spectrogram", "plot_spectrograms",
    "plot_difference_spectrogram", "plot_differences",
    # re-exported
    "pyplot", "axes_for", "join_title", "save_figure", "boundary_times", "coincident_labels", "styled_lines",
    "plot_error_vs_time", "plot_lsnr", "plot_lsnr_drift", "plot_error_vs_chunk", "plot_latency",
    "plot_hidden_heatmap", "plot_state_norm", "plot_pca_path",
]

#: Lowest value spectrograms take, in dB (power re. a full-scale sine).
DB_FLOOR = -120.0
#: Colour of everything below a difference panel's floor ("too small to show on this scale").
UNDER_COLOR = "#d9d9d9"
_HOP = 480  # DeepFilterNet's hop at 48 kHz; spectrogram panels use it
_SPEC_CMAP = "magma"


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


def _cmap(under: bool):
    import matplotlib

    cmap = matplotlib.colormaps[_SPEC_CMAP]
    return cmap.with_extremes(under=UNDER_COLOR) if under else cmap


def _image(ax, spec_db, sr, hop, vmin, vmax, *, under=False, zoom=None):
    dt = hop / sr
    extent = (-0.5 * dt, (spec_db.shape[1] - 0.5) * dt, 0.0, sr / 2000.0)
    im = ax.imshow(spec_db, origin="lower", aspect="auto", extent=extent, cmap=_cmap(under), vmin=vmin, vmax=vmax,
                   interpolation="antialiased")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    if zoom is not None:
        ax.set_xlim(*zoom)
    return im


def _ticks(ax, times) -> None:
    """Chunk boundaries as short cyan ticks on the top and bottom edges of a spectrogram panel."""
    if times is None or not len(times):
        return
    tr = ax.get_xaxis_transform()
    for lo, hi in ((0.0, 0.06), (0.94, 1.0)):
        ax.vlines(times, lo, hi, transform=tr, color="tab:cyan", lw=1.2, gid="chunk-boundary")


def _floor_note(ax, diff_db, vmin, signal_top, snr) -> None:
    """Say on the panel how loud the difference is against the signal, and if it is all below the floor."""
    peak = float(np.max(diff_db))
    lines = [f"SNR of difference {fmt_db(snr)} dB",
             f"loudest bin {signal_top - peak:.0f} dB below the signal's loudest bin"]
    if peak < vmin:
        lines.append("all below this scale's floor (grey): nothing visible")
    ax.text(0.01, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize="x-small",
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.6", "alpha": 0.85}, gid="floor-note")


def plot_spectrogram(x, sr: int = 48000, *, ax=None, title: str = "", vmin=None, vmax=None, n_fft: int = 960,
                     hop: int = 480, colorbar: bool = True) -> Figure:
    """One spectrogram; give ``vmin``/``vmax`` (e.g. from ``shared_db_limits``) to compare with other panels."""
    spec = spectrogram_db(x, sr, n_fft, hop)
    if vmin is None or vmax is None:
        lo, hi = shared_db_limits(spec)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    fig, ax = axes_for(ax)
    im = _image(ax, spec, sr, hop, vmin, vmax)
    ax.set_title(join_title(title, f"n_fft {n_fft}, hop {hop}"))
    if colorbar:
        fig.colorbar(im, ax=ax, label="power (dB)")
    return fig


def _grid(n: int, ncols: int, axes, height: float = 2.4):
    """``(figure, axes list)``: the given axes (one per panel) or a new shared-axes grid."""
    if axes is None:
        ncols = max(1, min(int(ncols), n))
        nrows = -(-n // ncols)
        fig, grid = pyplot().subplots(nrows, ncols, figsize=(6.0 * ncols, height * nrows + 0.7), squeeze=False,
                                      sharex=True, sharey=True, layout="constrained")
        axes_list = list(grid.ravel())
        for extra in axes_list[n:]:
            extra.set_axis_off()
        for i, ax in enumerate(axes_list[:n]):
            if i + ncols < n:  # time labels only under the lowest panel of each column
                ax.set_xlabel("")
                ax.tick_params(labelbottom=False)
            if i % ncols:
                ax.tick_params(labelleft=False)
        return fig, axes_list[:n], ncols
    axes_list = list(np.ravel(axes))
    if len(axes_list) < n:
        raise DfnbError(f"{n} panels but only {len(axes_list)} axes: pass one axis per panel")
    return axes_list[0].figure, axes_list[:n], 0


def _label_grid(axes_list, ncols) -> None:
    for i, ax in enumerate(axes_list):
        if ncols and i + ncols < len(axes_list):
            ax.set_xlabel("")
        if ncols and i % ncols:
            ax.set_ylabel("")


def plot_spectrograms(signals: Mapping[str, np.ndarray], sr: int = 48000, *, title: str = "",
                      dynamic_range: float = 80, ncols: int = 1, axes=None, boundaries=None, zoom=None) -> Figure:
    """One panel per signal (titled by its key), all on one dB scale with one shared colorbar; ``boundaries``
    (seconds, e.g. :func:`boundary_times`) are ticked on every panel; ``zoom=(t0, t1)`` limits the time axis."""
    if not signals:
        raise AudioError("plot_spectrograms needs at least one signal: pass {name: samples}")
    names = list(signals)
    specs = [spectrogram_db(signals[k], sr) for k in names]
    vmin, vmax = shared_db_limits(*specs, dynamic_range=dynamic_range)
    fig, axes_list, ncols = _grid(len(names), ncols, axes)
    im = None
    for ax, name, spec in zip(axes_list, names, specs):
        im = _image(ax, spec, sr, _HOP, vmin, vmax, zoom=zoom)
        _ticks(ax, boundaries)
        ax.set_title(name)
    _label_grid(axes_list, ncols)
    fig.colorbar(im, ax=axes_list, label="power (dB)")
    fig.suptitle(join_title(title, f"shared scale {vmin:.0f}…{vmax:.0f} dB, hop {_HOP}"))
    return fig


def plot_difference_spectrogram(reference, test, sr: int = 48000, *, ax=None, title: str = "", vmin=None,
                                vmax=None, dynamic_range: float = 80, boundaries=None, zoom=None,
                                colorbar: bool = True) -> Figure:
    """Spectrogram of ``reference - test`` on the *reference's* dB scale (top = its loudest bin, ``dynamic_range``
    below, or ``vmin``/``vmax``); below the floor is grey and the panel says how far below the signal the
    difference is. ``boundaries``: chunk boundaries (seconds, output time) ticked on the edges; ``zoom=(t0, t1)``.

    Notebook: 03_compare_outputs
    """
    snr = snr_of_difference(reference, test)
    ref = as_signal(reference, "reference")
    diff_db = spectrogram_db(ref - as_signal(test, "test"), sr)
    ref_db = spectrogram_db(ref, sr)
    if vmin is None or vmax is None:
        lo, hi = shared_db_limits(ref_db, dynamic_range=dynamic_range)
        vmin, vmax = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    fig, ax = axes_for(ax)
    im = _image(ax, diff_db, sr, _HOP, vmin, vmax, under=True, zoom=zoom)
    _ticks(ax, boundaries)
    _floor_note(ax, diff_db, vmin, float(ref_db.max()), snr)
    ax.set_title(join_title(title, f"difference, SNR {fmt_db(snr)} dB"))
    if colorbar:
        fig.colorbar(im, ax=ax, extend="min", label="power (dB); grey: below the floor")
    return fig


def _legend_panel(ax, vmin: float) -> None:
    """The empty panel beside the reference: how to read the grid."""
    ax.set_axis_off()
    ax.text(0.02, 0.5, "How to read this figure\n"
            "• left: each output; right: reference − output, on the SAME dB scale\n"
            "• a dark difference panel means a difference far below the signal\n"
            f"• grey: below the scale's floor ({vmin:.0f} dB) — too small to show\n"
            "• cyan ticks: chunk boundaries in output time (after the delay)",
            transform=ax.transAxes, va="center", ha="left", fontsize="small", linespacing=1.6)


def plot_differences(reference, tests: Mapping[str, np.ndarray], sr: int = 48000, *, reference_name: str = "reference",
                     with_outputs: bool = False, ncols: int = 2, dynamic_range: float = 80, boundaries=None,
                     zoom=None, title: str = "") -> Figure:
    """``reference − test`` for every test on ONE scale (the loudest bin of all signals, ``dynamic_range`` below)
    with one colorbar. ``with_outputs``: the reference first, then each test's output next to its difference
    (two columns). ``boundaries``: seconds, or ``{test name: seconds}`` when the tests' delays differ.

    Notebook: 03_compare_outputs
    """
    if not tests:
        raise AudioError("plot_differences needs at least one test signal: pass {name: samples}")
    names = list(tests)
    specs = [spectrogram_db(reference, sr)] + [spectrogram_db(tests[k], sr) for k in names]
    vmin, vmax = shared_db_limits(*specs, dynamic_range=dynamic_range)
    ticks = boundaries if isinstance(boundaries, Mapping) else {k: boundaries for k in names}
    panels = 2 * len(names) + 2 if with_outputs else len(names)
    fig, axes_list, ncols = _grid(panels, 2 if with_outputs else ncols, None, height=2.3)
    im = None
    it = iter(axes_list)
    if with_outputs:
        ax = next(it)
        _image(ax, specs[0], sr, _HOP, vmin, vmax, zoom=zoom)
        ax.set_title(f"{reference_name} (reference)")
        next(it)
    for name, spec in zip(names, specs[1:]):
        if with_outputs:
            ax = next(it)
            _image(ax, spec, sr, _HOP, vmin, vmax, zoom=zoom)
            _ticks(ax, ticks.get(name))
            ax.set_title(name)
        plot_difference_spectrogram(reference, tests[name], sr, ax=next(it), title=f"{reference_name} − {name}",
                                    vmin=vmin, vmax=vmax, boundaries=ticks.get(name), zoom=zoom, colorbar=False)
    if with_outputs:
        _legend_panel(axes_list[1], vmin)
    _label_grid(axes_list, ncols)
    im = axes_list[-1].images[0]  # a difference panel: its colormap carries the grey "below the floor"
    fig.colorbar(im, ax=axes_list, extend="min", label="power (dB); grey: below the floor")
    fig.suptitle(join_title(title, f"one scale {vmin:.0f}…{vmax:.0f} dB for signals and differences"))
    return fig
