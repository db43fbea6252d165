"""Read, validate, resample and write audio — the gate every sample passes before it reaches the DSP.

Everything here is torch-free (numpy, soundfile, soxr). Arrays are mono float32, 1-D, at a sample rate
between 8000 and 192000 Hz; anything else ends in an :class:`~dfnb.errors.AudioError` that says what was
wrong and what to do.

Conventions:

* **Scale.** Integer PCM maps to float32 by dividing by full scale (``int16 / 32768``, ``int32 / 2**31``,
  ``int8 / 128``, ``(uint8 - 128) / 128``), so values lie in [-1, 1) (int32 within 64 LSB of full scale
  rounds to exactly 1.0 in float32). 24-bit PCM is expected left-justified
  in int32, which is how soundfile and ``scipy.io.wavfile`` return it.
* **Loud floats.** Float samples with a peak between 1 and 32 are accepted as they are: nothing is clipped
  or rescaled (an enhancer may legitimately produce a few overs). A peak above 32 almost always means
  integer PCM stored as float without scaling, so it is refused.
* **Resampling** uses soxr at quality ``"VHQ"`` (very high quality: passband to ~0.91 of the lower Nyquist,
  > 170 dB stop-band); the output length is ``round(n * sr_out / sr_in)`` within one sample.
* **Writing** is atomic: a temporary file in the target folder, then a rename (:mod:`dfnb.placement`). An
  existing file is replaced only when asked (``overwrite=True`` / ``--force``) and only if dfnb wrote it
  (dfnb tags its files: ``comment`` = ``written by dfnb <version>``); a failed write leaves nothing behind.
  wav holds float32 (the default); flac holds 24- or 16-bit PCM; lossy formats are refused.

"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dfnb.args import check_flag, check_path, check_paths, shown
from dfnb.errors import AudioError
from dfnb.placement import building_file, check_target, marker_text

__all__ = [
    "MODEL_SR",
    "MIN_SR",
    "MAX_SR",
    "FLOAT_PEAK_LIMIT",
    "RESAMPLE_QUALITY",
    "read_audio",
    "check_audio",
    "check_values",
    "check_sr",
    "AudioReader",
    "to_float32",
    "resample",
    "OUTPUT_SUBTYPES",
    "output_format",
    "check_output",
    "write_audio",
    "audio_writer",
]

MODEL_SR = 48000
"""The sample rate every DeepFilterNet model runs at."""
MIN_SR, MAX_SR = 8000, 192000
"""Accepted sample-rate range (inclusive)."""
FLOAT_PEAK_LIMIT = 32.0
"""Float audio with a larger peak is taken to be unscaled integer PCM and refused."""
RESAMPLE_QUALITY = "VHQ"
"""soxr quality recipe used by :func:`resample`."""
OUTPUT_SUBTYPES = ("FLOAT", "PCM_24", "PCM_16")
"""What the CLI's ``--subtype`` offers, in order of preference for the default."""

_INT_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def check_sr(sr: Any, *, name: str = "audio") -> int:
    """Return ``sr`` as an int, or raise :class:`AudioError` if it is not an integer in 8000..192000 Hz."""
    if isinstance(sr, bool) or not isinstance(sr, numbers.Real) or not float(sr).is_integer():
        raise AudioError(f"{name}: sample rate {shown(sr)} is not an integer number of Hz; "
                         "pass an integer such as 16000 or 48000.")
    sr = int(sr)
    if not MIN_SR <= sr <= MAX_SR:
        raise AudioError(f"{name}: sample rate {sr} Hz is outside {MIN_SR}..{MAX_SR} Hz; "
                         "check the value (Hz, not kHz) or resample the audio into that range first.")
    return sr


def to_float32(x: Any) -> np.ndarray:
    """Convert samples to float32 on the [-1, 1) scale: integer PCM is divided by full scale, floats are cast.

    Supported: int8, uint8 (offset 128), int16, int32 (also 24-bit PCM left-justified in int32),
    float16, float32, float64. Anything else raises :class:`AudioError`.
    """
    a = np.asarray(x)
    if a.dtype in _INT_SCALE:
        return (a.astype(np.float64) / _INT_SCALE[a.dtype]).astype(np.float32)
    if a.dtype == np.uint8:
        return ((a.astype(np.float64) - 128.0) / 128.0).astype(np.float32)
    if a.dtype.kind == "f":
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf; check_audio says why
            return a.astype(np.float32)
    raise AudioError(f"audio samples of dtype {a.dtype} are not supported; pass float16/32/64 samples or "
                     "integer PCM as int8, uint8, int16 or int32.")


