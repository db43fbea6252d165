"""Numbers that compare two outputs: SNR of the difference, SI-SDR, PESQ, STOI, LSNR error, delay alignment.

Everything here takes plain 1-D arrays (mono, any float dtype) and returns plain Python floats or numpy
arrays; it needs only numpy (pesq, pystoi and soxr are imported inside the functions that use them).
``snr_of_difference`` is the kit's headline number: how far a streamed output is from the PyTorch
full-sequence reference (+inf when they are bit-identical).

Notebook: 03_compare_outputs
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .args import check_number, shown
from .errors import AudioError, DfnbError

__all__ = [
    "SNR_CAP_DB",
    "as_signal",
    "snr_of_difference",
    "max_abs_error",
    "si_sdr",
    "pesq_wb",
    "stoi",
    "snr_improvement",
    "estimate_delay",
    "align",
    "error_per_hop",
    "speech_active_hops",
    "boundary_times",
    "error_by_position",
    "lsnr_error",
    "metrics_table",
]

#: Per-hop SNRs of identical hops (+inf) are drawn at this value so they stay on a plot.
SNR_CAP_DB = 200.0
#: A hop whose mean square is at or below this (-120 dBFS) counts as silent.
_SILENT_MS = 1e-12


def as_signal(x: Any, name: str = "signal") -> np.ndarray:
    """Return ``x`` as a finite, non-empty 1-D float64 array, or raise AudioError saying what is wrong."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AudioError(f"{name} is not a numeric array ({type(x).__name__}): pass a 1-D numpy array") from e
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise AudioError(f"{name} must be mono 1-D, got shape {a.shape}: pass one channel, e.g. x[:, 0]")
    if a.size == 0:
        raise AudioError(f"{name} is empty: pass at least one sample")
    bad = ~np.isfinite(a)
    if bad.any():
        raise AudioError(
            f"{name} has {int(bad.sum())} non-finite samples (first at index {int(np.argmax(bad))}): "
            "check the model output that produced it"
        )
    return a


def _pair(reference: Any, test: Any, names: tuple[str, str] = ("reference", "test")) -> tuple[np.ndarray, np.ndarray]:
    r, t = as_signal(reference, names[0]), as_signal(test, names[1])
    if r.size != t.size:
        raise AudioError(
            f"{names[0]} has {r.size} samples but {names[1]} has {t.size}: they must be sample-aligned and of "
            "equal length; use estimate_delay() and align() first"
        )
    return r, t


def _snr_db(signal_energy: float, noise_energy: float) -> float:
    if noise_energy == 0.0:
        return math.inf
    if signal_energy == 0.0:
        return -math.inf
    return float(10.0 * math.log10(signal_energy / noise_energy))


def snr_of_difference(reference, test) -> float:
    """SNR of ``test`` against ``reference`` in dB: 10·log10(Σ ref² / Σ (ref − test)²); +inf when identical.

    Notebook: 03_compare_outputs
    """
    r, t = _pair(reference, test)
    return _snr_db(float(np.dot(r, r)), float(np.sum((r - t) ** 2)))


def max_abs_error(reference, test) -> float:
    """Largest absolute sample difference between two equal-length signals."""
    r, t = _pair(reference, test)
    return float(np.max(np.abs(r - t)))


def si_sdr(reference, estimate) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean first; +inf when exact."""
    r, e = _pair(reference, estimate, ("reference", "estimate"))
    r = r - r.mean()
    e = e - e.mean()
    rr = float(np.dot(r, r))
    if rr == 0.0:
        raise AudioError("reference is constant (silent after removing its mean): SI-SDR needs a reference with signal")
    target = (float(np.dot(e, r)) / rr) * r
    return _snr_db(float(np.dot(target, target)), float(np.sum((e - target) ** 2)))


def _import(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise DfnbError(f"{module} is not installed: pip install 'dfnb[metrics]' (or pip install {module})") from e


def pesq_wb(clean, enhanced, sr: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0–4.64) after resampling both signals to 16 kHz with soxr.

    Returns nan (with a RuntimeWarning) when PESQ itself refuses the input, e.g. silence or too short.
    Notebook: 03_compare_outputs
    """
    c, e = _pair(clean, enhanced, ("clean", "enhanced"))
    pesq = _import("pesq")
    if not np.any(c) or not np.any(e):
        warnings.warn("PESQ cannot score an all-zero signal; returning nan", RuntimeWarning, stacklevel=2)
        return math.nan
    if sr != 16000:
        soxr = _import("soxr")
        c = soxr.resample(c, sr, 16000, quality="HQ")
        e = soxr.resample(e, sr, 16000, quality="HQ")
    try:
        return float(pesq.pesq(16000, c, e, "wb"))
    except pesq.PesqError as err:
        warnings.warn(f"PESQ could not score this pair ({type(err).__name__}: {err}); returning nan",
                      RuntimeWarning, stacklevel=2)
        return math.nan


