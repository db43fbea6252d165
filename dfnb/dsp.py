"""Per-hop DSP of DeepFilterNet with explicit state: STFT analysis/synthesis and the ERB / unit-norm features.

libdf (deepfilterlib) does all of this in Rust, but its Python API hides the running state: ``DF.analysis`` /
``DF.synthesis`` keep overlap buffers inside the ``DF`` object and clear them on every call unless
``reset=False``; ``erb_norm`` / ``unit_norm`` accept an initial ``state`` but never return the updated one.
A streaming host must snapshot, reset and export that state, so this module re-implements libDF/src/lib.rs
(``frame_analysis``, ``frame_synthesis``, ``erb_feat``, ``cplx_feat``) per hop in numpy, with every running
buffer held in a :class:`DspState`. Hand-written because libdf does not expose its running state; the tests
check it against libdf itself. :func:`offline_features` / :func:`offline_synthesis` are the libdf reference
path (what ``df.enhance.df_features`` computes, without torch).

Arithmetic follows the Rust code in float32 (same operation order for the norms), except that the FFTs are
numpy's (computed in float64, rounded to float32), so spectra agree with libdf to ~1e-7 of their peak.

Notebook: 02_stateful_export
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dfnb.errors import AudioError, ModelError, StateError

__all__ = ["DspConfig", "DspState", "norm_alpha", "vorbis_window", "analysis", "synthesis", "features",
           "analysis_frames", "features_frames", "synthesis_frames", "offline_features", "offline_synthesis"]

_F32 = np.float32
MEAN_NORM_INIT = (-60.0, -90.0)  # libdf's initial ERB mean-norm state: linear, first band -> last band (dB)
UNIT_NORM_INIT = (0.001, 0.0001)  # libdf's initial unit-norm state: linear, first DF bin -> last DF bin


def norm_alpha(sr: int, hop: int, tau: float = 1.0) -> float:
    """Decay of the feature normalisation, exactly as ``df.utils.get_norm_alpha`` (0.99 for 48 kHz / hop 480).

    ``exp(-hop/sr/tau)`` rounded to the first precision (from 3 decimals up) that gives a value below 1.
    """
    a_ = math.exp(-(hop / sr) / tau)
    precision, a = 3, 1.0
    while a >= 1.0:
        a = round(a_, precision)
        precision += 1
    return a


def vorbis_window(fft_size: int) -> np.ndarray:
    """libdf's analysis/synthesis window: ``sin(pi/2 * sin(pi/2 * (i+0.5)/(fft/2))**2)`` in float64, as float32."""
    h = fft_size // 2
    s = np.sin(0.5 * np.pi * (np.arange(fft_size, dtype=np.float64) + 0.5) / h)
    return np.sin(0.5 * np.pi * s * s).astype(_F32)


def _linspace_f32(start: float, stop: float, n: int) -> np.ndarray:
    """``start + i*step`` in float32, the way libdf (and ndarray's linspace) builds its initial norm states."""
    if n == 1:
        return np.array([start], _F32)
    step = (_F32(stop) - _F32(start)) / _F32(n - 1)
    return _F32(start) + np.arange(n, dtype=_F32) * step


class _Tables:
    """Everything precomputed for one config (window, band indices, initial states), built once."""

    def __init__(self, c: DspConfig) -> None:
        self.window = vorbis_window(c.fft_size)
        self.mem_len = c.fft_size - c.hop_size
        self.w_first, self.w_second = self.window[: self.mem_len], self.window[self.mem_len:]
        w2 = self.window * self.window
        # libdf sums w^2 sequentially in f32 (cumsum is sequential, unlike np.sum's pairwise sum)
        self.wnorm = float(_F32(1.0) / np.cumsum(w2, dtype=_F32)[-1] * _F32(c.hop_size) / _F32(c.fft_size))
        widths = np.asarray(c.erb_widths, dtype=np.int64)
        self.band_starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.intp)
        self.band_scale = (_F32(1.0) / widths.astype(_F32)).astype(_F32)
        self.alpha = _F32(c.norm_alpha)
        self.one_minus_alpha = _F32(1.0) - self.alpha
        self.erb_init = _linspace_f32(*MEAN_NORM_INIT, c.nb_erb)
        self.unit_init = _linspace_f32(*UNIT_NORM_INIT, c.nb_df)
        self.fast_ola = c.fft_size == 2 * c.hop_size


