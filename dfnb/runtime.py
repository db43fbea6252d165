"""One contract for every hop runtime, and one :func:`enhance` for all of them.

A *runtime* turns a stream of 48 kHz samples into a stream of enhanced samples, 10 ms hop by 10 ms hop, and
remembers what it must between calls. dfnb has several — the PyTorch stream (:class:`dfnb.streaming.Stream`),
the onnxruntime host (:class:`dfnb.hosts.onnx.Host`), the fast step host (:class:`dfnb.hosts.fast.FastStepHost`),
the official runtime's emulation (:class:`dfnb.hosts.official.OfficialLikeHost`) and emulations of other
people's pipelines — and each is a :class:`Runtime`:

* ``reset()`` — back to the initial state (zero model states, fresh DSP, warm-up restarted);
* ``process(samples)`` — one host *call*: any number of samples in; out come the enhanced samples of every
  hop completed so far (a partial hop waits for the next call). Every call goes through the same audio gate:
  NaN/Inf or absurd peaks raise :class:`~dfnb.errors.AudioError` naming the stream time, and nothing of
  that call reaches the model, so the stream can go on;
* ``flush()`` — end of stream: the partial hop is completed with zeros and the lookahead drained with the zero
  frames that offline padding feeds;
* ``delay_samples`` — how far the output lags the input (constant);
* ``trace`` — the per-hop probe record: ``trace.lsnr`` (the encoder's local SNR estimate per model frame,
  in order: offline's ``lsnr`` probe) and ``trace.states`` (the states named in ``probes``, after each frame).

A runtime is single-threaded by contract: one object per stream. Two threads calling the same object at once
get a :class:`~dfnb.errors.StateError`, never silently mixed states.

:func:`enhance` does the padding, the calls of ``chunk`` hops, the flush, the delay removal and the length
fitting for every runtime, so any two outputs compare sample by sample with the offline reference.

Notebook: 02_stateful_export
"""

from __future__ import annotations

import threading
from array import array
from typing import Any, Callable, Iterable

import numpy as np

from . import audio as audio_mod
from .errors import AudioError, DfnbError, StateError

__all__ = ["Runtime", "Trace", "enhance", "check_chunk"]


class Trace:
    """Per-frame probes of a runtime: ``lsnr`` (float32 array) and ``states`` (name -> ``[frames, ...]``).

    Recorded only when the runtime was built with ``probes`` (a long stream stays flat in memory otherwise).
    """

    def __init__(self, names: Iterable[str] = ()):
        self._lsnr = array("f")
        self._states: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def add(self, lsnr: float, states: Callable[[str], np.ndarray] | None = None) -> None:
        """Record one model frame: its lsnr and, for each requested name, ``states(name)`` (copied)."""
        self._lsnr.append(float(lsnr))
        if states is not None:
            for n, rows in self._states.items():
                rows.append(np.array(states(n), dtype=np.float32, copy=True))

    @property
    def lsnr(self) -> np.ndarray:
        return np.frombuffer(self._lsnr, dtype=np.float32).copy() if len(self._lsnr) else np.zeros(0, np.float32)

    @property
    def states(self) -> dict[str, np.ndarray]:
        return {n: np.stack(rows) if rows else np.zeros(0, np.float32) for n, rows in self._states.items()}

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self._states)


def check_chunk(chunk: Any) -> int:
    """``chunk`` as a positive int of hops, or :class:`~dfnb.errors.DfnbError`."""
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise DfnbError(f"chunk must be a positive number of hops, got {chunk!r}.")
    return int(chunk)


