"""The general onnxruntime host: runs any dfnb export (and upstream's three files) call by call. No torch.

A host needs only numpy, libdf, onnxruntime and this file — exactly what the Rust pipeline needs. Every
variant runs in the *realtime host* pipeline the seed's Rust pipeline uses: the host keeps its DSP state (STFT
overlap, feature norms, as libDF's ``DFState`` does), delays the spectrum by the model's lookahead (the first
``conv_lookahead`` feature frames never reach the encoder; output lags by ``delay_samples``), keeps the
deep-filter spectrum buffer (a numpy mirror of :class:`dfnb.step.StepModel`'s last stage), and runs the
graphs on each call's frames (:class:`dfnb.frames.FrameRuntime` is that pipeline; this host evaluates the
model with onnxruntime). What the graphs remember across calls is exactly what the folder declares:

* ``stateless`` — nothing: every call starts the GRUs from zero and the convs from zero padding;
* ``h0`` — the encoder GRU (``h1`` fed back as ``h0``; zeroed on ``reset()``), as in the seed contract;
* ``gru`` — all GRUs; ``full`` — all GRUs and the convs' past frames: exact;
* ``step`` — one onnxruntime call per hop with every state: exact.

``per_call_offline=True`` instead runs each call as if it were a whole file given to the offline model
(features shifted inside the call, its last ``conv_lookahead`` frames zero-padded, spectra outside the call
zero, output immediately): the *lost lookahead* of a host that knows nothing about streaming. With
``reset_dsp=True`` such a host also resets STFT and norm state each call, like a Python host calling
libdf's resetting ``analysis()`` per chunk.

Notebook: 02_stateful_export
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import dsp
from ..args import check_flag, shown
from ..errors import StateError
from ..folder import inspect_folder
from ..frames import FrameRuntime
from ..layout import BASE_IO

__all__ = ["Host"]


class Host(FrameRuntime):
    """A realtime host for one exported folder (a :class:`dfnb.runtime.Runtime`).

    Parameters
    ----------
    folder : path
        A model folder (checked by :func:`dfnb.folder.inspect_folder`).
    threads : int
        onnxruntime intra-op threads.
    per_call_offline, reset_dsp : bool
        Emulate a host that runs each call as a whole file (see the module docstring).
    probes : bool or list of str
        Record lsnr (and these carried states) per model frame in ``trace``.

    Examples
    --------
    >>> from dfnb.runtime import enhance  # doctest: +SKIP
    >>> y = enhance(Host("models/dfn3_h0"), noisy, chunk=1)  # doctest: +SKIP

    Notebook: 02_stateful_export
    """

    def __init__(self, folder: Path | str, *, threads: int = 1, per_call_offline: bool = False,
                 reset_dsp: bool = False, probes=False):
        self.per_call_offline = check_flag(per_call_offline, "per_call_offline")
        self.reset_dsp = check_flag(reset_dsp, "reset_dsp")
        self.sessions: dict = {}
        self.info = inspect_folder(folder, threads=threads, sessions=self.sessions)
        self.variant = self.info.variant
        if self.per_call_offline and self.variant == "step":
            raise StateError("per_call_offline needs a three-file folder (enc/erb_dec/df_dec), not a step folder.")
        lay = self.info.layout
        self.setup_stage(self.info.cfg, self.info.family, self.info.conv_lookahead, self.info.df_lookahead,
                         self.info.df_order, 0 if self.per_call_offline else lay.delay_frames)
        self.label = f"host ({self.variant}{', per-call offline' if self.per_call_offline else ''})"
        self._carried = self.info.carried  # states fed by name, shapes from the layout
        self._by_file = {f: [d for d in self._carried if self.variant == "step" or d.file == f] for f in self.sessions}
        self._out_names = {f: [o.name for o in s.get_outputs()] for f, s in self.sessions.items()}
        super().__init__(probes)

    # -- states --------------------------------------------------------------------------------------
    def _reset_model(self) -> None:
        self.states = {d.io[0]: d.initial() for d in self._carried}

    def set_state(self, name: str, value: np.ndarray) -> None:
        """Set one carried model state (e.g. ``h0``), checking its name, shape, dtype and values."""
        if not isinstance(name, str) or name not in self.states:
            raise StateError(f"{shown(name)} is not a state of this {self.variant} folder; its states are "
                             f"{sorted(self.states)}.")
        if value is None or isinstance(value, (str, bytes, dict)):
            raise StateError(f"state {name!r} must be a float32 array, got {type(value).__name__}.")
        v = np.asarray(value)
        want = self.states[name].shape
        if v.shape != want or v.dtype != np.float32:
            raise StateError(f"state {name!r} must be float32 of shape {list(want)}, got {v.dtype} {list(v.shape)}; "
                             "use the shape listed by `dfnb inspect` (manifest.json).")
        if not np.isfinite(v).all():
            raise StateError(f"state {name!r} holds NaN/Inf; a non-finite state poisons every later hop. Pass the "
                             "finite values a previous call returned, or reset().")
        with self._guard("set_state"):
            self.states[name] = v.copy()

    def _run(self, f: str, feeds: dict) -> dict:
        for d in self._by_file[f]:
            feeds[d.io[0]] = self.states[d.io[0]]
        res = dict(zip(self._out_names[f], self.sessions[f].run(None, feeds)))
        for d in self._by_file[f]:
            self.states[d.io[0]] = res[d.io[1]]
        return res

    # -- model over frames ---------------------------------------------------------------------------
    def evaluate(self, fe: np.ndarray, fs: np.ndarray):
        """Run the three graphs on features ``[T, E]``, ``[T, Fdf]`` (complex); return m ``[T, E]``, coefs
        ``[T, O, Fdf]`` (complex) and lsnr ``[T]``."""
        feat_erb = fe[None, None].astype(np.float32)
        feat_spec = np.stack([fs.real, fs.imag], 0)[None].astype(np.float32)
        enc = self._run("enc.onnx", {"feat_erb": feat_erb, "feat_spec": feat_spec})
        m = self._run("erb_dec.onnx", {k: enc[k] for k in BASE_IO["erb_dec.onnx"][0]})["m"][0, 0]
        c = self._run("df_dec.onnx", {"emb": enc["emb"], "c0": enc["c0"]})["coefs"][0]  # [T, Fdf, O*2]
        return self._outputs(m, c, enc["lsnr"][0, :, 0], self.states.__getitem__)

    # -- each call as an offline file -------------------------------------------------------------------
    def _naive_call(self, samples: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if self.reset_dsp:  # a host calling libdf's analysis()/erb_norm per call: DSP state reset each time
            spec, fe, fs = dsp.offline_features(cfg, samples)
        else:  # a host keeping its DSP state (libDF's DFState does), only the model starts from scratch
            spec = dsp.analysis_frames(cfg, self.dsp_state, samples)
            fe, fs = dsp.features_frames(cfg, self.dsp_state, spec)
        t = spec.shape[0]
        z = lambda a: np.concatenate([a[self.L:], np.zeros((min(self.L, t),) + a.shape[1:], a.dtype)])  # noqa: E731
        m, coefs, _ = self.evaluate(z(fe)[:t], z(fs)[:t])
        o, dfl = self.order, self.dfl
        src = spec if self.family == "deepfilternet3" else self._mask(spec, m)
        pad = np.concatenate([np.zeros((o - 1 - dfl, cfg.freq_bins), np.complex64), src,
                              np.zeros((dfl, cfg.freq_bins), np.complex64)])
        base = self._mask(spec, m) if self.family == "deepfilternet3" else src
        out = np.stack([self._df(pad[i : i + o], coefs[i], base[i]) for i in range(t)])
        if self.reset_dsp:
            return dsp.offline_synthesis(cfg, out)
        return dsp.synthesis_frames(cfg, self.dsp_state, out)

    # -- the step graph ----------------------------------------------------------------------------------
    def _step_frames(self, spec: np.ndarray, fe: np.ndarray, fs: np.ndarray) -> list:
        res = []
        f = self.cfg.freq_bins
        for i in range(len(spec)):
            x = np.stack([spec[i].real, spec[i].imag], -1).astype(np.float32).reshape(1, 1, 1, f, 2)
            e = fe[i].astype(np.float32).reshape(1, 1, 1, -1)
            s = np.stack([fs[i].real, fs[i].imag], -1).astype(np.float32).reshape(1, 1, 1, -1, 2)
            out = self._run("step.onnx", {"spec": x, "feat_erb": e, "feat_spec": s})
            self.n_in += 1
            if self.n_in > self.L:
                self._record(float(out["lsnr"].reshape(-1)[0]), self.states.__getitem__)
            if self.n_in > self.delay_frames:
                y = out["enh"].reshape(f, 2)
                res.append((y[:, 0] + 1j * y[:, 1]).astype(np.complex64))
            else:
                res.append(None)
        return res

    def _frames(self, spec: np.ndarray, fe: np.ndarray, fs: np.ndarray) -> list:
        if self.variant == "step":
            return self._step_frames(spec, fe, fs)
        return super()._frames(spec, fe, fs)

    def _hops(self, x: np.ndarray) -> np.ndarray:
        if self.per_call_offline:
            return self._naive_call(x)
        return super()._hops(x)
