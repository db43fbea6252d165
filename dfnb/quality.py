"""Perceptual quality scores of one output: DNSMOS P.835 (SIG/BAK/OVRL), PLCMOS, and all scores at once.

The non-intrusive scores need no clean reference, so they also rate the blind DNS4 clips:

* **DNSMOS P.835** (Reddy et al., ICASSP 2022): Microsoft's ONNX model predicting the ITU-T P.835 ratings of
  the speech signal (SIG), the background noise (BAK) and the overall quality (OVRL), 1–5, plus its P.808
  overall MOS. The file is cut in 9.01 s windows with 1 s hops (a shorter file is repeated until it is long
  enough), each window rated, the ratings averaged — exactly what ``speechmos.dnsmos`` (and the DNS
  challenge's ``dnsmos_local.py``) does.
* **PLCMOS v2** (Diener et al., Interspeech 2023): Microsoft's ONNX model rating packet-loss concealment, i.e.
  gaps, clicks and discontinuities, 1–5. It averages 15 rounds with random "rater embeddings"; here they are
  drawn from a fixed seed so the score is reproducible (the caller's numpy random state is left untouched).
  It is kept because it separates the choppy hosts from exact ones (measured in notebook 06).

Both models ship inside the PyPI package ``speechmos`` (``pip install 'dfnb[quality]'``) and run offline with
onnxruntime, one thread each (a study runs one process per core). They want 16 kHz mono in [-1, 1]: the audio
is resampled with :func:`dfnb.audio.resample` (soxr) and samples beyond ±1 are clipped, as writing a 16-bit
wav (what DNSMOS is normally fed) would do.

:func:`score_output` adds the intrusive scores of :mod:`dfnb.metrics` (PESQ, STOI, SI-SDR against a clean
recording) and the SNR of the difference against a reference output. Torch-free.

Notebook: 06_quality_cost
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from . import audio as audio_mod
from . import metrics
from .errors import DfnbError

__all__ = ["MOS_SR", "SCORES", "QualityDependencyError", "mos_input", "dnsmos", "plcmos", "score_output"]

#: Sample rate the DNSMOS and PLCMOS models take.
MOS_SR = 16000
#: The columns :func:`score_output` fills, in order.
SCORES = ("pesq", "stoi", "si_sdr_db", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808", "plcmos",
          "snr_diff_db")


class QualityDependencyError(DfnbError, ImportError):
    """An optional package that a quality score needs (speechmos, onnxruntime) is not installed."""


def _speechmos(module: str):
    try:
        import importlib

        return importlib.import_module(f"speechmos.{module}")
    except ImportError as e:
        raise QualityDependencyError(
            f"the {module.upper()} score needs the package 'speechmos' (it ships the ONNX models), which could not "
            f"be imported ({e}); install it with: pip install 'dfnb[quality]' (or pip install speechmos)") from e


def _one_thread_session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


@cache
def _dnsmos_model():
    """speechmos's DNSMOS with single-threaded sessions (its own use all cores; a study runs a process per core)."""
    dm = _speechmos("dnsmos")
    models = Path(dm.__file__).resolve().parent / "dnsmos_models"
    primary, p808 = str(models / "sig_bak_ovr.onnx"), str(models / "model_v8.onnx")
    model = dm.DNSMOS(primary, p808)
    model.onnx_sess, model.p808_onnx_sess = _one_thread_session(primary), _one_thread_session(p808)
    return model


@cache
def _plcmos_model():
    pm = _speechmos("plcmos")
    model = pm.PLCMOS()
    model.session = _one_thread_session(model.model_path)
    return model


def mos_input(audio: Any, sr: int) -> np.ndarray:
    """``audio`` as the MOS models take it: 16 kHz (soxr), float32, clipped to [-1, 1].

    Notebook: 06_quality_cost
    """
    x = audio_mod.check_audio(audio, sr, name="audio to score")
    x = audio_mod.resample(x, sr, MOS_SR) if sr != MOS_SR else x
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