def check_audio(x: Any, sr: Any, *, min_samples: int = 1, name: str = "audio") -> np.ndarray:
    """Validate mono audio and return it as a new float32 1-D array (integer PCM is scaled, see module doc).

    Raises :class:`AudioError` for: a sample rate that is not an integer in 8000..192000 Hz, an array that
    is not 1-D, fewer than ``min_samples`` samples (or none), NaN/Inf samples (the message gives the time and
    index of the first one), or a float peak above 32 (unscaled integer PCM). Peaks between 1 and 32 pass
    unchanged.
    """
    sr = check_sr(sr, name=name)
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 0:
        raise AudioError(f"{name}: min_samples must be an int >= 0, got {shown(min_samples)}.")
    a = np.asarray(x)
    if a.ndim != 1:
        hint = ("it looks like [channels, samples] or [samples, channels]: average the channels "
                "(x.mean(axis=...)) or read the file with downmix=True / --downmix"
                if a.ndim == 2 else "pass a 1-D mono array of samples")
        raise AudioError(f"{name}: expected a 1-D mono array, got shape {a.shape} ({a.ndim}-D); {hint}.")
    out = to_float32(a)
    if out is a:  # never hand back the caller's own buffer
        out = out.copy()
    if out.size == 0:
        raise AudioError(f"{name}: is empty (0 samples); pass a file or array that contains audio.")
    if out.size < min_samples:
        raise AudioError(f"{name}: has {out.size} samples ({out.size / sr:.3f} s at {sr} Hz) but at least "
                         f"{min_samples} are needed; pass a longer signal or zero-pad it.")
    check_values(out, sr, name=name, original=a)
    return out


def _when(i: int, sr: int) -> str:
    """``"12.345 s"``, with the clock time from a minute on (``"4320.000 s = 1:12:00.000"``)."""
    t = i / sr
    if t < 60:
        return f"{t:.3f} s"
    h, rem = divmod(t, 3600)
    m, sec = divmod(rem, 60)
    return f"{t:.3f} s = {int(h)}:{int(m):02d}:{sec:06.3f}"


def check_values(x: np.ndarray, sr: int, *, name: str = "audio", offset: int = 0, original: Any = None) -> None:
    """Raise :class:`AudioError` if float32 samples ``x`` hold NaN/Inf (naming the first one's index and time)
    or peak above :data:`FLOAT_PEAK_LIMIT`. ``offset``: index of ``x[0]`` in the whole signal (a block of a
    file); ``original``: the array ``x`` was converted from (so a huge float64 is not mistaken for Inf)."""
    a = x if original is None else np.asarray(original)
    finite = np.isfinite(x)
    all_finite = bool(finite.all())
    src = finite if all_finite else np.isfinite(a.astype(np.float64))  # not the float32 overflow of a huge value
    if not src.all():
        i = int(np.argmin(src))
        what = "NaN" if np.isnan(x[i]) else "Inf"
        raise AudioError(f"{name}: sample {offset + i} (at {_when(offset + i, sr)}, {sr} Hz) is {what}; the first "
                         "non-finite sample is there. Fix the step that produced it, or replace bad samples "
                         "(e.g. np.nan_to_num) before passing the audio in.")
    peak = float(np.max(np.abs(x))) if all_finite else float(np.max(np.abs(a.astype(np.float64))))
    if peak > FLOAT_PEAK_LIMIT:
        where = f" (from sample {offset}, {_when(offset, sr)})" if offset else ""
        raise AudioError(f"{name}: peak |x| = {peak:g}{where} is far outside [-1, 1] (> {FLOAT_PEAK_LIMIT:g}); this "
                         "is likely integer PCM stored as float without scaling. Divide by 32768 (16-bit) or "
                         "2**31 (32-bit), or pass the integer array itself so dfnb scales it.")


