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
get a :class:`~dfnb.errors.StateError`, never silently mixed states; while :func:`enhance` (or
:func:`dfnb.files.enhance_file`) runs a whole stream through a runtime it holds it (:meth:`Runtime.exclusive`),
so any call from another thread in between raises too.

:class:`Feeder` does the padding, the calls of ``chunk`` hops, the flush, the delay removal and the length
fitting for every runtime, block by block; :func:`enhance` (arrays) and :func:`dfnb.files.enhance_file`
(files, in flat memory) both use it, so any two outputs compare sample by sample with the offline reference.

Notebook: 02_stateful_export
"""

from __future__ import annotations

import contextlib
from array import array
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import audio as audio_mod
from .args import check_int, check_names, shown
from .errors import ArgumentError, AudioError
from .threads import ThreadGuard

__all__ = ["Runtime", "Trace", "Feeder", "enhance", "gate_block", "check_chunk", "check_runtime"]


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
    """``chunk`` as a positive int of hops, or :class:`~dfnb.errors.ArgumentError`."""
    return check_int(chunk, "chunk", hint="the number of 10 ms hops per call, e.g. chunk=1")


def check_runtime(runtime: Any, what: str = "enhance()") -> Runtime:
    """``runtime`` if it is a dfnb :class:`Runtime`, else an :class:`~dfnb.errors.ArgumentError` saying how to
    get one."""
    if not isinstance(runtime, Runtime):
        raise ArgumentError(f"{what} needs a dfnb runtime (Stream, Host, FastStepHost, BlockOffline, ...), got "
                        f"{shown(runtime)} of type {type(runtime).__name__}; open one with "
                        "dfnb.hosts.open_host(folder) or dfnb.streaming.Stream(load_model(name)).")
    return runtime


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
    default_chunk: int = 1
    """Hops per call when the caller does not say (``dfnb enhance`` without ``--chunk``): 1 = the realtime case."""

    def __init__(self, probes: bool | Iterable[str] = False):
        names: tuple[str, ...] = ()
        if not isinstance(probes, (bool, np.bool_)):
            try:
                names = check_names(probes, "probes")
            except ArgumentError:
                raise ArgumentError(f"probes must be True/False or a list of state names (e.g. ['enc_emb_gru']), "
                                    f"got {shown(probes)}.") from None
        self._probe_names = names
        self.probes = bool(probes)
        self._threads = ThreadGuard(self)
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

    # -- the gate and the guard ----------------------------------------------------------------------
    def _gate(self, samples: Any) -> np.ndarray:
        """Validate one call's samples (:func:`gate_block`); counts them into the stream time."""
        x = gate_block(samples, label=self.label, sr=self.cfg.sr, at=self.samples_in + len(self._pending))
        self.samples_in += len(x)
        return x

    def _guard(self, what: str) -> Any:
        """One call: refused while another thread is inside, or holds the runtime for a whole stream."""
        return self._threads.call(what)

    def exclusive(self) -> contextlib.AbstractContextManager[Runtime]:
        """Hold the runtime for one whole stream: until the block ends, every call from another thread raises
        :class:`~dfnb.errors.StateError` (so two streams can never interleave their hops). :func:`enhance`
        and :func:`dfnb.files.enhance_file` hold it; a realtime host that hands its calls to a pool of threads
        one after the other does not need to."""
        return self._threads.exclusive(self)


def gate_block(samples: Any, *, label: str, sr: int, at: int = 0) -> np.ndarray:
    """The audio gate of every runtime call: one block of mono samples as a new-or-checked float32 1-D array.

    Float32 1-D arrays take a fast path; integer PCM is scaled like a file (:func:`dfnb.audio.to_float32`);
    anything else, NaN/Inf samples (named by stream time: ``at`` is the stream index of the block's first
    sample) and float peaks beyond :data:`dfnb.audio.FLOAT_PEAK_LIMIT` raise :class:`~dfnb.errors.AudioError`
    whose message starts with ``label``. Nothing is changed on failure, so the caller's stream can go on.
    """
    x = samples
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 1):
        if x is None or isinstance(x, (str, bytes, dict)):
            raise AudioError(f"{label}: process() takes a 1-D array of samples, got {type(x).__name__}.")
        a = np.asarray(x)
        if a.ndim != 1 or a.dtype.kind not in "iuf":
            raise AudioError(f"{label}: process() takes a 1-D float or integer PCM array, got "
                             f"{a.dtype}{list(a.shape)}; buffer mono samples at {sr} Hz.")
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
            k = at + i
            raise AudioError(f"{label}: stream sample {k} (at {k / sr:.3f} s; sample {i} of this call) is "
                             f"{'NaN' if np.isnan(x[i]) else 'Inf'}; nothing of this call reached the model. "
                             "Replace bad samples (e.g. np.nan_to_num) before passing them in.")
        audio_mod.check_audio(x, sr, name=f"{label} call")  # raises the peak message
    return np.ascontiguousarray(x, dtype=np.float32)