def _size_problems(fft_size: int, hop_size: int, nb_erb: int) -> list[str]:
    if fft_size <= 0 or fft_size % 2 or hop_size <= 0 or 2 * hop_size > fft_size or nb_erb < 1:
        return [f"fft_size={fft_size} must be even and at least 2*hop_size (hop_size={hop_size}), nb_erb={nb_erb} >= 1"]
    return []


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise ModelError("inconsistent DSP config: " + "; ".join(problems) +
                         ". Take every value from the model's config.ini (DspConfig.build / from_spec).")


@dataclass(frozen=True)
class DspConfig:
    """The DSP parameters of one model (all from its config.ini); precomputes its tables once."""

    sr: int
    fft_size: int
    hop_size: int
    nb_erb: int
    nb_df: int
    erb_widths: tuple[int, ...]
    norm_alpha: float
    _t: _Tables = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "erb_widths", tuple(int(w) for w in self.erb_widths))
        f = self.fft_size // 2 + 1
        problems = _size_problems(self.fft_size, self.hop_size, self.nb_erb)
        if len(self.erb_widths) != self.nb_erb or sum(self.erb_widths) != f or min(self.erb_widths, default=0) < 1:
            problems.append(f"erb_widths ({len(self.erb_widths)} bands, {sum(self.erb_widths)} bins) must have "
                            f"nb_erb={self.nb_erb} positive widths summing to fft_size/2+1={f}")
        if not 0 < self.nb_df <= f:
            problems.append(f"nb_df={self.nb_df} must be in 1..{f}")
        if not 0.0 < self.norm_alpha < 1.0:
            problems.append(f"norm_alpha={self.norm_alpha} must be in (0, 1)")
        _raise_if(problems)
        object.__setattr__(self, "_t", _Tables(self))

    @property
    def freq_bins(self) -> int:
        """Number of rfft bins, ``fft_size // 2 + 1``."""
        return self.fft_size // 2 + 1

    @property
    def tables(self) -> _Tables:
        """What this config precomputes once (window and its halves, ``wnorm``, band starts and scales, norm
        alpha, initial norms, ``fast_ola``): read by the hosts' in-place DSP (:mod:`dfnb.hosts.fast`)."""
        return self._t

    @classmethod
    def build(cls, sr: int, fft_size: int, hop_size: int, nb_erb: int, nb_df: int,
              min_nb_erb_freqs: int = 2, norm_tau: float = 1.0) -> DspConfig:
        """Config from config.ini values; ERB widths come from libdf, alpha from :func:`norm_alpha`."""
        import libdf

        _raise_if(_size_problems(fft_size, hop_size, nb_erb))  # libdf would panic (BaseException) on these
        widths = libdf.DF(sr, fft_size, hop_size, nb_erb, min_nb_erb_freqs).erb_widths()
        return cls(sr, fft_size, hop_size, nb_erb, nb_df, tuple(int(w) for w in widths),
                   norm_alpha(sr, hop_size, norm_tau))

    @classmethod
    def from_spec(cls, spec: Any) -> DspConfig:
        """Config from any object with ``sr, fft_size, hop_size, nb_erb, nb_df`` and either ``erb_widths`` +
        ``norm_alpha`` or ``min_nb_erb_freqs`` (or ``min_nb_freqs``) + ``norm_tau`` (e.g. a ModelSpec)."""
        missing = [a for a in ("sr", "fft_size", "hop_size", "nb_erb", "nb_df") if not hasattr(spec, a)]
        if missing:
            raise ModelError(f"{type(spec).__name__} lacks DSP attribute(s) {missing}; pass a model spec "
                             "(dfnb.models) or build the config with DspConfig.build(...).")
        widths, alpha = getattr(spec, "erb_widths", None), getattr(spec, "norm_alpha", None)
        if widths is None or alpha is None:
            mnf = getattr(spec, "min_nb_erb_freqs", getattr(spec, "min_nb_freqs", 2))
            built = cls.build(spec.sr, spec.fft_size, spec.hop_size, spec.nb_erb, spec.nb_df,
                              mnf, getattr(spec, "norm_tau", 1.0))
            widths = built.erb_widths if widths is None else widths
            alpha = built.norm_alpha if alpha is None else alpha
        return cls(int(spec.sr), int(spec.fft_size), int(spec.hop_size), int(spec.nb_erb), int(spec.nb_df),
                   tuple(widths), float(alpha))


