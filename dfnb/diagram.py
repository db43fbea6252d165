"""The DeepFilterNet pipeline as a figure, with every piece of memory a streaming host must carry marked on it.

Boxes are the processing stages, hop by hop (10 ms); the badges under them are the state groups of
:data:`dfnb.layout.STATE_GROUPS` that the stage keeps from one hop to the next — orange where a host keeps them
(outside any graph), blue where a stateful export (``full``) carries them as graph inputs/outputs. The
lookahead bracket shows the frames the model waits for before it emits a frame. Sizes come from the model's
config (``ModelSpec``) when one is given.

Notebook: 00_tour
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .figure import axes_for

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["HOST_GROUPS", "plot_pipeline"]

#: State groups a host keeps outside the graphs (the rest are carried by a ``full`` export's graphs).
HOST_GROUPS = ("stft", "norm", "lookahead", "df_buffer")
_HOST_COLOR, _GRAPH_COLOR = "#f4a261", "#8ecae6"


def _stages(spec: Any) -> list[tuple[str, str, float, float, tuple[str, ...]]]:
    """``(key, label, x, y, state groups)`` of every box; labels carry the config's sizes when known."""
    g = (lambda name, default: getattr(spec, name, default)) if spec is not None else (lambda name, default: default)
    hop, fft = g("hop_size", 480), g("fft_size", 960)
    erb, df, order = g("nb_erb", 32), g("nb_df", 96), g("df_order", 5)
    return [
        ("in", "noisy audio\n48 kHz", 0.0, 2.0, ()),
        ("stft", f"STFT analysis\nwindow {fft}, hop {hop}", 2.4, 2.0, ("stft",)),
        ("feat", f"features\n{erb} ERB bands (dB)\n+ {df} complex bins", 4.8, 2.0, ("norm",)),
        ("enc", "encoder\nconvs + GRU", 7.2, 2.0, ("conv", "gru_enc", "lookahead")),
        ("erb", f"ERB decoder\nconvs + GRUs\n→ {erb} gains", 9.6, 2.0, ("conv", "gru_erb")),
        ("dfd", f"DF decoder\nconv + GRUs\n→ {order}-tap filters", 9.6, 0.3, ("conv", "gru_df")),
        ("gain", "apply the gains\nto the delayed\nnoisy spectrum", 12.0, 2.0, ()),
        ("dfilt", f"deep filter: lowest\n{df} bins, {order} past\n+ future frames", 12.0, 0.3, ("df_buffer",)),
        ("syn", "STFT synthesis\noverlap-add", 14.4, 1.15, ("stft",)),
        ("out", "enhanced audio\n(delayed)", 16.8, 1.15, ()),
    ]


def plot_pipeline(spec: Any = None, *, ax=None, title: str = "") -> Figure:
    """Draw the pipeline (boxes, data flow, state-group badges, the lookahead) on ``ax``; return the figure.

    Parameters
    ----------
    spec : dfnb.models.ModelSpec, optional
        Sizes to print in the boxes (hop, window, bands, bins, filter taps, lookahead); generic labels if None.

    Examples
    --------
    >>> fig = plot_pipeline(load_model("DeepFilterNet3").spec)  # doctest: +SKIP

    Notebook: 00_tour
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    fig, ax = axes_for(ax, figsize=(14.0, 4.2))
    boxes = {k: (x, y) for k, _, x, y, _ in _stages(spec)}
    w, h = 1.75, 1.05
    for key, label, x, y, groups in _stages(spec):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc="white",
                                    ec="0.2", lw=1.2, gid=f"stage:{key}"))
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5)
        bx = x - w / 2 + 0.02
        for grp in groups:
            color = _HOST_COLOR if grp in HOST_GROUPS else _GRAPH_COLOR
            ax.text(bx, y - h / 2 - 0.22, grp, fontsize=7, va="center", ha="left",
                    bbox={"boxstyle": "round,pad=0.2", "fc": color, "ec": "none"}, gid=f"state:{grp}")
            bx += 0.085 * len(grp) + 0.3

    def arrow(a, b, text="", bend=0.0):
        (xa, ya), (xb, yb) = boxes[a], boxes[b]
        start = (xa + w / 2, ya) if abs(ya - yb) < 0.01 or xb > xa + w else (xa, ya - h / 2)
        end = (xb - w / 2, yb) if xb > xa + w / 2 else (xb, yb + h / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.1, color="0.25",
                                     connectionstyle=f"arc3,rad={bend}"))
        if text:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", fontsize=7,
                    color="0.3")

    for a, b, text in [("in", "stft", ""), ("stft", "feat", ""), ("feat", "enc", ""), ("enc", "erb", "emb, e0-e3"),
                       ("erb", "gain", "gains"), ("dfd", "dfilt", "coefs"), ("gain", "syn", ""), ("dfilt", "syn", ""),
                       ("syn", "out", "")]:
        arrow(a, b, text)
    arrow("enc", "dfd", "", bend=0.25)
    ax.text(8.15, 1.0, "emb, c0", fontsize=7, color="0.3")
    la = getattr(spec, "conv_lookahead", None) if spec is not None else None
    dl = getattr(spec, "df_lookahead", None) if spec is not None else None
    look = (f"lookahead: the encoder sees features {la} frame(s) ahead of the frame it enhances,\nthe deep filter "
            f"{dl} frame(s) ahead: the output lags the input" if la is not None else
            "lookahead: the model waits for a few future frames: the output lags the input")
    ax.text(0.0 - w / 2, 0.55, look, ha="left", va="center", fontsize=7.5, style="italic",
            bbox={"boxstyle": "round,pad=0.3", "fc": _HOST_COLOR, "alpha": 0.35, "ec": "none"})
    ax.legend(handles=[Patch(fc=_HOST_COLOR, label="state a host keeps (outside the graphs)"),
                       Patch(fc=_GRAPH_COLOR, label="state a stateful graph carries (full/step export)")],
              loc="lower left", fontsize=8, frameon=False, bbox_to_anchor=(0.0, 0.0))
    ax.set_xlim(-1.0, 17.8)
    ax.set_ylim(-0.6, 2.7)
    ax.set_axis_off()
    ax.set_title(title or "DeepFilterNet, one 10 ms hop at a time: stages and the memory each keeps")
    return fig