def dnsmos(audio: Any, sr: int) -> dict[str, float]:
    """DNSMOS P.835 of one mono signal: ``{"sig", "bak", "ovrl", "p808"}`` on the 1–5 MOS scale.

    Parameters
    ----------
    audio : array_like
        Mono samples at ``sr`` (any length; a file shorter than 9.01 s is repeated, as DNSMOS does).
    sr : int
        Sample rate of ``audio``; it is resampled to 16 kHz.

    Returns
    -------
    dict
        ``sig`` (speech signal), ``bak`` (background noise), ``ovrl`` (overall), ``p808`` (P.808 MOS).

    Examples
    --------
    >>> from dfnb import clips
    >>> noisy, clean, sr = clips.load_pair("vb_p232_013")  # doctest: +SKIP
    >>> dnsmos(clean, sr)["ovrl"] > dnsmos(noisy, sr)["ovrl"]  # doctest: +SKIP
    True

    Notebook: 06_quality_cost
    """
    x = mos_input(audio, sr)
    r = _dnsmos_model()(x, MOS_SR, False)
    return {"sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]), "ovrl": float(r["ovrl_mos"]),
            "p808": float(r["p808_mos"])}


def plcmos(audio: Any, sr: int, *, seed: int = 0) -> float:
    """PLCMOS v2 of one mono signal (1–5; low for gaps, clicks and discontinuities), reproducible via ``seed``.

    Parameters
    ----------
    audio : array_like
        Mono samples at ``sr``.
    sr : int
        Sample rate of ``audio``; it is resampled to 16 kHz.
    seed : int
        Seed of the 15 random rater embeddings the model averages over (same seed, same score).

    Returns
    -------
    float

    Examples
    --------
    >>> plcmos(clean, sr) > plcmos(choppy, sr)  # doctest: +SKIP
    True

    Notebook: 06_quality_cost
    """
    x = mos_input(audio, sr)
    model = _plcmos_model()
    saved = np.random.get_state()  # speechmos draws the rater embeddings from numpy's global generator
    try:
        np.random.seed(seed)
        return float(model(x)["plcmos"])
    finally:
        np.random.set_state(saved)


def score_output(output: Any, sr: int, *, clean: Any = None, reference: Any = None,
                 plc: bool = True) -> dict[str, float]:
    """Every score of :data:`SCORES` for one output; nan where an input is missing.

    Parameters
    ----------
    output : array_like
        The signal to rate (mono, at ``sr``).
    sr : int
        Its sample rate.
    clean : array_like, optional
        The clean recording, sample-aligned with ``output``: gives PESQ (wide band), STOI and SI-SDR.
    reference : array_like, optional
        A reference output (e.g. the offline model's): gives ``snr_diff_db``, the SNR of the difference.
    plc : bool
        Also compute PLCMOS.

    Returns
    -------
    dict
        ``{score: float}`` for every name in :data:`SCORES`.

    Examples
    --------
    >>> s = score_output(enhanced, 48000, clean=clean, reference=offline)  # doctest: +SKIP
    >>> round(s["dnsmos_ovrl"], 2), round(s["pesq"], 2)  # doctest: +SKIP

    Notebook: 06_quality_cost
    """
    nan = math.nan
    out = dict.fromkeys(SCORES, nan)
    if clean is not None:
        out["pesq"] = metrics.pesq_wb(clean, output, sr)
        out["stoi"] = metrics.stoi(clean, output, sr)
        out["si_sdr_db"] = metrics.si_sdr(clean, output)
    d = dnsmos(output, sr)
    out.update(dnsmos_sig=d["sig"], dnsmos_bak=d["bak"], dnsmos_ovrl=d["ovrl"], dnsmos_p808=d["p808"])
    if plc:
        out["plcmos"] = plcmos(output, sr)
    if reference is not None:
        out["snr_diff_db"] = metrics.snr_of_difference(reference, output)
    return out
