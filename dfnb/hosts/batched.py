"""Many independent streams through one batched ``step`` folder: one onnxruntime call per hop for all of them.

A realtime server that enhances ``N`` calls at once could run ``N`` single-stream hosts; each would stream the
GRU weights from memory once per hop. :class:`BatchedHost` runs a folder exported with
``dfnb export --variant step --streams N`` (:mod:`dfnb.batching`) instead: every hop (a *tick*), the active
streams' spectra go through the graph as one batch, so each weight is read once for all of them.

Streams have their own lifecycle. :meth:`BatchedHost.join` gives a new stream a row (fresh model state, fresh
DSP state, its own warm-up); :meth:`BatchedHost.leave` drains its lookahead (alone, with the zero frames
offline padding feeds) and frees the row — the last active row moves into the hole, so active streams always
occupy rows ``0..k-1`` and the graph runs on exactly ``k`` rows; :meth:`BatchedHost.reset` restarts one
stream. The per-stream DSP (STFT, feature norms, overlap-add) is :class:`dfnb.hosts.fast.LeanDsp`'s arithmetic
vectorised over the rows. Each stream's output equals what a single-stream host gives for it alone, to
rounding (``tests/test_batched.py``).

States live in onnxruntime-bound numpy buffers, two sets (A → B, B → A), as in the single-stream fast host;
bindings are rebuilt only when the number of streams changes.

Notebook: 05_realtime
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import audio as audio_mod
from .. import dsp
from ..args import check_int, check_path, shown
from ..assets import sha256_file
from ..errors import ArgumentError, AudioError, ModelFolderError, StateError
from ..folder import open_session
from ..layout import ModelConfig, delay_frames
from ..runtime import gate_block
from ..threads import ThreadGuard
from .batched_dsp import BatchedDsp

__all__ = ["BatchedHost", "enhance_many", "batch_of"]

_F32 = np.float32
_BASE_IN = ("spec", "feat_erb", "feat_spec")


def batch_of(folder: Path | str) -> dict | None:
    """The ``batch`` section of a folder's manifest (a batched step export), or None for any other folder."""
    try:
        man = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    b = man.get("batch") if isinstance(man, dict) else None
    return b if isinstance(b, dict) else None


