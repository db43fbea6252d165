"""Figures of the quality-cost study: median score per variant against chunk size, doing nothing and offline as
reference lines. Helpers take ``ax=None`` and return the Figure (like :mod:`dfnb.plot`); matplotlib is imported
only when one runs (Agg when no backend was chosen, as :func:`dfnb.plot.pyplot` does).

Notebook: 06_quality_cost
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import DfnbError
from .plot import pyplot
from .study import CHUNKED

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SCORE_LABELS", "plot_quality", "plot_quality_grid"]

SCORE_LABELS = {"pesq": "PESQ (wide band)", "stoi": "STOI", "si_sdr_db": "SI-SDR (dB)", "dnsmos_sig": "DNSMOS SIG",
                "dnsmos_bak": "DNSMOS BAK", "dnsmos_ovrl": "DNSMOS OVRL", "dnsmos_p808": "DNSMOS P.808",
                "plcmos": "PLCMOS", "snr_diff_db": "SNR of the difference vs offline (dB)"}
_STYLE = {"naive": ("tab:red", "v"), "stateless": ("tab:orange", "o"), "h0": ("tab:olive", "s"),
          "gru": ("tab:cyan", "D"), "full": ("tab:blue", "^"), "step": ("tab:purple", "x")}


def plot_quality(medians: Sequence[dict], score: str, model: str, *, ax=None, title: str = "",
                 variants: Sequence[str] = CHUNKED) -> Figure:
    """Median ``score`` of each chunked variant against chunk size for one model (rows of
    :func:`dfnb.quality_table.median_table`); ``noisy`` dashed grey and ``offline`` solid black across the plot.

    Parameters
    ----------
    medians : sequence of dict
        Rows of :func:`dfnb.quality_table.median_table`.
    score : str
        A score column, e.g. ``"dnsmos_ovrl"`` or ``"pesq"``.
    model : str
        The model whose rows are drawn.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_quality(median_table(rows), "dnsmos_ovrl", "DeepFilterNet3")  # doctest: +SKIP

    Notebook: 06_quality_cost
    """
    rows = [r for r in medians if r["model"] == model]
    if not rows:
        raise DfnbError(f"no rows of model {model!r} in the median table; models there: "
                        f"{sorted({r['model'] for r in medians})}")
    if score not in rows[0]:
        raise DfnbError(f"the median table has no column {score!r}; columns: {list(rows[0])}")
    if ax is None:
        fig, ax = pyplot().subplots(figsize=(6.0, 4.0), layout="constrained")
    fig = ax.figure
    chunks = sorted({r["chunk"] for r in rows if r["chunk"] is not None})
    for v in variants:
        by_chunk = {r["chunk"]: r[score] for r in rows if r["variant"] == v}
        if by_chunk:
            color, marker = _STYLE.get(v, (None, "o"))
            y = np.array([by_chunk.get(c, math.nan) for c in chunks], dtype=np.float64)
            ax.plot(chunks, np.minimum(y, 200.0), marker=marker, color=color, label=v)
    for v, style in (("noisy", {"color": "0.5", "ls": "--"}), ("offline", {"color": "k", "ls": "-"})):
        ref = [r[score] for r in rows if r["variant"] == v]
        if ref and not math.isnan(ref[0]) and not math.isinf(ref[0]):
            ax.axhline(ref[0], lw=1.2, label=f"{v} ({ref[0]:.2f})", zorder=0, **style)
    if chunks:
        ax.set_xscale("log", base=2)
        ax.set_xticks(chunks, [str(c) for c in chunks])
        ax.minorticks_off()
    ax.set_xlabel("chunk size (hops per call)")
    ax.set_ylabel(SCORE_LABELS.get(score, score))
    intrusive = score in ("pesq", "stoi", "si_sdr_db")
    n = max((r.get("clean_clips" if intrusive else "clips", 0) for r in rows), default=0)
    detail = f"median over {n} clips{' with clean speech' if intrusive else ''}" if n else "median over clips"
    ax.set_title(f"{title or model} — {detail}", fontsize="medium")
    ax.legend(loc="best", fontsize="x-small", ncol=2)
    ax.grid(alpha=0.3)
    return fig


def plot_quality_grid(medians: Sequence[dict], scores: Sequence[str] = ("dnsmos_ovrl", "pesq"),
                      models: Sequence[str] | None = None) -> Figure:
    """One :func:`plot_quality` panel per score (rows) × model (columns), rows sharing their y axis.

    Notebook: 06_quality_cost
    """
    models = list(models or dict.fromkeys(r["model"] for r in medians))
    if not models or not scores:
        raise DfnbError("plot_quality_grid needs at least one model and one score")
    fig, axes = pyplot().subplots(len(scores), len(models), figsize=(4.6 * len(models), 3.6 * len(scores)),
                                   squeeze=False, sharey="row", layout="constrained")
    for i, s in enumerate(scores):
        for j, m in enumerate(models):
            plot_quality(medians, s, m, ax=axes[i, j])
    return fig
