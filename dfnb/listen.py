"""Listening: A/B/residual audio players at one common gain, never normalised one by one.

``IPython.display.Audio`` scales every clip to full scale by default, so a quiet residual sounds as loud as the
signal and a level difference cannot be heard. :func:`players` instead plays every signal of a comparison —
and the residuals ``a − b`` it is asked for — at ONE gain (:func:`common_gain`: the loudest peak of the group
just below full scale, never amplified above the original level), with ``normalize=False``, and prints each
one's peak and RMS level next to its player (16-bit, sent as lossless FLAC to keep pages small). A residual of
an exact stream is below 16-bit resolution: its player is silent, which is the point. ``boost_db`` adds a
louder copy of each residual, labelled as such.

Notebook: 01_why_stateless_diverges
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import AudioError
from .metrics import as_signal

__all__ = ["common_gain", "residual", "players"]


def common_gain(signals: Mapping[str, np.ndarray] | Sequence[np.ndarray], headroom_db: float = -1.0) -> float:
    """One linear gain for a group of signals: their loudest peak lands at ``headroom_db`` dBFS, but the gain
    never exceeds 1 (quiet recordings keep their level); 1 for an all-silent group."""
    arrays = list(signals.values()) if isinstance(signals, Mapping) else list(signals)
    peak = max((float(np.max(np.abs(as_signal(a)))) for a in arrays), default=0.0)
    limit = 10.0 ** (headroom_db / 20.0)
    return 1.0 if peak <= limit else limit / peak


def residual(a, b) -> np.ndarray:
    """``a − b`` of two sample-aligned signals of equal length (float32)."""
    x, y = as_signal(a, "a"), as_signal(b, "b")
    if x.size != y.size:
        raise AudioError(f"cannot form a residual of {x.size} and {y.size} samples: the signals must be sample-"
                         "aligned and of equal length (dfnb.runtime.enhance output is)")
    return (x - y).astype(np.float32)


def _flac(player):
    """The player's 16-bit WAV re-encoded losslessly as FLAC (smaller pages), when libsndfile can."""
    import io

    import soundfile as sf

    try:
        pcm, rate = sf.read(io.BytesIO(player.data), dtype="int16")
        buf = io.BytesIO()
        sf.write(buf, pcm, rate, format="FLAC", subtype="PCM_16")
    except (RuntimeError, sf.SoundFileError):  # a libsndfile without FLAC: keep the WAV
        return player
    player.data, player.mimetype = buf.getvalue(), "audio/flac"
    return player


def _level(x: np.ndarray) -> str:
    peak, rms = float(np.max(np.abs(x))), float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    db = lambda v: "−∞" if v <= 0 else f"{20 * np.log10(v):.1f}"  # noqa: E731
    return f"peak {db(peak)} dBFS, RMS {db(rms)} dBFS"


def players(signals: Mapping[str, np.ndarray], sr: int, *, residuals: Sequence[tuple[str, str]] = (),
            boost_db: float | None = None, gain: float | None = None, title: str = ""):
    """An HTML table of audio players (``IPython.display.Audio(..., normalize=False)``), one per signal and one
    per residual ``(a, b)`` → ``"a − b"``, all at one ``gain`` (default :func:`common_gain` of everything
    played), each with its level after the gain.

    Parameters
    ----------
    signals : mapping of name -> 1-D array
        Sample-aligned outputs to compare (e.g. offline reference, a host's output, the noisy input).
    sr : int
        Their sample rate.
    residuals : sequence of (name, name)
        Pairs of keys of ``signals`` whose difference to play.
    boost_db : float, optional
        Also play each residual louder by this many dB (clipped to ±1, and labelled).
    gain : float, optional
        Override the common gain (linear).

    Returns
    -------
    IPython.display.HTML
        Display it (the last expression of a cell, or ``display(...)``).

    Examples
    --------
    >>> players({"offline": ref, "host": y}, 48000, residuals=[("offline", "host")])  # doctest: +SKIP

    Notebook: 01_why_stateless_diverges
    """
    from IPython.display import HTML, Audio

    clips = {k: as_signal(v, k) for k, v in signals.items()}
    for a, b in residuals:
        missing = [k for k in (a, b) if k not in signals]
        if missing:
            raise AudioError(f"residual {a!r} − {b!r}: {missing} not among the signals {list(signals)}")
        clips[f"{a} − {b} (residual)"] = residual(signals[a], signals[b])
    g = common_gain(clips) if gain is None else float(gain)
    rows = [(name, np.clip(g * x, -1.0, 1.0)) for name, x in clips.items()]
    if boost_db is not None:
        for a, b in residuals:
            x = g * 10.0 ** (boost_db / 20.0) * clips[f"{a} − {b} (residual)"]
            note = " — clipped" if np.max(np.abs(x)) > 1.0 else ""
            rows.append((f"{a} − {b}, +{boost_db:g} dB louder than the rest{note}", np.clip(x, -1.0, 1.0)))
    cells = []
    for name, x in rows:
        player = _flac(Audio(x.astype(np.float32), rate=sr, normalize=False))._repr_html_()  # the display protocol
        cells.append(f"<tr><td style='text-align:left'><b>{html.escape(name)}</b><br><small>{_level(x)}</small></td>"
                     f"<td>{player}</td></tr>")
    head = f"<p><b>{html.escape(title)}</b></p>" if title else ""
    note = (f"<small>All players at one gain ({20 * np.log10(g):+.1f} dB), not normalised: louder here is louder "
            "in the file.</small>")
    return HTML(f"{head}<table>{''.join(cells)}</table>{note}")