class BatchedHost:
    """Advance many independent streams of one batched ``step`` folder, one hop each per :meth:`process` call.

    Parameters
    ----------
    folder : path
        A folder written by ``dfnb export --variant step --streams N`` (:func:`dfnb.batching.export_batched`).
    capacity : int, optional
        Most streams at once (default: the ``N`` of the export).
    threads : int
        onnxruntime intra-op threads (the batch splits well over 2 threads).

    Examples
    --------
    >>> host = BatchedHost("models/dfn3_step_b32")  # doctest: +SKIP
    >>> a, b = host.join(), host.join()  # doctest: +SKIP
    >>> out = host.process({a: hop_a, b: hop_b})  # one 480-sample hop each in, one each out  # doctest: +SKIP
    >>> tail = host.leave(a)  # its last delay_frames hops  # doctest: +SKIP

    Notebook: 05_realtime
    """

    def __init__(self, folder: Path | str, capacity: int | None = None, *, threads: int = 1,
                 session_config: dict | None = None):
        self.folder = check_path(folder, "folder", error=ModelFolderError, what="the path of a batched step folder")
        man = self._manifest()
        self.batch = man["batch"]
        self.capacity = check_int(capacity if capacity is not None else self.batch.get("streams"), "capacity",
                                  hint="the most streams at once, e.g. capacity=32")
        self.label = "batched host"
        self._threads = ThreadGuard(self, noun="host", state="its streams' states", runs="enhance_many")
        mc = ModelConfig.read(self.folder / "config.ini")
        self.cfg = dsp.DspConfig.from_spec(mc)
        self.family, self.L = mc.family, int(mc.conv_lookahead)
        self.delay_frames = delay_frames(mc)
        self.delay_samples = self.delay_frames * mc.hop_size + mc.fft_size - mc.hop_size
        self.sess = open_session(self.folder / "step.onnx", threads, session_config)
        ins = [i for i in self.sess.get_inputs() if i.name not in _BASE_IN]
        outs = [o.name for o in self.sess.get_outputs()][2:]
        if len(ins) != len(outs) or "spec_buf" not in [i.name for i in ins]:
            raise ModelFolderError(f"{self.folder / 'step.onnx'} is not a batched step graph (states {len(ins)} in, "
                                   f"{len(outs)} out); re-export it with --streams.")
        n, f = self.capacity, self.cfg.freq_bins
        self.state_names = [i.name for i in ins]
        self._out_of = dict(zip(self.state_names, outs))
        self._bufs = [{i.name: np.zeros([n, *i.shape[1:]], _F32) for i in ins} for _ in range(2)]
        self._spec = np.zeros((n, 1, 1, f, 2), _F32)
        self._fe = np.zeros((n, 1, 1, self.cfg.nb_erb), _F32)
        self._fs = np.zeros((n, 1, 1, self.cfg.nb_df, 2), _F32)
        self._enh = np.zeros((n, 1, 1, f, 2), _F32)
        self._lsnr = np.zeros((n, 1, 1), _F32)
        self._spec_c = self._spec.reshape(n, f * 2).view(np.complex64)
        self._enh_c = self._enh.reshape(n, f * 2).view(np.complex64)
        self.dsp = BatchedDsp(self.cfg, n)
        self._hops_in = np.zeros(n, np.int64)
        self._ids: list[int] = []  # stream id of each active row
        self._next_id = 0
        self._parity = 0
        self._bound: tuple = ()  # (k, [binding A->B, binding B->A])
        self._zeros = np.zeros((n, self.cfg.hop_size), _F32)

    def _manifest(self) -> dict:
        try:
            man = json.loads((self.folder / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise ModelFolderError(f"{self.folder}: no readable manifest.json ({e}); a batched folder is written by "
                                   "`dfnb export --variant step --streams N`.") from None
        if not isinstance(man, dict) or man.get("variant") != "step" or "batch" not in man:
            man = man if isinstance(man, dict) else {}
            raise ModelFolderError(f"{self.folder} is not a batched step folder (variant {man.get('variant')!r}, no "
                                   "'batch' section); export one with `dfnb export --variant step --streams N`, or "
                                   "run a single-stream folder with dfnb.hosts.fast.FastStepHost.")
        # the batched graph is rewritten for batches, so the step-graph facts of dfnb.folder do not apply; the
        # export verified it stream by stream, and the checksums say these are the files it verified
        for f in ("step.onnx", "config.ini"):
            want = ((man.get("files") or {}).get(f) or {}).get("sha256")
            if not want or not (self.folder / f).is_file() or sha256_file(self.folder / f) != want:
                raise ModelFolderError(f"{self.folder / f} is missing or not the file exported with this "
                                       "manifest.json (sha256); re-export the folder (dfnb export --variant step "
                                       "--streams N --force).")
        return man

    # -- streams ---------------------------------------------------------------------------------------
    @property
    def streams(self) -> tuple[int, ...]:
        """The ids of the active streams, in row order (the order of :meth:`process_rows`)."""
        return tuple(self._ids)

    def join(self) -> int:
        """Open a new stream (fresh state); returns its id."""
        with self._threads.call("join"):
            return self._join()

    def _join(self) -> int:
        k = len(self._ids)
        if k >= self.capacity:
            raise StateError(f"all {self.capacity} streams of this host are in use; leave() one first or create the "
                             "host with a larger capacity.")
        self._clear_row(k)
        self._ids.append(self._next_id)
        self._next_id += 1
        return self._ids[-1]

    def _row(self, sid: int) -> int:
        try:
            return self._ids.index(sid)
        except ValueError:
            raise StateError(f"stream {shown(sid)} is not active on this host (active: {list(self._ids)}); join() "
                             "returns the ids.") from None

    def _clear_row(self, r: int) -> None:
        for bufs in self._bufs:
            for a in bufs.values():
                a[r] = 0.0
        self.dsp.reset_row(r)
        self._hops_in[r] = 0

    def reset(self, sid: int) -> None:
        """Restart stream ``sid`` from the initial state (same id, same row)."""
        with self._threads.call("reset"):
            self._clear_row(self._row(sid))

    def leave(self, sid: int, *, flush: bool = True) -> np.ndarray:
        """Close stream ``sid``; with ``flush``, first drain its lookahead (returns ``delay_frames`` hops)."""
        with self._threads.call("leave"):
            return self._leave(sid, flush)

    def _leave(self, sid: int, flush: bool) -> np.ndarray:
        r = self._row(sid)
        last = len(self._ids) - 1
        tail = self._flush_row(r) if flush else np.zeros(0, _F32)
        if r != last:  # the last active row moves into the hole: rows 0..k-1 stay the active ones
            for bufs in self._bufs:
                for a in bufs.values():
                    a[r] = a[last]
            self.dsp.move_row(last, r)
            self._hops_in[r] = self._hops_in[last]
            self._ids[r] = self._ids[last]
        self._ids.pop()
        return tail

    def lsnr(self, sid: int) -> float:
        """The encoder's local SNR estimate (dB) of stream ``sid``'s last model frame."""
        return float(self._lsnr[self._row(sid), 0, 0])

    # -- the graph ---------------------------------------------------------------------------------------
    def _binding(self, lo: int, hi: int, parity: int):
        import onnxruntime as ort

        b = self.sess.io_binding()
        ov = ort.OrtValue.ortvalue_from_numpy
        for name, arr in (("spec", self._spec), ("feat_erb", self._fe), ("feat_spec", self._fs)):
            b.bind_ortvalue_input(name, ov(arr[lo:hi]))
        b.bind_ortvalue_output("enh", ov(self._enh[lo:hi]))
        b.bind_ortvalue_output("lsnr", ov(self._lsnr[lo:hi]))
        src, dst = self._bufs[parity], self._bufs[1 - parity]
        for name in self.state_names:
            b.bind_ortvalue_input(name, ov(src[name][lo:hi]))
            b.bind_ortvalue_output(self._out_of[name], ov(dst[name][lo:hi]))
        return b

    def _run(self, lo: int, hi: int, parity: int, binding=None) -> None:
        """One graph call on rows lo..hi-1 (states parity -> 1-parity), with the per-row warm-up."""
        self.sess.run_with_iobinding(binding or self._binding(lo, hi, parity))
        warm = np.flatnonzero(self._hops_in[lo:hi] < self.L) + lo
        if len(warm):  # warm-up rows: only spec_buf advances (what the single-stream graph's gates do)
            src, dst = self._bufs[parity], self._bufs[1 - parity]
            for name in self.state_names:
                if name != "spec_buf":
                    dst[name][warm] = src[name][warm]
        self._hops_in[lo:hi] += 1

    def _flush_row(self, r: int) -> np.ndarray:
        """Drain row r alone: delay_frames hops of zero spectrum and features; the other rows do not move."""
        h, parity = self.cfg.hop_size, self._parity
        out = np.zeros(self.delay_frames * h, _F32)
        for j in range(self.delay_frames):
            self._spec[r] = 0.0
            self._fe[r] = 0.0
            self._fs[r] = 0.0
            self._run(r, r + 1, parity)
            src, dst = self._bufs[parity], self._bufs[1 - parity]
            for name in self.state_names:  # back into the buffers of the shared parity, for the next call
                src[name][r] = dst[name][r]
            if self._hops_in[r] > self.delay_frames:  # into `out`: the last tick's returned rows stay intact
                self.dsp.synthesis(self._enh_c[r : r + 1], first=r, out=out[j * h : (j + 1) * h].reshape(1, h))
        return out

    # -- one tick ------------------------------------------------------------------------------------------
    def process_rows(self, x: np.ndarray) -> np.ndarray:
        """One hop of every active stream: ``x`` ``[k, hop]`` in :attr:`streams` order -> float32 ``[k, hop]``.

        Each row goes through the audio gate of every runtime (:func:`dfnb.runtime.gate_block`: integer PCM
        scaled, NaN/Inf or absurd peaks refused); a refused tick raises :class:`~dfnb.errors.AudioError` naming
        the stream (also as ``error.stream``) and changes no stream's state, so the caller can send the tick
        again without that stream's bad hop. The returned array is reused by the next call (copy rows to keep
        them). Streams still in their first ``delay_frames`` hops output zeros, as the single-stream hosts do.
        """
        with self._threads.call("process_rows"):
            return self._tick(self._gate_rows(x))

    def process(self, hops: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        """One hop of every active stream by id (``{id: hop_size samples}``) -> ``{id: hop_size samples}``;
        gated stream by stream as in :meth:`process_rows`."""
        with self._threads.call("process"):
            if not isinstance(hops, Mapping) or set(hops) != set(self._ids):
                given = list(hops) if isinstance(hops, Mapping) else type(hops).__name__
                raise StateError(f"process() needs a dict with one hop for every active stream and no other: "
                                 f"active {sorted(self._ids)}, given {shown(given)}; leave() streams that stopped.")
            h = self.cfg.hop_size
            rows = np.empty((len(self._ids), h), _F32)
            for r, sid in enumerate(self._ids):
                rows[r] = self._gate_hop(hops[sid], r)
            y = self._tick(rows)
            return {sid: y[i] for i, sid in enumerate(self._ids)}

    def _gate_hop(self, x, r: int) -> np.ndarray:
        """Row ``r``'s hop through the runtimes' gate, exactly ``hop_size`` samples."""
        sid, h = self._ids[r], self.cfg.hop_size
        label = f"{self.label} stream {sid}"
        try:
            x = gate_block(x, label=label, sr=self.cfg.sr, at=int(self._hops_in[r]) * h)
            if len(x) != h:
                raise AudioError(f"{label}: one hop of {h} samples per stream and tick, got {len(x)}; nothing of "
                                 "this tick reached the model.")
        except AudioError as e:
            e.stream = sid
            raise
        return x

    def _gate_rows(self, x) -> np.ndarray:
        k, h = len(self._ids), self.cfg.hop_size
        if not (isinstance(x, np.ndarray) and x.dtype == _F32):
            try:
                a = None if x is None or isinstance(x, (str, bytes, dict)) else np.asarray(x)
            except (TypeError, ValueError):
                a = None
            if a is None or a.dtype.kind not in "iuf":
                raise AudioError(f"{self.label}: process_rows() takes a [{k}, {h}] array of samples (one hop per "
                                 f"active stream), got {type(x).__name__}.")
            x = audio_mod.to_float32(a)
        if x.shape != (k, h):
            raise AudioError(f"{self.label}: process_rows() takes one hop per active stream, [{k}, {h}], got "
                             f"{x.dtype}{list(x.shape)}; streams in row order: {list(self._ids)}.")
        peak = np.max(np.abs(x), axis=1) if k else np.zeros(0, _F32)
        bad = ~(peak <= audio_mod.FLOAT_PEAK_LIMIT)  # NaN compares False
        if bad.any():
            self._gate_hop(x[int(np.argmax(bad))], int(np.argmax(bad)))  # raises the runtimes' message
        return np.ascontiguousarray(x)

    def _tick(self, x: np.ndarray) -> np.ndarray:
        """One hop of the active rows (``x`` gated float32 [k, hop])."""
        k = len(x)
        if k == 0:
            return self._zeros[:0]
        d = self.dsp
        d.analysis_into(x, self._spec_c[:k])
        d.features_into(self._spec_c[:k], self._fe.reshape(-1, self.cfg.nb_erb)[:k],
                        self._fs.reshape(-1, self.cfg.nb_df, 2)[:k])
        if not self._bound or self._bound[0] != k:
            self._bound = (k, [self._binding(0, k, p) for p in (0, 1)])
        self._run(0, k, self._parity, self._bound[1][self._parity])
        self._parity ^= 1
        y = d.synthesis(self._enh_c[:k])
        quiet = np.flatnonzero(self._hops_in[:k] <= self.delay_frames)
        if len(quiet):  # no output frame yet: zeros out, overlap-add memory untouched (still zero)
            y[quiet] = 0.0
            d.synthesis_mem[quiet] = 0.0
        return y

    def exclusive(self) -> contextlib.AbstractContextManager[BatchedHost]:
        """Hold the host for a whole run (as :meth:`dfnb.runtime.Runtime.exclusive`): calls from any other
        thread raise :class:`~dfnb.errors.StateError` until the block ends; :func:`enhance_many` holds it."""
        return self._threads.exclusive(self)


def enhance_many(host: BatchedHost, audios: Sequence[np.ndarray], starts: Sequence[int] | None = None
                 ) -> list[np.ndarray]:
    """Enhance several 48 kHz clips as concurrent streams of ``host``; each output aligned, same length as its clip.

    Stream ``i`` joins at tick ``starts[i]`` (default 0), gets one hop per tick (its clip padded with
    ``fft_size`` zeros, as :func:`dfnb.runtime.enhance` pads), and leaves right after its last hop, draining
    its lookahead; the others keep going. So streams join and leave mid-run, and each output compares sample by
    sample with the same clip enhanced alone.

    Notebook: 05_realtime
    """
    if not isinstance(host, BatchedHost):
        raise ArgumentError(f"enhance_many() needs a BatchedHost, got {type(host).__name__}.")
    with host.exclusive():
        return _enhance_many(host, audios, starts)


def _enhance_many(host: BatchedHost, audios, starts) -> list[np.ndarray]:
    if host.streams:
        raise StateError(f"enhance_many needs an idle host; streams {list(host.streams)} are active (leave() them).")
    hop, fft = host.cfg.hop_size, host.cfg.fft_size
    xs = [audio_mod.check_audio(a, host.cfg.sr) for a in audios]
    padded = [np.concatenate([x, np.zeros((len(x) + fft) // hop * hop - len(x), _F32)]) for x in xs]
    starts = [check_int(s, "starts[i]", minimum=0) for s in starts] if starts is not None else [0] * len(xs)
    if len(starts) != len(xs):
        raise ArgumentError(f"starts must give one tick >= 0 per clip ({len(xs)} clips), got {len(starts)}.")
    outs: list[list[np.ndarray]] = [[] for _ in xs]
    sid_of: dict[int, int] = {}
    pos = [0] * len(xs)
    tick, done = 0, 0
    while done < len(xs):
        for i, s in enumerate(starts):
            if s == tick:
                sid_of[i] = host.join()
        y = host.process({sid_of[i]: padded[i][pos[i] * hop : (pos[i] + 1) * hop] for i in sid_of})
        for i in list(sid_of):
            outs[i].append(y[sid_of[i]].copy())
            pos[i] += 1
            if pos[i] * hop == len(padded[i]):
                outs[i].append(host.leave(sid_of.pop(i)))
                done += 1
        tick += 1
    d = host.delay_samples
    res = []
    for x, o in zip(xs, outs):
        y = np.concatenate(o)[d : d + len(x)]
        res.append(np.concatenate([y, np.zeros(len(x) - len(y), _F32)]) if len(y) < len(x) else y)
    return res