@dataclass
class DspState:
    """All running DSP state of one stream, as explicit float32 arrays (see libDF ``DFState``)."""

    analysis_mem: np.ndarray  # last fft-hop input samples
    synthesis_mem: np.ndarray  # overlap-add tail, fft-hop samples
    erb_norm: np.ndarray  # running mean of the ERB band powers in dB, nb_erb
    unit_norm: np.ndarray  # running mean of |X| on the first nb_df bins, nb_df

    @staticmethod
    def shapes(cfg: DspConfig) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every state array (all float32), in field order."""
        m = cfg.fft_size - cfg.hop_size
        return dict(zip(_STATE_FIELDS, [(m,), (m,), (cfg.nb_erb,), (cfg.nb_df,)]))

    @classmethod
    def initial(cls, cfg: DspConfig) -> DspState:
        """The state libdf starts from: zero buffers, norm states at their linear initial values."""
        m = cfg.fft_size - cfg.hop_size
        return cls(np.zeros(m, _F32), np.zeros(m, _F32), cfg._t.erb_init.copy(), cfg._t.unit_init.copy())

    def reset(self, cfg: DspConfig) -> None:
        """Back to :meth:`initial`, in place (the arrays keep their identity)."""
        self.check(cfg)
        for name, init in zip(_STATE_FIELDS, DspState.initial(cfg).__dict__.values()):
            np.copyto(getattr(self, name), init)

    def copy(self) -> DspState:
        """An independent snapshot."""
        return DspState(*(getattr(self, n).copy() for n in _STATE_FIELDS))

    def check(self, cfg: DspConfig) -> None:
        """Raise :class:`StateError` unless every array has the shape and dtype ``cfg`` needs."""
        for name, shape in self.shapes(cfg).items():
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != _F32:
                got = f"{a.dtype}{list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
                raise StateError(f"DSP state '{name}' is {got}, expected float32{list(shape)} for this config; "
                                 "create it with DspState.initial(cfg) for the same model.")


def _bad(what: str, x: np.ndarray, expected: str) -> AudioError:
    return AudioError(f"{what}: expected {expected}, got {x.dtype}{list(x.shape)}; feed exactly one hop "
                      "(or whole hops) of samples at the model's rate, or spectra of fft_size//2+1 bins.")


_STATE_FIELDS = ("analysis_mem", "synthesis_mem", "erb_norm", "unit_norm")


def _spec_in(cfg: DspConfig, spec: Any, ndim: int, what: str) -> np.ndarray:
    s = np.asarray(spec)
    if s.ndim != ndim or s.shape[-1] != cfg.freq_bins or s.dtype.kind != "c":
        raise _bad(what, s, f"complex{' [n,' if ndim == 2 else ' ['}{cfg.freq_bins}]")
    return s


def analysis(cfg: DspConfig, state: DspState, hop_samples: Any) -> np.ndarray:
    """One hop of STFT analysis (libdf ``frame_analysis``): ``hop`` samples in, ``F`` complex64 bins out."""
    t, hop = cfg._t, cfg.hop_size
    x = np.asarray(hop_samples, dtype=_F32)
    if x.shape != (hop,):
        raise _bad("dsp.analysis", x, f"float32 [{hop}]")
    mem = state.analysis_mem
    if mem.shape != (t.mem_len,):
        state.check(cfg)
    buf = np.empty(cfg.fft_size, _F32)
    np.multiply(mem, t.w_first, out=buf[: t.mem_len])
    np.multiply(x, t.w_second, out=buf[t.mem_len:])
    if t.mem_len > hop:
        mem[:-hop] = mem[hop:]
    mem[-hop:] = x
    spec = np.fft.rfft(buf)
    spec *= t.wnorm
    return spec.astype(np.complex64)


def synthesis(cfg: DspConfig, state: DspState, spec: Any) -> np.ndarray:
    """One hop of STFT synthesis (libdf ``frame_synthesis``, unnormalised inverse FFT + overlap-add)."""
    t, hop = cfg._t, cfg.hop_size
    s = _spec_in(cfg, spec, 1, "dsp.synthesis")
    mem = state.synthesis_mem
    if mem.shape != (t.mem_len,):
        state.check(cfg)
    x = np.fft.irfft(s, cfg.fft_size, norm="forward").astype(_F32)
    x *= t.window
    out = x[:hop] + mem[:hop]
    split = t.mem_len - hop
    if split > 0:
        np.add(mem[hop:], x[hop:hop + split], out=mem[:split])
    mem[split:] = x[hop + split:]
    return out


def features(cfg: DspConfig, state: DspState, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    """ERB feature (float32 [nb_erb]) and unit-normalised DF spectrum (complex64 [nb_df]) of one hop."""
    s = _spec_in(cfg, spec, 1, "dsp.features")
    if state.erb_norm.shape != (cfg.nb_erb,) or state.unit_norm.shape != (cfg.nb_df,):
        state.check(cfg)
    erb, df = _features(cfg, state, s[None])
    return erb[0], df[0]


def _features(cfg: DspConfig, state: DspState, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """libdf ``erb_feat`` + ``cplx_feat`` over [n, F], float32 in libdf's operation order."""
    t = cfg._t
    s = np.ascontiguousarray(s, dtype=np.complex64)
    sq = s.view(_F32) ** 2
    db = np.add.reduceat(sq[:, 0::2] + sq[:, 1::2], t.band_starts, axis=-1)  # band mean of re^2 + im^2
    db *= t.band_scale
    db += _F32(1e-10)
    np.log10(db, out=db)
    db *= _F32(10.0)
    x = s[:, : cfg.nb_df]
    mag = np.abs(x)
    mean, unit, a, oma = state.erb_norm, state.unit_norm, t.alpha, t.one_minus_alpha
    for i in range(len(s)):  # the norms are recursive in time: one step per hop
        mean *= a  # band_mean_norm_erb: s = x*(1-a) + s*a; x = (x - s)/40
        mean += db[i] * oma
        db[i] -= mean
        unit *= a  # band_unit_norm: s = |x|*(1-a) + s*a; x /= sqrt(s)
        unit += mag[i] * oma
        np.sqrt(unit, out=mag[i])
    db /= _F32(40.0)
    df = np.empty(x.shape, np.complex64)
    # divide re and im by the real sqrt(state), exactly as libdf (a complex division would round differently)
    np.divide(np.ascontiguousarray(x).view(_F32).reshape(*x.shape, 2), mag[..., None],
              out=df.view(_F32).reshape(*x.shape, 2))
    return db, df