class Feeder:
    """Drive a runtime through one stream given block by block; out come the aligned output blocks.

    The input is fed in calls of exactly ``chunk`` hops, whatever the block sizes; :meth:`finish` pads it with
    ``fft_size`` zeros (and up to a whole hop) like the offline reference, flushes the runtime, and the
    runtime's constant delay is removed and the length fitted, so the concatenated output has exactly the
    input's length and lines up sample by sample with :func:`dfnb.offline.enhance_offline`. Memory stays
    below one call. ``progress(done_hops, total_hops)`` is called after each call (``total_hops`` as given,
    or 0 when unknown). The runtime is not reset here.

    Examples
    --------
    >>> f = Feeder(rt, chunk=10)  # doctest: +SKIP
    >>> y = np.concatenate([f.push(block) for block in blocks] + [f.finish()])  # doctest: +SKIP

    Notebook: 02_stateful_export
    """

    def __init__(self, runtime: Runtime, chunk: int = 1, *, total_hops: int = 0,
                 progress: Callable[[int, int], None] | None = None):
        self.runtime = check_runtime(runtime, "Feeder")
        self.hop = runtime.cfg.hop_size
        self.call = check_chunk(chunk) * self.hop
        self.total_hops = check_int(total_hops, "total_hops", minimum=0)
        if progress is not None and not callable(progress):
            raise ArgumentError(f"progress must be a function progress(done_hops, total_hops) or None, got "
                                f"{shown(progress)}.")
        self.progress = progress
        self.samples_in = self.samples_out = self.hops_done = 0
        self._skip = int(runtime.delay_samples)
        self._pending: list[np.ndarray] = []
        self._n_pending = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        """Feed float32 samples (any length); return the aligned output completed so far."""
        self.samples_in += len(x)
        return self._feed(x)

    def finish(self) -> np.ndarray:
        """Pad, feed the rest, flush; return the last aligned output, zero-filled to the input's length."""
        hop, fft = self.hop, self.runtime.cfg.fft_size
        n = (self.samples_in + fft) // hop
        outs = [self._feed(np.zeros(n * hop - self.samples_in, np.float32), final=True),
                self._align(self.runtime.flush())]
        short = self.samples_in - self.samples_out
        if short > 0:
            outs.append(np.zeros(short, np.float32))
            self.samples_out += short
        return np.concatenate(outs)

    def _feed(self, x: np.ndarray, final: bool = False) -> np.ndarray:
        outs = []
        pos = 0
        if self._n_pending:  # complete the pending call first
            take = min(self.call - self._n_pending, len(x))
            self._pending.append(np.array(x[:take], np.float32))
            self._n_pending += take
            pos = take
            if self._n_pending == self.call or (final and pos == len(x)):
                outs.append(self._call(np.concatenate(self._pending)))
                self._pending, self._n_pending = [], 0
        while len(x) - pos >= self.call:
            outs.append(self._call(x[pos : pos + self.call]))
            pos += self.call
        if pos < len(x):
            if final:
                outs.append(self._call(x[pos:]))
            else:
                self._pending.append(np.array(x[pos:], np.float32))  # a copy: the caller may reuse its buffer
                self._n_pending += len(x) - pos
        return np.concatenate(outs) if outs else np.zeros(0, np.float32)

    def _call(self, x: np.ndarray) -> np.ndarray:
        y = self._align(self.runtime.process(x))
        self.hops_done += len(x) // self.hop
        if self.progress is not None:
            self.progress(self.hops_done, self.total_hops)
        return y

    def _align(self, y: np.ndarray) -> np.ndarray:
        """Drop the delay, and nothing beyond the input's length."""
        if self._skip:
            k = min(self._skip, len(y))
            y, self._skip = y[k:], self._skip - k
        y = y[: max(0, self.samples_in - self.samples_out)]
        self.samples_out += len(y)
        return y


def enhance(runtime: Runtime, audio: Any, *, chunk: int = 1, progress: Callable[[int, int], None] | None = None
            ) -> np.ndarray:
    """Enhance 48 kHz mono ``audio`` with ``runtime`` in calls of ``chunk`` hops; output aligned, same length.

    The input is padded with ``fft_size`` zeros like the offline reference, fed in calls of ``chunk`` hops,
    flushed, and the runtime's constant delay removed (:class:`Feeder`), so the output lines up sample by
    sample with :func:`dfnb.offline.enhance_offline`. ``progress(done_hops, total_hops)`` is called after each
    call. The runtime is held for the whole stream (:meth:`Runtime.exclusive`). For files of any length in
    flat memory, see :func:`dfnb.files.enhance_file`.

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
    check_runtime(runtime)
    if progress is not None and not callable(progress):
        raise ArgumentError(f"progress must be a function progress(done_hops, total_hops) or None, got "
                            f"{shown(progress)}.")
    x = audio_mod.check_audio(audio, runtime.cfg.sr)
    with runtime.exclusive():
        runtime.reset()
        hop, fft = runtime.cfg.hop_size, runtime.cfg.fft_size
        feeder = Feeder(runtime, chunk, total_hops=(len(x) + fft) // hop, progress=progress)
        return np.concatenate([feeder.push(x), feeder.finish()])