def stoi(clean, enhanced, sr: int, extended: bool = False) -> float:
    """STOI (0–1; pystoi resamples to 10 kHz internally); ``extended=True`` gives ESTOI."""
    c, e = _pair(clean, enhanced, ("clean", "enhanced"))
    pystoi = _import("pystoi")
    return float(pystoi.stoi(c, e, int(sr), extended=extended))


def snr_improvement(noisy, enhanced, clean) -> float:
    """SNR(enhanced vs clean) − SNR(noisy vs clean) in dB; all three must be sample-aligned."""
    c = as_signal(clean, "clean")
    n, e = as_signal(noisy, "noisy"), as_signal(enhanced, "enhanced")
    _pair(c, n, ("clean", "noisy"))
    _pair(c, e, ("clean", "enhanced"))
    return snr_of_difference(c, e) - snr_of_difference(c, n)


def estimate_delay(reference, delayed, max_lag: int) -> int:
    """Integer lag in [-max_lag, max_lag] maximising the cross-correlation (FFT); positive when ``delayed`` lags.

    ``delayed[n + d] ≈ reference[n]`` for the returned ``d``. Lengths may differ.
    """
    r, d = as_signal(reference, "reference"), as_signal(delayed, "delayed")
    if isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)) or max_lag < 0:
        raise AudioError(f"max_lag must be a non-negative integer number of samples, got {shown(max_lag)}")
    if not np.any(r) or not np.any(d):
        raise AudioError("cannot estimate a delay against an all-zero signal: pass signals that contain sound")
    n = r.size + d.size - 1
    nfft = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.conj(np.fft.rfft(r, nfft)) * np.fft.rfft(d, nfft), nfft)
    # corr[k] = Σ_n r[n]·d[n+k]; negative k wrap around to the end of the buffer.
    pos = min(int(max_lag), d.size - 1)
    neg = min(int(max_lag), r.size - 1)
    lags = np.concatenate([np.arange(-neg, 0), np.arange(0, pos + 1)])
    values = corr[lags % nfft]
    return int(lags[int(np.argmax(values))])


