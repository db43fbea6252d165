"""The offline reference: deepfilternet's full-sequence PyTorch model over a whole file, with probes.

:func:`enhance_offline` does what ``df.enhance.enhance(model, df_state, audio, pad=True)`` does — pad the input
with ``fft_size`` zeros, libdf analysis and features, one ``DfNet.forward`` over the whole sequence, libdf
synthesis, crop the STFT delay so the output lines up with the input — and can also return per-frame probes:
the local SNR estimate, the hidden-state sequence of every GRU (top layer of each block's torch GRU, named like ``Stream.trace``), the ERB mask,
the deep-filter coefficients and the input features. The only difference from ``df.enhance.enhance`` is that
the normalisation alpha comes from the model's own spec instead of deepfilternet's process-wide config, so a
second model family loaded in the same process cannot change it (a test checks both agree).

Input audio may have any sample rate (resampled to the model's 48 kHz with soxr and back unless
``output_sr`` says otherwise), any PCM dtype (converted to float32), and must be mono (``dfnb.audio.read_audio(..., downmix=True)``
averages a file's channels); invalid audio raises :class:`dfnb.errors.AudioError`.

Notebook: 00_tour
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import audio as audio_mod
from . import dsp

__all__ = ["OfflineResult", "enhance_offline", "run_model"]


@dataclass
class OfflineResult:
    """Output of :func:`enhance_offline`. Per-frame probes are ``[T, ...]`` numpy arrays (T = STFT frames)."""

    audio: np.ndarray
    sr: int
    lsnr: np.ndarray | None = None
    gru: dict[str, np.ndarray] = field(default_factory=dict)
    mask: np.ndarray | None = None
    coefs: np.ndarray | None = None
    feat_erb: np.ndarray | None = None
    feat_spec: np.ndarray | None = None
    spec: np.ndarray | None = None
    spec_enhanced: np.ndarray | None = None


def _as_torch(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def run_model(loaded: Any, spec: np.ndarray, feat_erb: np.ndarray, feat_spec: np.ndarray, *, probes: bool = False):
    """Run ``DfNet.forward`` on complex features ``[T, F]``, ``[T, E]``, ``[T, Fdf]``; return spectra and probes."""
    import torch

    from .streaming import is_gru_block

    net = loaded.net
    grus: dict[str, np.ndarray] = {}
    hooks = []
    if probes:
        for name, m in net.named_modules():
            if is_gru_block(m):
                # the block's inner torch GRU: its output sequence is the top layer's hidden state per frame;
                # named like Stream.trace ("enc_emb_gru") so offline and streaming trajectories line up
                inner = getattr(m, "gru", m)
                def hook(mod, args, out, name=name.replace(".", "_")):
                    grus[name] = out[0][0].detach().numpy().copy()
                hooks.append(inner.register_forward_hook(hook))
        coef_box: list = []
        hooks.append(net.df_dec.register_forward_hook(
            lambda mod, a, out: coef_box.append((out[0] if isinstance(out, tuple) else out).detach())))
    x = _as_torch(np.stack([spec.real, spec.imag], -1).astype(np.float32))[None, None]
    fe = _as_torch(feat_erb.astype(np.float32))[None, None]
    fs = _as_torch(np.stack([feat_spec.real, feat_spec.imag], -1).astype(np.float32))[None, None]
    try:
        with torch.no_grad():
            out = net.eval()(x.clone(), fe, fs)
    finally:
        for h in hooks:
            h.remove()
    y = out[0][0, 0].numpy()
    res = {"spec_enhanced": (y[..., 0] + 1j * y[..., 1]).astype(np.complex64)}
    if probes:
        res["lsnr"] = out[2][0, :, 0].numpy().copy()
        res["mask"] = out[1][0, 0].numpy().copy()
        c = coef_box[0][0].numpy()  # [T, nb_df, O*2]
        res["coefs"] = c.reshape(c.shape[0], c.shape[1], -1, 2).transpose(0, 2, 1, 3).copy()  # [T, O, Fdf, 2]
        res["gru"] = grus
    return res


def enhance_offline(loaded: Any, audio: np.ndarray, sr: int | None = None, *, probes: bool = False,
                    output_sr: int | None = None, atten_lim_db: float | None = None) -> OfflineResult:
    """Enhance ``audio`` (at ``sr``, default the model's rate) with the full-sequence model.

    Returns an :class:`OfflineResult` whose ``audio`` has the input's length (at ``output_sr``, default ``sr``)
    and is time-aligned with it. ``atten_lim_db`` mixes back noisy spectrum as ``df.enhance.enhance`` does.

    Notebook: 00_tour
    """
    cfg = dsp.DspConfig.from_spec(loaded.spec)
    sr = cfg.sr if sr is None else audio_mod.check_sr(sr)  # int(sr) would turn 16000.5, "16000", True into rates
    output_sr = sr if output_sr is None else audio_mod.check_sr(output_sr, name="output_sr")
    x = audio_mod.check_audio(audio, sr)
    x48 = audio_mod.resample(x, sr, cfg.sr) if sr != cfg.sr else x
    n = len(x48)
    padded = np.concatenate([x48, np.zeros(cfg.fft_size, dtype=np.float32)])
    spec, feat_erb, feat_spec = dsp.offline_features(cfg, padded)
    r = run_model(loaded, spec, feat_erb, feat_spec, probes=probes)
    spec_e = r["spec_enhanced"]
    if atten_lim_db is not None and abs(atten_lim_db) > 0:
        lim = 10 ** (-abs(atten_lim_db) / 20)
        spec_e = (spec * lim + spec_e * (1 - lim)).astype(np.complex64)
    y = dsp.offline_synthesis(cfg, spec_e)
    d = cfg.fft_size - cfg.hop_size
    y = y[d : d + n]
    if output_sr != cfg.sr:
        y = audio_mod.resample(y, cfg.sr, output_sr)
        y = _fit_length(y, int(round(len(x) * output_sr / sr)))
    res = OfflineResult(audio=y.astype(np.float32), sr=output_sr)
    if probes:
        res.lsnr, res.mask, res.coefs, res.gru = r["lsnr"], r["mask"], r["coefs"], r["gru"]
        res.feat_erb, res.feat_spec, res.spec, res.spec_enhanced = feat_erb, feat_spec, spec, spec_e
    return res


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - len(y), dtype=y.dtype)])
