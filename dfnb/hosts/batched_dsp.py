"""The per-stream DSP of many streams at once: :class:`dfnb.hosts.fast.LeanDsp`'s arithmetic over rows.

:class:`dfnb.hosts.batched.BatchedHost` keeps each active stream's STFT memories and feature norms in row
``i`` of ``[capacity, ...]`` arrays and runs analysis, features and overlap-add synthesis for rows ``0..k-1``
in one numpy call each, in the same operation order as :mod:`dfnb.dsp` (so each row equals the single-stream
DSP to rounding).
"""

from __future__ import annotations

import numpy as np

from .. import dsp
from ..errors import ModelFolderError

__all__ = ["BatchedDsp"]

_F32 = np.float32


class BatchedDsp:
    """Per-hop analysis, features and synthesis of ``capacity`` streams at once, rows ``0..k-1``.

    The arithmetic of :mod:`dfnb.dsp` (and :class:`dfnb.hosts.fast.LeanDsp`) in the same order, on ``[k, ...]``
    arrays; state rows ``analysis_mem``, ``synthesis_mem``, ``erb_norm``, ``unit_norm`` as in
    :class:`dfnb.dsp.DspState`. Needs ``fft_size == 2 * hop_size`` (every DeepFilterNet release).
    """

    def __init__(self, cfg: dsp.DspConfig, capacity: int):
        t = cfg.tables  # the config's precomputed tables (window, bands), as LeanDsp uses them
        if not t.fast_ola:
            raise ModelFolderError(f"BatchedHost needs fft_size == 2 * hop_size, got {cfg.fft_size}/{cfg.hop_size}; "
                                   "run this model with the single-stream host.")
        self.cfg, self.t, n = cfg, t, capacity
        m, f = t.mem_len, cfg.freq_bins
        self.analysis_mem = np.zeros((n, m), _F32)
        self.synthesis_mem = np.zeros((n, m), _F32)
        self.erb_norm = np.zeros((n, cfg.nb_erb), _F32)
        self.unit_norm = np.zeros((n, cfg.nb_df), _F32)
        self._frame = np.empty((n, cfg.fft_size), _F32)
        self._sq = np.empty((n, 2 * f), _F32)
        self._pw = np.empty((n, f), _F32)
        self._db = np.empty((n, cfg.nb_erb), _F32)
        self._tmp_e = np.empty((n, cfg.nb_erb), _F32)
        self._mag = np.empty((n, cfg.nb_df), _F32)
        self._tmp_d = np.empty((n, cfg.nb_df), _F32)
        self._out = np.empty((n, cfg.hop_size), _F32)

    def reset_row(self, i: int) -> None:
        self.analysis_mem[i] = 0.0
        self.synthesis_mem[i] = 0.0
        self.erb_norm[i] = self.t.erb_init
        self.unit_norm[i] = self.t.unit_init

    def move_row(self, src: int, dst: int) -> None:
        for a in (self.analysis_mem, self.synthesis_mem, self.erb_norm, self.unit_norm):
            a[dst] = a[src]

    def analysis_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Rows of hops ``x`` (float32 [k, hop]) -> spectra ``out`` (complex64 [k, F])."""
        k, t, m = len(x), self.t, self.t.mem_len
        buf, mem = self._frame[:k], self.analysis_mem[:k]
        np.multiply(mem, t.w_first, out=buf[:, :m])
        np.multiply(x, t.w_second, out=buf[:, m:])
        mem[:] = x
        spec = np.fft.rfft(buf, axis=-1)  # float64 inside, like dfnb.dsp
        np.multiply(spec, t.wnorm, out=spec)
        out[:] = spec

    def features_into(self, spec: np.ndarray, erb_out: np.ndarray, df_out: np.ndarray) -> None:
        """ERB features (float32 [k, E]) and unit-normalised DF spectra (float32 [k, nb_df, 2]) of ``spec``."""
        k, t, nb_df = len(spec), self.t, self.cfg.nb_df
        sq, pw, db, tmp_e = self._sq[:k], self._pw[:k], self._db[:k], self._tmp_e[:k]
        v = spec.view(_F32)
        np.multiply(v, v, out=sq)
        np.add(sq[:, 0::2], sq[:, 1::2], out=pw)
        np.add.reduceat(pw, t.band_starts, axis=1, out=db)
        db *= t.band_scale
        db += _F32(1e-10)
        np.log10(db, out=db)
        db *= _F32(10.0)
        mean, unit = self.erb_norm[:k], self.unit_norm[:k]
        mean *= t.alpha
        np.multiply(db, t.one_minus_alpha, out=tmp_e)
        mean += tmp_e
        db -= mean
        x = spec[:, :nb_df]
        mag, tmp_d = self._mag[:k], self._tmp_d[:k]
        np.abs(x, out=mag)
        unit *= t.alpha
        np.multiply(mag, t.one_minus_alpha, out=tmp_d)
        unit += tmp_d
        np.sqrt(unit, out=mag)
        np.divide(db, _F32(40.0), out=erb_out)
        np.divide(np.ascontiguousarray(x).view(_F32).reshape(k, nb_df, 2), mag[:, :, None], out=df_out)

    def synthesis(self, spec: np.ndarray, first: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        """Spectra (complex64 [k, F]) of rows ``first..first+k-1`` -> hops (float32 [k, hop]) written into ``out``
        (default: a buffer reused by the next call)."""
        t, h = self.t, self.cfg.hop_size
        mem = self.synthesis_mem[first : first + len(spec)]
        y = np.fft.irfft(spec, self.cfg.fft_size, axis=-1, norm="forward").astype(_F32)
        y *= t.window
        out = self._out[: len(spec)] if out is None else out
        np.add(y[:, :h], mem, out=out)
        mem[:] = y[:, h:]
        return out