class AudioReader:
    """An audio file opened for reading, whole or block by block, as mono float32 (``downmix=True`` averages a
    multichannel file's channels; without it such a file is refused). Opening checks the path, the format,
    the channels and the sample rate; every block passes :func:`check_values` with its index and time in the
    whole file, so a NaN an hour in is named by that hour.

    Examples
    --------
    >>> with AudioReader("long.wav") as r:  # doctest: +SKIP
    ...     for block in r.blocks(48000):
    ...         ...
    """

    def __init__(self, path: str | os.PathLike, *, downmix: bool = False):
        import soundfile as sf

        p = check_path(path, "audio file", error=AudioError, what="the path of an audio file")
        self.downmix = check_flag(downmix, "downmix", error=AudioError)
        self.path, self.name = p, str(p)
        self.position = 0  # samples yielded by blocks() so far
        if not p.exists():
            raise AudioError(f"audio file not found: {p} (absolute: {p.absolute()}); check the path.")
        if not p.is_file():
            raise AudioError(f"{p} is not a file; pass the path of an audio file (wav, flac, ogg, ...).")
        try:
            self._f = sf.SoundFile(str(p))
        except (sf.SoundFileError, RuntimeError) as e:
            raise AudioError(f"{p} is not an audio file soundfile can read ({e}); pass a wav/flac/ogg file, "
                             "or convert it first (e.g. ffmpeg -i in.mp4 -ac 1 out.wav).") from None
        self.channels, self.frames = int(self._f.channels), int(self._f.frames)
        try:
            self.sr = check_sr(self._f.samplerate, name=self.name)
            if self.channels > 1 and not self.downmix:
                raise AudioError(f"{p} has {self.channels} channels; dfnb processes mono: pass downmix=True / "
                                 "--downmix to average channels.")
        except AudioError:
            self.close()
            raise

    def _mono(self, data: np.ndarray) -> np.ndarray:
        if self.channels > 1:
            return data.mean(axis=1, dtype=np.float64).astype(np.float32)
        return np.ascontiguousarray(data[:, 0])

    def read(self) -> np.ndarray:
        """The rest of the file as one mono float32 array (not yet gated: see :func:`read_audio`)."""
        return self._mono(self._f.read(dtype="float32", always_2d=True))

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        """Mono float32 blocks of ``size`` samples (the last one shorter), each gated; an empty file is refused."""
        while True:
            block = self._mono(self._f.read(int(size), dtype="float32", always_2d=True))
            if not len(block):
                break
            check_values(block, self.sr, name=self.name, offset=self.position)
            self.position += len(block)
            yield block
        if self.position == 0:
            raise AudioError(f"{self.name}: is empty (0 samples); pass a file or array that contains audio.")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_audio(path: str | os.PathLike, *, downmix: bool = False) -> tuple[np.ndarray, int]:
    """Read an audio file into (float32 1-D samples, sample rate), validated by :func:`check_audio`.

    A multichannel file is refused unless ``downmix=True``, which averages the channels. For files too long to
    hold in memory, read them block by block with :class:`AudioReader`.
    """
    with AudioReader(path, downmix=downmix) as r:
        data = r.read()
    return check_audio(data, r.sr, name=r.name), r.sr