class Runtime:
    """Base class of every hop runtime (see the module docstring). Subclasses implement:

    * ``_reset()`` — their own state back to initial;
    * ``_hops(x)`` — whole hops (``len(x) % hop_size == 0``, already gated) in, the same number of samples out;
    * ``_drain()`` — the lookahead's output at the end of the stream (``delay_frames`` hops, or nothing).

    and set ``self.cfg`` (a :class:`dfnb.dsp.DspConfig`), ``self.delay_samples`` and ``self.label`` before
    calling ``Runtime.__init__``.

    Notebook: 02_stateful_export
    """

    cfg: Any
    delay_samples: int
    label: str = "runtime"

    def __init__(self, probes: bool | Iterable[str] = False):
        names: tuple[str, ...] = ()
        if probes and not isinstance(probes, bool):
            if isinstance(probes, str):
                probes = (probes,)
            names = tuple(str(n) for n in probes)
        self._probe_names = names
        self.probes = bool(probes)
        self._busy = threading.Lock()
        self.reset()

    # -- the contract ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the exact initial state (the same input twice gives identical output)."""
        with self._guard("reset"):
            self._pending = np.zeros(0, np.float32)
            self.samples_in = 0
            self.trace = Trace(self._probe_names)
            self.last_lsnr = float("nan")
            self._reset()

    def process(self, samples: Any) -> np.ndarray:
        """One host call: samples in (any length), the enhanced samples of every completed hop out."""
        with self._guard("process"):
            x = self._gate(samples)
            h = self.cfg.hop_size
            if len(self._pending):
                x = np.concatenate([self._pending, x])
            n = len(x) // h * h
            self._pending = x[n:].copy()
            if n == 0:
                return np.zeros(0, np.float32)
            return self._hops(x[:n])

    def flush(self) -> np.ndarray:
        """End of stream: the partial hop completed with zeros, then the lookahead drained."""
        with self._guard("flush"):
            out = []
            if len(self._pending):
                h = self.cfg.hop_size
                out.append(self._hops(np.concatenate([self._pending, np.zeros(h - len(self._pending), np.float32)])))
                self._pending = np.zeros(0, np.float32)
            out.append(self._drain())
            return np.concatenate(out).astype(np.float32, copy=False)

    # -- for subclasses ---------------------------------------------------------------------------------
    def _reset(self) -> None:
        raise NotImplementedError

    def _hops(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _drain(self) -> np.ndarray:
        raise NotImplementedError

    def _record(self, lsnr: float, states: Callable[[str], np.ndarray] | None = None) -> None:
        """Called by subclasses once per model frame."""
        self.last_lsnr = float(lsnr)
        if self.probes:
            self.trace.add(lsnr, states if self._probe_names else None)

    # -- the gate -------------------------------------------------------------------------------------
    def _gate(self, samples: Any) -> np.ndarray:
        """Validate one call's samples; float32 1-D fast path, :func:`dfnb.audio.check_audio` otherwise."""
        x = samples
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 1):
            if x is None or isinstance(x, (str, bytes, dict)):
                raise AudioError(f"{self.label}: process() takes a 1-D array of samples, got {type(x).__name__}.")
            a = np.asarray(x)
            if a.ndim != 1 or a.dtype.kind not in "iuf":
                raise AudioError(f"{self.label}: process() takes a 1-D float or integer PCM array, got "
                                 f"{a.dtype}{list(a.shape)}; buffer mono samples at {self.cfg.sr} Hz.")
            if a.size == 0:
                return np.zeros(0, np.float32)
            x = audio_mod.to_float32(a)
        if x.size == 0:
            return np.zeros(0, np.float32)
        peak = float(np.max(np.abs(x)))
        if not peak <= audio_mod.FLOAT_PEAK_LIMIT:  # NaN compares False: one pass finds both
            bad = ~np.isfinite(x)
            if bad.any():
                i = int(np.argmax(bad))
                k = self.samples_in + len(self._pending) + i
                raise AudioError(f"{self.label}: stream sample {k} (at {k / self.cfg.sr:.3f} s; sample {i} of this "
                                 f"call) is {'NaN' if np.isnan(x[i]) else 'Inf'}; nothing of this call reached the "
                                 "model. Replace bad samples (e.g. np.nan_to_num) before passing them in.")
            audio_mod.check_audio(x, self.cfg.sr, name=f"{self.label} call")  # raises the peak message
        self.samples_in += len(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _guard(self, what: str) -> _Guard:
        return _Guard(self, what)


class _Guard:
    """The single-thread guard of one runtime call (a plain class: building a class per call cost µs per hop)."""

    __slots__ = ("rt", "what")

    def __init__(self, rt: Runtime, what: str):
        self.rt, self.what = rt, what

    def __enter__(self) -> None:
        rt = self.rt
        if not rt._busy.acquire(blocking=False):
            raise StateError(f"{rt.label}: {self.what}() called while another thread is inside this runtime; a "
                             "runtime holds one stream's state and is single-threaded: create one per thread or "
                             "stream.")

    def __exit__(self, *exc) -> bool:
        self.rt._busy.release()
        return False


def enhance(runtime: Runtime, audio: Any, *, chunk: int = 1, progress: Callable[[int, int], None] | None = None
            ) -> np.ndarray:
    """Enhance 48 kHz mono ``audio`` with ``runtime`` in calls of ``chunk`` hops; output aligned, same length.

    The input is padded with ``fft_size`` zeros like the offline reference, fed in calls of ``chunk`` hops,
    flushed, and the runtime's constant delay removed, so the output lines up sample by sample with
    :func:`dfnb.offline.enhance_offline`. ``progress(done_hops, total_hops)`` is called after each call.

    Parameters
    ----------
    runtime : Runtime
        Any dfnb runtime; it is reset first.
    audio : array_like
        Mono samples at ``runtime.cfg.sr`` (checked by :func:`dfnb.audio.check_audio`).
    chunk : int
        Hops per call (1 = 10 ms calls, the realtime case).

    Returns
    -------
    numpy.ndarray
        float32, ``len(audio)`` samples.

    Examples
    --------
    >>> from dfnb.hosts import open_host  # doctest: +SKIP
    >>> y = enhance(open_host("models/dfn3_step"), noisy, chunk=1)  # doctest: +SKIP

    Notebook: 02_stateful_export
    """
    chunk = check_chunk(chunk)
    if not isinstance(runtime, Runtime):
        raise DfnbError(f"enhance() needs a dfnb runtime (Stream, Host, FastStepHost, ...), got "
                        f"{type(runtime).__name__}; open one with dfnb.hosts.open_host(folder).")
    x = audio_mod.check_audio(audio, runtime.cfg.sr)
    runtime.reset()
    hop, fft = runtime.cfg.hop_size, runtime.cfg.fft_size
    n = (len(x) + fft) // hop
    padded = np.concatenate([x, np.zeros(n * hop - len(x), np.float32)])
    outs = []
    for i in range(0, n, chunk):
        outs.append(runtime.process(padded[i * hop : min(n, i + chunk) * hop]))
        if progress is not None:
            progress(min(n, i + chunk), n)
    outs.append(runtime.flush())
    y = np.concatenate(outs)
    d = runtime.delay_samples
    y = y[d : d + len(x)]
    if len(y) < len(x):
        y = np.concatenate([y, np.zeros(len(x) - len(y), np.float32)])
    return y
