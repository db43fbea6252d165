"""Enhance a file into a file, block by block, in memory that does not grow with its length — for every runtime.

:func:`enhance_file` reads the input in blocks (:class:`dfnb.audio.AudioReader`: every block through the same
gate as an array, so a NaN an hour in is named by its time), resamples it to the model's rate on the fly
(soxr's ``ResampleStream``, bit-identical to resampling the whole file at once) when the file is not at
48 kHz, feeds the runtime in calls of ``chunk`` hops through the same :class:`dfnb.runtime.Feeder` as
:func:`dfnb.runtime.enhance` (padding, flush, delay removal, length fitting: one copy of that logic),
resamples the output back and writes it block by block into a temporary file that is put in place only
when everything succeeded (:func:`dfnb.audio.audio_writer`). The output has exactly the input's length and
sample rate and lines up with it sample by sample.

What stays in memory is one block of audio and the runtime's state, whatever the length. The offline
reference does this too: :class:`dfnb.offline.BlockOffline` runs the PyTorch model over 5 s blocks with every
state carried. ``benchmarks/file_memory.py`` prints peak RSS and time for 1 min, 10 min and 2 h files.

Notebook: 00_tour
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import audio as audio_mod
from .args import check_flag, check_path, shown
from .errors import ArgumentError, AudioError
from .runtime import Feeder, check_chunk, check_runtime

__all__ = ["FileResult", "Progress", "enhance_file", "BLOCK_SECONDS", "PROGRESS_MIN_SECONDS"]

BLOCK_SECONDS = 1.0
"""Seconds of input read (and written) per block."""
PROGRESS_MIN_SECONDS = 30.0
"""Inputs at least this long get a progress bar (when stderr is a terminal)."""


@dataclass
class FileResult:
    """What :func:`enhance_file` wrote: path, sample rate, length, subtype, PCM-clipped samples, wall time."""

    path: Path
    sr: int
    samples: int
    subtype: str
    clipped: int
    seconds: float

    @property
    def duration(self) -> float:
        return self.samples / self.sr


class Progress:
    """A progress display on stderr for ``done/total`` hops: tqdm when it is installed, else one line rewritten
    at most twice a second. Use as ``progress(done_hops, total_hops)``; :meth:`close` ends the line.

    Notebook: 00_tour
    """

    def __init__(self, total_seconds: float, hop_seconds: float, label: str = "enhancing"):
        self.hop_seconds, self.label, self.total_seconds = hop_seconds, label, total_seconds
        self._last = 0.0
        self._t0 = time.perf_counter()
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=round(total_seconds, 1), unit="s audio", desc=label, file=sys.stderr,
                             leave=False, dynamic_ncols=True)
        except ImportError:
            self._bar = None

    def __call__(self, done: int, total: int) -> None:
        sec = min(done * self.hop_seconds, self.total_seconds)
        if self._bar is not None:
            self._bar.update(round(sec - self._bar.n, 1))
            return
        now = time.perf_counter()
        if now - self._last >= 0.5:
            self._last = now
            pct = 100.0 * sec / max(self.total_seconds, 1e-9)
            speed = sec / max(now - self._t0, 1e-9)
            print(f"\r{self.label}: {sec:8.1f} / {self.total_seconds:.1f} s of audio ({pct:5.1f} %, "
                  f"{speed:5.1f}x realtime)", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._last:
            print("\r" + " " * 79 + "\r", end="", file=sys.stderr, flush=True)


def _progress_for(progress: Any, seconds: float, hop_seconds: float) -> tuple[Callable | None, Progress | None]:
    """``progress`` (None/False, True: a bar on a terminal for long inputs, or a callable) as a callback."""
    if progress is None or progress is False:
        return None, None
    if progress is True:
        if seconds < PROGRESS_MIN_SECONDS or not sys.stderr.isatty():
            return None, None
        bar = Progress(seconds, hop_seconds)
        return bar, bar
    if callable(progress):
        return progress, None
    raise ArgumentError(f"progress must be True/False or a function progress(done_hops, total_hops), got "
                        f"{shown(progress)}.")


def enhance_file(runtime: Any, src: str | os.PathLike, dst: str | os.PathLike, *, chunk: int | None = None,
                 subtype: str | None = None, overwrite: bool = False, downmix: bool = False,
                 progress: Any = None, block_seconds: float = BLOCK_SECONDS) -> FileResult:
    """Enhance the audio file ``src`` into ``dst`` with ``runtime``, block by block (see the module docstring).

    Parameters
    ----------
    runtime : Runtime
        Any dfnb runtime (:func:`dfnb.hosts.open_host`, :class:`dfnb.streaming.Stream`,
        :class:`dfnb.offline.BlockOffline`, ...); it is reset first and held for the whole file.
    src, dst : path
        Input (any sample rate soundfile reads; mono, or ``downmix=True``) and output (``.wav``/``.flac``).
        ``dst`` is checked before any work (:func:`dfnb.audio.check_output`): never the input, never a file
        dfnb did not write, replaced only with ``overwrite=True``.
    chunk : int, optional
        Hops per runtime call (default ``runtime.default_chunk``: 1 for the realtime runtimes, 500 for
        :class:`~dfnb.offline.BlockOffline`).
    subtype : str, optional
        Output sample format (:func:`dfnb.audio.output_format`).
    progress : bool or callable, optional
        ``True``: a progress bar on stderr for inputs of 30 s or more when stderr is a terminal;
        a callable gets ``(done_hops, total_hops)``.

    Returns
    -------
    FileResult

    Raises
    ------
    AudioError
        Bad input (unreadable, empty, multichannel without ``downmix``, NaN/Inf or unscaled PCM anywhere: the
        message names the first bad sample's time) or output; nothing is written then.

    Examples
    --------
    >>> from dfnb.hosts import open_host  # doctest: +SKIP
    >>> enhance_file(open_host("models/dfn3_step"), "meeting.wav", "meeting_enhanced.flac")  # doctest: +SKIP

    Notebook: 00_tour
    """
    rt = check_runtime(runtime, "enhance_file()")
    chunk = check_chunk(rt.default_chunk if chunk is None else chunk)
    src = check_path(src, "src", error=AudioError, what="the path of the input audio file")
    dst = check_path(dst, "dst", error=AudioError, what="the path of the output audio file")
    overwrite = check_flag(overwrite, "overwrite", error=AudioError)
    block_seconds = float(block_seconds) if isinstance(block_seconds, (int, float)) and block_seconds > 0 else None
    if block_seconds is None:
        raise ArgumentError("block_seconds must be a positive number of seconds.")
    _, subtype = audio_mod.check_output(dst, subtype=subtype, overwrite=overwrite, sources=[src])
    t0 = time.perf_counter()
    with audio_mod.AudioReader(src, downmix=downmix) as reader, rt.exclusive():
        sr, model_sr, frames = reader.sr, int(rt.cfg.sr), reader.frames
        hop, fft = rt.cfg.hop_size, rt.cfg.fft_size
        total = (round(frames * model_sr / sr) + fft) // hop
        callback, bar = _progress_for(progress, frames / sr, hop / model_sr)
        rt.reset()
        feeder = Feeder(rt, chunk, total_hops=total, progress=callback)
        into = _Resampler(sr, model_sr)
        back = _Resampler(model_sr, sr)
        clipped = written = 0
        try:
            with audio_mod.audio_writer(dst, sr, overwrite=overwrite, subtype=subtype, sources=[src]) as write:
                def emit(y48: np.ndarray, last: bool = False) -> None:
                    nonlocal clipped, written
                    n = reader.position  # the output never outgrows the input read so far
                    y = back(y48, last)[: max(0, n - written)]
                    if last and written + len(y) < n:
                        y = np.concatenate([y, np.zeros(n - written - len(y), np.float32)])
                    if subtype != "FLOAT":
                        clipped += int(np.count_nonzero(np.abs(y) > 1.0))
                    if len(y):
                        write(y)
                        written += len(y)

                for block in reader.blocks(max(1, int(block_seconds * sr))):
                    emit(feeder.push(into(block)))
                tail = into(np.zeros(0, np.float32), True)
                emit(np.concatenate([feeder.push(tail), feeder.finish()]), last=True)
        finally:
            if bar is not None:
                bar.close()
    return FileResult(Path(dst), sr, written, subtype, clipped, time.perf_counter() - t0)


class _Resampler:
    """soxr's streaming resampler (the quality of :func:`dfnb.audio.resample`), or nothing at equal rates."""

    def __init__(self, sr_in: int, sr_out: int):
        self._rs = None
        if sr_in != sr_out:
            import soxr

            self._rs = soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality=audio_mod.RESAMPLE_QUALITY)

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self._rs is None:
            return x
        return np.ascontiguousarray(self._rs.resample_chunk(x, last=last), dtype=np.float32)