def resample(x: Any, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono audio with soxr (quality ``"VHQ"``); returns float32 of ``round(n*sr_out/sr_in)`` ±1 samples.

    Equal rates return a validated copy. Both rates must be integers in 8000..192000 Hz.
    """
    import soxr

    sr_in, sr_out = check_sr(sr_in, name="resample input"), check_sr(sr_out, name="resample output")
    a = check_audio(x, sr_in, name="resample input")
    if sr_in == sr_out:
        return a
    return np.ascontiguousarray(soxr.resample(a, sr_in, sr_out, quality=RESAMPLE_QUALITY), dtype=np.float32)


def output_format(path: str | os.PathLike, subtype: str | None = None) -> tuple[str, str]:
    """``(container, subtype)`` that :func:`write_audio` uses for ``path``, or :class:`AudioError` if none fits.

    The container follows the suffix (``.wav``, ``.flac``, ...). ``subtype=None`` picks ``"FLOAT"`` where the
    container holds float samples (wav) and ``"PCM_24"`` otherwise (flac); lossy-only containers (ogg, mp3)
    are refused unless their own subtype is asked for, so dfnb never writes different audio silently.

    Examples
    --------
    >>> output_format("out.flac")
    ('FLAC', 'PCM_24')
    """
    import soundfile as sf

    p = check_path(path, "output path", error=AudioError, what="the path of an audio file")
    if subtype is not None and not isinstance(subtype, str):
        raise AudioError(f"cannot write {p}: subtype must be one of {', '.join(OUTPUT_SUBTYPES)} or None, got "
                         f"{shown(subtype)}.")
    container = p.suffix.lstrip(".").upper()
    if not container or container not in sf.available_formats():
        raise AudioError(f"cannot write {p}: unknown audio format {p.suffix!r}; use .wav or .flac.")
    if subtype is None:
        subtype = next((s for s in OUTPUT_SUBTYPES[:2] if sf.check_format(container, s)), None)
        if subtype is None:
            raise AudioError(f"cannot write {p}: {container} holds neither float nor 24-bit PCM samples (only "
                             f"{', '.join(sf.available_subtypes(container))}); use .wav (FLOAT, PCM_24, PCM_16) "
                             "or .flac (PCM_24, PCM_16).")
    if not sf.check_format(container, subtype):
        raise AudioError(f"cannot write {p}: subtype {shown(subtype)} is not valid for {container} (it takes "
                         f"{', '.join(sf.available_subtypes(container))}); use 'FLOAT', 'PCM_24' or 'PCM_16' "
                         "with .wav, 'PCM_24' or 'PCM_16' with .flac.")
    return container, subtype


def check_output(path: str | os.PathLike, *, subtype: str | None = None, overwrite: bool = False,
                 sources: Iterable = ()) -> tuple[str, str]:
    """Check everything about an output file that can be checked before any processing; return
    :func:`output_format`'s ``(container, subtype)``.

    Raises :class:`AudioError` if the format or subtype does not fit, the folder is missing or not writable,
    the path is a folder, one of ``sources`` (e.g. the input file), or exists and ``overwrite`` is false or
    it was not written by dfnb (:mod:`dfnb.placement`: dfnb tags its audio files).

    Examples
    --------
    >>> check_output("enhanced.wav", sources=["noisy.wav"])  # doctest: +SKIP
    ('WAV', 'FLOAT')
    """
    fmt = output_format(path, subtype)
    overwrite = check_flag(overwrite, "overwrite", error=AudioError)
    sources = check_paths(sources, "sources", error=AudioError)
    check_target(path, folder=False, replace=overwrite, sources=sources, error=AudioError, make_parent=False,
                 force_hint="overwrite=True (CLI: --force)", what="output path")
    return fmt


@contextmanager
def audio_writer(path: str | os.PathLike, sr: int, *, overwrite: bool = False, subtype: str | None = None,
                 sources: Iterable = ()) -> Iterator[Callable[[np.ndarray], None]]:
    """Open a mono output file for writing block by block; yields ``write(block)``. The file is built under a
    temporary name beside ``path`` and put in place only when the block ends without an error
    (:mod:`dfnb.placement`), with dfnb's tag, so a failure halfway leaves nothing behind and never touches an
    existing file. Same checks as :func:`write_audio` (done first).

    Examples
    --------
    >>> with audio_writer("out.wav", 48000) as write:  # doctest: +SKIP
    ...     for block in blocks:
    ...         write(block)
    """
    import soundfile as sf

    p = check_path(path, "output path", error=AudioError, what="the path of an audio file")
    sr = check_sr(sr, name=f"audio to write to {p}")
    sources = check_paths(sources, "sources", error=AudioError)
    container, subtype = check_output(p, subtype=subtype, overwrite=overwrite, sources=sources)
    fail = (sf.SoundFileError, RuntimeError, OSError)
    with building_file(p, replace=overwrite, sources=sources, error=AudioError, what="output path") as tmp:
        try:
            f = sf.SoundFile(str(tmp), "w", sr, 1, subtype=subtype, format=container)
            f.comment = marker_text()
        except fail as e:
            raise AudioError(f"could not write {p}: {e}; check the folder is writable and has space.") from None

        def write(block: np.ndarray) -> None:
            try:
                f.write(block)
            except fail as e:
                raise AudioError(f"could not write {p}: {e}; check the folder is writable and has space.") from None

        try:
            yield write
        finally:
            f.close()


def write_audio(path: str | os.PathLike, x: Any, sr: int, *, overwrite: bool = False,
                subtype: str | None = None, sources: Iterable = ()) -> Path:
    """Write mono audio atomically and return the path.

    ``subtype=None`` / ``"FLOAT"`` (wav) stores float32 exactly, overs included, so a written output can be
    compared bit for bit; ``"PCM_24"`` (flac's default) / ``"PCM_16"`` give smaller files for listening
    (soundfile clips to [-1, 1)). The container follows the suffix (:func:`output_format`). The file carries
    dfnb's tag in its ``comment`` metadata and the umask's permissions. An existing file is replaced only
    with ``overwrite=True`` and only if dfnb wrote it; ``sources`` (files being read) are never replaced
    (:func:`check_output`).

    Examples
    --------
    >>> write_audio("out.flac", y, 48000, subtype="PCM_16")  # doctest: +SKIP
    PosixPath('out.flac')
    """
    p = check_path(path, "output path", error=AudioError, what="the path of an audio file")
    a = check_audio(x, sr, name=f"audio to write to {p}")
    with audio_writer(p, sr, overwrite=overwrite, subtype=subtype, sources=sources) as write:
        write(a)
    return p