def align(reference, delayed, delay: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop ``delay`` leading samples (from ``delayed`` if positive, from ``reference`` if negative),
    then trim both to the shorter length, so ``ref_out[n]`` and ``delayed_out[n]`` line up.
    """
    r, d = as_signal(reference, "reference"), as_signal(delayed, "delayed")
    delay = int(delay)
    if delay >= 0:
        d = d[delay:]
    else:
        r = r[-delay:]
    n = min(r.size, d.size)
    if n == 0:
        raise AudioError(f"a delay of {delay} samples leaves nothing to compare (lengths {r.size + max(-delay, 0)} "
                         f"and {d.size + max(delay, 0)}): check the delay")
    return r[:n], d[:n]


def _hop_energies(x: np.ndarray, hop: int) -> np.ndarray:
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop <= 0:
        raise AudioError(f"hop must be a positive integer number of samples, got {shown(hop)}")
    n_hops = -(-x.size // hop)
    padded = np.zeros(n_hops * hop)
    padded[: x.size] = x
    return (padded.reshape(n_hops, hop) ** 2).mean(axis=1)


def error_per_hop(reference, test, hop: int = 480) -> np.ndarray:
    """SNR of the difference per hop in dB, one value per hop (the last hop may be partial, zero-padded).

    Identical hops give ``SNR_CAP_DB`` (200 dB) instead of +inf; hops whose reference is silent
    (mean square ≤ 1e-12, i.e. -120 dBFS) give nan.
    Notebook: 03_compare_outputs
    """
    r, t = _pair(reference, test)
    sig = _hop_energies(r, hop)
    err = _hop_energies(r - t, hop)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = 10.0 * np.log10(sig / err)
    snr = np.minimum(np.where(err == 0.0, SNR_CAP_DB, snr), SNR_CAP_DB)
    snr[sig <= _SILENT_MS] = np.nan
    return snr


def speech_active_hops(clean_or_signal, hop: int = 480, threshold_db: float = -40.0) -> np.ndarray:
    """Boolean per hop: hop energy within ``|threshold_db|`` dB of the loudest hop (all False for silence)."""
    x = as_signal(clean_or_signal, "signal")
    threshold_db = check_number(threshold_db, "threshold_db")
    e = _hop_energies(x, hop)
    if not np.any(e > 0):
        return np.zeros(e.size, dtype=bool)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(e)
    return db >= db.max() - abs(float(threshold_db))


def boundary_times(n_samples: int, sr: int = 48000, *, chunk_hops: int, hop: int = 480,
                   delay_samples: int = 0) -> np.ndarray:
    """Chunk boundaries in *output* time, in seconds: call ``k`` starts at input sample ``k·chunk·hop``; after the
    runtime's ``delay_samples`` are removed (:func:`dfnb.runtime.enhance`), its first output sample lands at
    ``k·chunk·hop − delay_samples``. Only boundaries strictly inside ``(0, n_samples)`` are returned.

    Notebook: 01_why_stateless_diverges
    """
    if isinstance(chunk_hops, bool) or not isinstance(chunk_hops, (int, np.integer)) or chunk_hops <= 0:
        raise DfnbError(f"chunk_hops must be a positive number of hops, got {chunk_hops!r}")
    step = int(chunk_hops) * int(hop)
    b = np.arange(step, int(n_samples) + int(delay_samples) + step, step) - int(delay_samples)
    return b[(b > 0) & (b < n_samples)] / float(sr)


def error_by_position(reference, test, chunk_hops: int, *, hop: int = 480, delay_samples: int = 0,
                      mask=None) -> np.ndarray:
    """Median per-hop SNR of the difference at each position ``0 .. chunk_hops-1`` inside a host call, counted in
    *output* time: position 0 is the first output hop of a call once the runtime's ``delay_samples`` are removed
    (so an artifact made at a call boundary lands at position 0). ``mask`` (bool per hop, e.g.
    :func:`speech_active_hops` of the clean speech) keeps only those hops; a position with no hop gives nan.

    Notebook: 01_why_stateless_diverges
    """
    if isinstance(chunk_hops, bool) or not isinstance(chunk_hops, (int, np.integer)) or chunk_hops <= 0:
        raise DfnbError(f"chunk_hops must be a positive number of hops, got {chunk_hops!r}")
    e = error_per_hop(reference, test, hop)
    keep = np.ones(e.size, bool) if mask is None else np.asarray(mask, bool)
    n = min(e.size, keep.size)
    pos = (np.arange(n) + int(delay_samples) // hop) % chunk_hops
    out = np.full(chunk_hops, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan positions (silent hops) stay nan
        for p in range(chunk_hops):
            sel = e[:n][(pos == p) & keep[:n]]
            if sel.size:
                out[p] = np.nanmedian(sel)
    return out


def lsnr_error(ref_lsnr, test_lsnr) -> float:
    """Largest absolute difference in dB between two LSNR traces of the same shape."""
    a, b = np.asarray(ref_lsnr, dtype=np.float64), np.asarray(test_lsnr, dtype=np.float64)
    if a.shape != b.shape:
        raise DfnbError(f"LSNR traces differ in shape ({a.shape} vs {b.shape}): compare outputs of the same clip")
    if a.size == 0:
        raise DfnbError("LSNR traces are empty: run the model on at least one hop")
    return float(np.max(np.abs(a - b)))


def _cell(value: Any, floatfmt: str) -> tuple[str, bool]:
    """Text of one table cell and whether it is numeric (right-aligned)."""
    if value is None:
        return "-", True
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)), False
    if isinstance(value, (int, np.integer)):
        return str(int(value)), True
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "-", True
        if math.isinf(v):
            return ("inf" if v > 0 else "-inf"), True
        return format(v, floatfmt), True
    return str(value), False


def metrics_table(rows: Sequence[dict], columns: Sequence[str] | None = None, floatfmt: str = ".2f") -> str:
    """Plain-text aligned table: numbers right-aligned with ``floatfmt``, inf as "inf", nan/None as "-".

    ``columns`` defaults to every key in order of first appearance; a missing key prints as blank.
    Notebook: 03_compare_outputs
    """
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DfnbError(f"row {i} is a {type(row).__name__}, not a dict: pass a list of {{column: value}} dicts")
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    columns = [str(c) for c in columns]
    if not columns:
        return ""
    try:
        format(1.0, floatfmt)
    except ValueError as e:
        raise DfnbError(f"floatfmt {shown(floatfmt)} is not a float format spec: use e.g. '.2f' or '.3g'") from e
    cells = [[_cell(row[c], floatfmt) if c in row else ("", False) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[j][0]) for r in cells]) for j, c in enumerate(columns)]
    numeric = [all(r[j][1] for r in cells if r[j][0]) and any(r[j][0] for r in cells) for j in range(len(columns))]
    def line(texts: list[str]) -> str:
        return "  ".join(t.rjust(w) if num else t.ljust(w) for t, w, num in zip(texts, widths, numeric)).rstrip()
    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line([t for t, _ in r]) for r in cells]
    return "\n".join(out)