def analysis_frames(cfg: DspConfig, state: DspState, samples: Any) -> np.ndarray:
    """:func:`analysis` over ``n`` whole hops at once (float32 [n*hop] -> complex64 [n, F]); same state semantics."""
    hop, t = cfg.hop_size, cfg._t
    x = np.asarray(samples, dtype=_F32)
    if x.ndim != 1 or x.size % hop:
        raise _bad("dsp.analysis_frames", x, f"float32 [n*{hop}]")
    state.check(cfg)
    if x.size == 0:
        return np.zeros((0, cfg.freq_bins), np.complex64)
    sig = np.concatenate([state.analysis_mem, x])
    frames = sliding_window_view(sig, cfg.fft_size)[::hop] * t.window
    state.analysis_mem[:] = sig[sig.size - t.mem_len:]
    spec = np.fft.rfft(frames, axis=-1)
    spec *= t.wnorm
    return spec.astype(np.complex64)


def features_frames(cfg: DspConfig, state: DspState, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`features` over ``n`` hops: complex [n, F] -> (float32 [n, nb_erb], complex64 [n, nb_df])."""
    s = _spec_in(cfg, spec, 2, "dsp.features_frames")
    state.check(cfg)
    return _features(cfg, state, s)


def synthesis_frames(cfg: DspConfig, state: DspState, spec: Any) -> np.ndarray:
    """:func:`synthesis` over ``n`` hops: complex [n, F] -> float32 [n*hop]; same state semantics."""
    s = _spec_in(cfg, spec, 2, "dsp.synthesis_frames")
    state.check(cfg)
    t, hop = cfg._t, cfg.hop_size
    if not t.fast_ola or len(s) == 0:  # general overlap: per hop, exactly libdf's summation order
        return np.concatenate([synthesis(cfg, state, f) for f in s] or [np.zeros(0, _F32)])
    x = np.fft.irfft(s, cfg.fft_size, axis=-1, norm="forward").astype(_F32)
    x *= t.window
    prev = np.concatenate([state.synthesis_mem[None], x[:-1, hop:]])
    state.synthesis_mem[:] = x[-1, hop:]
    return (x[:, :hop] + prev).reshape(-1)


def _libdf_df(cfg: DspConfig) -> Any:
    import libdf

    return libdf.DF(cfg.sr, cfg.fft_size, cfg.hop_size, cfg.nb_erb)


def offline_features(cfg: DspConfig, audio: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference features of a whole signal via libdf, as ``df.enhance.df_features`` computes them (no torch).

    Returns ``(spec complex64 [T', F], feat_erb float32 [T', nb_erb], feat_spec complex64 [T', nb_df])`` with
    ``T' = len(audio) // hop`` (a trailing partial hop is dropped, as libdf does).
    """
    import libdf

    x = np.ascontiguousarray(np.asarray(audio, dtype=_F32))
    if x.ndim != 1:
        raise _bad("dsp.offline_features", x, "float32 [T] (mono)")
    spec = _libdf_df(cfg).analysis(x[None])  # resets libdf's hidden STFT state first
    widths = np.asarray(cfg.erb_widths, dtype=np.uint64)
    # libdf.erb_norm normalises its input in place and returns it; erb() made a fresh array, so that's fine.
    feat_erb = libdf.erb_norm(libdf.erb(spec, widths), cfg.norm_alpha)
    feat_spec = libdf.unit_norm(np.ascontiguousarray(spec[..., : cfg.nb_df]), cfg.norm_alpha)
    return spec[0], feat_erb[0], feat_spec[0]


def offline_synthesis(cfg: DspConfig, spec: Any) -> np.ndarray:
    """Reference synthesis of a whole spectrogram (complex [T', F] -> float32 [T'*hop]) via libdf."""
    s = _spec_in(cfg, spec, 2, "dsp.offline_synthesis")
    # a copy on purpose: libdf's DF.synthesis uses its input as FFT scratch and overwrites the caller's array
    return _libdf_df(cfg).synthesis(np.array(s[None], dtype=np.complex64, order="C"))[0]
