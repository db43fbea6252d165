"""Check any clip through any folder against the PyTorch model it came from: the numbers of the fidelity report.

A user brings a recording (any wav: any sample rate; stereo is refused unless ``downmix``) and an exported
folder (any dfnb export; run by :func:`dfnb.hosts.open_host` the way a realtime host runs it). The reference is
the full-sequence PyTorch model with the same weights (:func:`dfnb.models.load_model` of the folder manifest's
model, :func:`dfnb.offline.enhance_offline`). :func:`sweep` measures the SNR of the difference at several chunk
sizes and :func:`verdict` says whether the folder is exact (≥ ``EXACT_DB``, float32 round-off) — the report
notebook (``notebooks/fidelity_report.py``, run by ``dfnb report``) draws the rest.

Notebook: fidelity_report
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AssetNotFoundError, DfnbError

__all__ = ["EXACT_DB", "DEFAULT_MODEL", "UserClip", "load_user_clip", "folder_model", "sweep", "verdict",
           "display_name"]

#: SNR of the difference (dB) at or above which two outputs count as equal (float32 round-off lies above it).
EXACT_DB = 90.0
#: The reference model of a folder that does not say (no manifest.json) and of a report without a folder.
DEFAULT_MODEL = "DeepFilterNet3"


@dataclass
class UserClip:
    """A clip ready for the model: ``audio`` is float32 mono at ``sr`` (48 kHz); ``clean`` when the clip has a
    clean reference (manifest clips), else None; ``name`` is what reports show (never an absolute path)."""

    name: str
    audio: np.ndarray
    sr: int
    clean: np.ndarray | None
    notes: list


def display_name(path_or_name: Any) -> str:
    """What a report shows for a path or name: the file or folder name only (never an absolute path)."""
    return Path(str(path_or_name)).name or str(path_or_name)


def load_user_clip(clip: str | Path, *, downmix: bool = False, max_seconds: float | None = None,
                   sr: int = 48000) -> UserClip:
    """A clip name from ``data/manifest.json`` or the path of any audio file, as 48 kHz mono float32.

    Parameters
    ----------
    clip : str or path
        A file soundfile can read (any sample rate; resampled with soxr), or a manifest clip name (then its clean
        reference comes along).
    downmix : bool
        Average the channels of a multichannel file; without it such a file raises
        :class:`~dfnb.errors.AudioError`.
    max_seconds : float, optional
        Keep only the beginning.

    Returns
    -------
    UserClip
        ``notes`` says what was done (resampled, downmixed, cut).

    Examples
    --------
    >>> c = load_user_clip("recordings/meeting.wav", max_seconds=10)  # doctest: +SKIP

    Notebook: fidelity_report
    """
    from . import clips
    from .audio import read_audio, resample

    notes: list[str] = []
    p = Path(str(clip))
    clean = None
    if p.is_file():
        x, rate = read_audio(p, downmix=downmix)
        name = p.name
        if downmix:
            notes.append("channels averaged (--downmix)")
    elif str(clip) in clips.clip_names():
        x, clean, rate = clips.load_pair(str(clip))
        name = str(clip)
    else:
        raise AssetNotFoundError(f"{clip!r} is neither an audio file nor a clip name; pass the path of a wav file, or "
                                 f"one of: {', '.join(clips.clip_names('noisy'))}.")
    if rate != sr:
        notes.append(f"resampled from {rate} Hz to {sr} Hz")
        x = resample(x, rate, sr)
        clean = None if clean is None else resample(clean, rate, sr)[: len(x)]
    if max_seconds is not None and len(x) > int(max_seconds * sr):
        notes.append(f"first {max_seconds:g} s of {len(x) / sr:.1f} s")
        x = x[: int(max_seconds * sr)]
        clean = None if clean is None else clean[: len(x)]
    return UserClip(name=name, audio=np.ascontiguousarray(x, np.float32), sr=sr, clean=clean, notes=notes)


def folder_model(folder: str | Path | None, model: str | None = None) -> tuple[str, str]:
    """``(model name, how it was chosen)`` of the reference for ``folder``: its manifest's model (``model``, when
    given, must agree), else ``model``, else :data:`DEFAULT_MODEL`.

    Notebook: fidelity_report
    """
    manifest = Path(folder) / "manifest.json" if folder is not None else None
    if manifest is not None and manifest.is_file():
        try:
            named = json.loads(manifest.read_text()).get("model")
        except (OSError, ValueError) as e:
            raise DfnbError(f"{manifest} is not readable JSON ({e}); re-export the folder or remove the "
                            "file.") from None
        if named:
            if model and model != named:
                raise DfnbError(f"{display_name(folder)} was exported from {named}, but --model {model} was given: "
                                f"the reference must have the folder's weights; omit --model or pass {named}.")
            return named, "from the folder's manifest.json"
    if model:
        return model, "given with --model"
    why = "no folder given" if folder is None else "the folder has no manifest.json: assumed, pass --model"
    return DEFAULT_MODEL, why


def sweep(make: Callable[[], Any], audio: np.ndarray, reference: np.ndarray, chunks: Sequence[int],
          keep: int | None = None) -> tuple[dict[int, float], np.ndarray | None, Any]:
    """SNR of the difference against ``reference`` of ``enhance(make(), audio, chunk=c)`` for every ``c``.

    Parameters
    ----------
    make : callable
        Returns a fresh :class:`dfnb.runtime.Runtime` (e.g. ``lambda: open_host(folder, probes=True)``).
    audio, reference : numpy.ndarray
        The 48 kHz input and the offline output to compare with.
    chunks : sequence of int
        Hops per call to try.
    keep : int, optional
        The chunk size whose output and runtime (its ``trace``) to return.

    Returns
    -------
    tuple
        ``({chunk: dB}, output at chunk keep, the runtime that produced it)`` (None, None when ``keep`` is not
        among ``chunks``).

    Examples
    --------
    >>> snrs, y, rt = sweep(lambda: open_host("models/dfn3_full"), x, ref, [1, 7], keep=7)  # doctest: +SKIP

    Notebook: fidelity_report
    """
    from .metrics import snr_of_difference
    from .runtime import enhance

    snrs, kept, kept_rt = {}, None, None
    for c in chunks:
        rt = make()
        y = enhance(rt, audio, chunk=int(c))
        snrs[int(c)] = snr_of_difference(reference, y)
        if keep is not None and int(c) == int(keep):
            kept, kept_rt = y, rt
    return snrs, kept, kept_rt


def verdict(snrs: dict[int, float], exact_db: float = EXACT_DB) -> tuple[bool, str]:
    """``(exact, one sentence)``: exact when every chunk size reaches ``exact_db``.

    Notebook: fidelity_report
    """
    worst = min(snrs, key=snrs.get)
    w = snrs[worst]
    if w >= exact_db:
        return True, (f"EXACT: the streamed output equals the PyTorch reference at every chunk size tried (worst "
                      f"{w:.1f} dB ≥ {exact_db:g} dB: float32 round-off).")
    audible = "audibly different" if w < 30 else "close, but not round-off"
    return False, (f"NOT EXACT: worst {w:.1f} dB at chunk {worst} (< {exact_db:g} dB; {audible}). The folder, or the "
                   "host running it, loses state between calls: see where below.")
