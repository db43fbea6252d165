"""The host side of a three-part DeepFilterNet, over frames: DSP, lookahead and the deep-filter stage — torch-free.

A DeepFilterNet is an encoder and two decoders (``enc``/``erb_dec``/``df_dec``) between a DSP front end and a
deep-filter stage. :class:`FrameRuntime` is everything around the three parts, for any number of frames per
call: libDF's per-hop STFT and feature norms (:mod:`dfnb.dsp`, state kept across calls), the lookahead (the
first ``conv_lookahead`` feature frames never reach the encoder; the output lags by ``delay_frames`` hops), the
deep-filter spectrum buffer (a numpy mirror of :class:`dfnb.step.StepModel`'s last stage) and synthesis.
The three parts themselves are *evaluated* by a subclass, carrying their own states across calls:

* :class:`dfnb.hosts.onnx.Host` — onnxruntime on a ``full`` (or ``gru``/``h0``/``stateless``) folder's graphs;
* :class:`dfnb.offline.BlockOffline` — deepfilternet's PyTorch modules with every state carried: the offline
  reference in blocks, in flat memory.

One deep-filter stage, two evaluators: both give the offline model's output, the graphs and the modules being
the only difference.

Explained in notebook 02_stateful_export through :class:`dfnb.hosts.onnx.Host`, which is one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import dsp
from .runtime import Runtime

__all__ = ["FrameRuntime"]


class FrameRuntime(Runtime):
    """A :class:`~dfnb.runtime.Runtime` around a pluggable model evaluator (see the module docstring).

    Subclasses call :meth:`setup_stage` in ``__init__`` before ``Runtime.__init__`` and implement:

    * ``evaluate(fe, fs)`` — features ``[T, E]`` and ``[T, Fdf]`` (complex) of consecutive encoder frames in;
      the ERB mask ``[T, E]``, the deep-filter coefficients ``[T, O, Fdf]`` (complex) and lsnr ``[T]`` out,
      the model's states carried to the next call (and :meth:`Runtime._record` called per frame);
    * ``_reset_model()`` — the model's states back to their initial value.
    """

    def setup_stage(self, cfg: dsp.DspConfig, family: str, conv_lookahead: int, df_lookahead: int, df_order: int,
                    delay_frames: int) -> None:
        """The DSP config, the family (where the deep filter sits), the lookaheads, the order and the delay."""
        self.cfg, self.family = cfg, family
        self.L, self.dfl, self.order = int(conv_lookahead), int(df_lookahead), int(df_order)
        self.delay_frames = int(delay_frames)
        self.delay_samples = self.delay_frames * cfg.hop_size + cfg.fft_size - cfg.hop_size

    def evaluate(self, fe: np.ndarray, fs: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        raise NotImplementedError

    def _reset_model(self) -> None:
        raise NotImplementedError

    def _outputs(self, m: np.ndarray, c: np.ndarray, lsnr: np.ndarray, states=None):
        """The decoders' raw outputs as ``evaluate`` returns them: ``c`` ``[T, Fdf, O*2]`` (the graphs' and
        modules' layout) becomes complex ``[T, O, Fdf]``; each frame's lsnr is recorded (:meth:`_record`)."""
        c = c.reshape(c.shape[0], c.shape[1], self.order, 2)
        coefs = (c[..., 0] + 1j * c[..., 1]).transpose(0, 2, 1).astype(np.complex64)
        for v in lsnr:
            self._record(float(v), states)
        return m, coefs, lsnr

    # -- state -----------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._reset_model()
        self.dsp_state = dsp.DspState.initial(self.cfg)
        self.n_in = 0
        f, o = self.cfg.freq_bins, self.order
        if self.family == "deepfilternet3":
            self.spec_buf = np.zeros((self.L + o - self.dfl, f), np.complex64)
        else:
            self.spec_buf = np.zeros((self.L + 1, f), np.complex64)
            self.masked_buf = np.zeros((o, f), np.complex64)
            self.coef_buf = np.zeros((self.dfl + 1, o, self.cfg.nb_df), np.complex64)

    # -- the deep-filter stage ---------------------------------------------------------------------------
    def _mask(self, spec: np.ndarray, m: np.ndarray) -> np.ndarray:
        # each ERB band's gain repeated over its bins (as hosts.pipeline does); a 0/1 band-to-bin matmul went
        # through BLAS for the same result
        return (spec * np.repeat(m, self.cfg.erb_widths, axis=-1)).astype(np.complex64)

    def _df(self, window: np.ndarray, coefs: np.ndarray, base: np.ndarray) -> np.ndarray:
        out = base.copy()
        out[: self.cfg.nb_df] = np.sum(window[:, : self.cfg.nb_df] * coefs, axis=0)
        return out

    def _stage(self, spec_n: np.ndarray, m_t, coefs_t):
        """Numpy mirror of StepModel's last stage for one hop; returns the output frame or None (warm-up)."""
        valid = self.n_in >= self.L
        self.n_in += 1
        self.spec_buf = np.roll(self.spec_buf, -1, axis=0)
        self.spec_buf[-1] = spec_n
        if not valid:
            return None
        r, o, dfl = len(self.spec_buf), self.order, self.dfl
        spec_m = self._mask(self.spec_buf[r - 1 - self.L], m_t)
        if self.family == "deepfilternet3":
            lo = r - 1 - self.L - (o - 1 - dfl)
            return self._df(self.spec_buf[lo : lo + o], coefs_t, spec_m)
        self.masked_buf = np.roll(self.masked_buf, -1, axis=0)
        self.masked_buf[-1] = spec_m
        self.coef_buf = np.roll(self.coef_buf, -1, axis=0)
        self.coef_buf[-1] = coefs_t
        if self.n_in <= self.L + dfl:
            return None
        return self._df(self.masked_buf, self.coef_buf[0], self.masked_buf[o - 1 - dfl])

    def _frames(self, spec: np.ndarray, fe: np.ndarray, fs: np.ndarray) -> list:
        """Output frames (None during the warm-up) for consecutive input frames: the model runs once on every
        frame that reaches the encoder."""
        skip = max(0, min(self.L - self.n_in, len(spec)))  # warm-up frames never reach the encoder
        m = coefs = None
        if len(spec) > skip:
            m, coefs, _ = self.evaluate(fe[skip:], fs[skip:])
        res: list = []
        for i in range(len(spec)):
            j = i - skip
            res.append(self._stage(spec[i], m[j] if j >= 0 else None, coefs[j] if j >= 0 else None))
        return res

    def _synthesise(self, frames: list) -> np.ndarray:
        h = self.cfg.hop_size
        out = [dsp.synthesis(self.cfg, self.dsp_state, y) if y is not None else np.zeros(h, np.float32)
               for y in frames]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    # -- the runtime contract ----------------------------------------------------------------------------
    def _hops(self, x: np.ndarray) -> np.ndarray:
        spec = dsp.analysis_frames(self.cfg, self.dsp_state, x)
        fe, fs = dsp.features_frames(self.cfg, self.dsp_state, spec)
        return self._synthesise(self._frames(spec, fe, fs))

    def _drain(self) -> np.ndarray:
        """Zero spectrum and features for ``delay_frames`` hops, as offline padding does at the end of a file."""
        n = self.delay_frames
        if n == 0:
            return np.zeros(0, np.float32)
        spec = np.zeros((n, self.cfg.freq_bins), np.complex64)
        fe = np.zeros((n, self.cfg.nb_erb), np.float32)
        return self._synthesise(self._frames(spec, fe, np.zeros((n, self.cfg.nb_df), np.complex64)))
