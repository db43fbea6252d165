"""The offline reference: deepfilternet's full-sequence PyTorch model over a whole file, with probes.

:func:`enhance_offline` does what ``df.enhance.enhance(model, df_state, audio, pad=True)`` does — pad the input
with ``fft_size`` zeros, libdf analysis and features, one ``DfNet.forward`` over the whole sequence, libdf
synthesis, crop the STFT delay so the output lines up with the input — and can also return per-frame probes:
the local SNR estimate, the hidden-state sequence of every GRU (top layer of each block's torch GRU, named
like ``Stream.trace``), the ERB mask, the deep-filter coefficients and the input features. The only difference
from ``df.enhance.enhance`` is that the normalisation alpha comes from the model's own spec instead of
deepfilternet's process-wide config, so a second model family loaded in the same process cannot change it (a
test checks both agree).

For files of any length, :class:`BlockOffline` runs the same modules over blocks of frames with every state
carried (GRU hidden states and the causal convs' past frames, exactly what :mod:`dfnb.streaming`'s wrappers
carry) around the torch-free deep-filter stage of :class:`dfnb.frames.FrameRuntime`: the offline output in
flat memory (``dfnb enhance --runtime offline`` uses it; ``benchmarks/file_memory.py`` measures how close it is
to one ``DfNet.forward`` over the whole file).

Input audio may have any sample rate (resampled to the model's 48 kHz with soxr and back unless
``output_sr`` says otherwise), any PCM dtype (converted to float32), and must be mono
(``dfnb.audio.read_audio(..., downmix=True)`` averages a file's channels); invalid audio raises
:class:`dfnb.errors.AudioError`.

Notebook: 00_tour
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import audio as audio_mod
from . import dsp
from .args import check_flag, check_number, shown
from .errors import ArgumentError
from .frames import FrameRuntime
from .layout import Layout

__all__ = ["OfflineResult", "enhance_offline", "run_model", "BlockOffline", "check_loaded"]


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

    from .step import is_gru_block

    net = loaded.net
    grus: dict[str, np.ndarray] = {}
    hooks = []
    if probes:
        for name, m in net.named_modules():
            if is_gru_block(m):
                # the block's inner torch GRU: its output sequence is the top layer's hidden state per frame;
                # named like Stream.trace ("enc_emb_gru") so offline and streaming trajectories line up
                inner = getattr(m, "gru", m)
                key = name.replace(".", "_")
                def hook(mod, args, out, key=key):
                    grus[key] = out[0][0].detach().numpy().copy()
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

    Parameters
    ----------
    loaded : dfnb.models.LoadedModel
        The model (:func:`dfnb.models.load_model`).
    audio : array_like
        Mono samples at ``sr`` (any PCM dtype; checked by :func:`dfnb.audio.check_audio`).
    sr, output_sr : int, optional
        Input rate (default the model's 48 kHz) and output rate (default ``sr``); soxr resamples.
    probes : bool
        Also return lsnr, GRU states, mask, DF coefficients, features and spectra per frame.
    atten_lim_db : float, optional
        Mix back noisy spectrum as ``df.enhance.enhance`` does.

    Returns
    -------
    OfflineResult
        ``audio`` has the input's length (at ``output_sr``) and is time-aligned with it; probes when asked.

    Raises
    ------
    AudioError
        Invalid audio or sample rate.

    Examples
    --------
    >>> ref = enhance_offline(load_model("DeepFilterNet3"), noisy, probes=True)  # doctest: +SKIP
    >>> ref.audio.shape == noisy.shape, ref.lsnr.shape  # doctest: +SKIP

    Notebook: 00_tour
    """
    cfg = dsp.DspConfig.from_spec(check_loaded(loaded, "enhance_offline()").spec)
    probes = check_flag(probes, "probes")
    if atten_lim_db is not None:
        atten_lim_db = check_number(atten_lim_db, "atten_lim_db")
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
    y = y[d : d + max(n, 1)]  # >= 1 sample to resample: a 1-sample input at 192 kHz is 0 samples at 48 kHz
    if output_sr != cfg.sr:
        y = audio_mod.resample(y, cfg.sr, output_sr)
        y = _fit_length(y, int(round(len(x) * output_sr / sr)))
    else:
        y = y[:n]
    res = OfflineResult(audio=y.astype(np.float32), sr=output_sr)
    if probes:
        res.lsnr, res.mask, res.coefs, res.gru = r["lsnr"], r["mask"], r["coefs"], r["gru"]
        res.feat_erb, res.feat_spec, res.spec, res.spec_enhanced = feat_erb, feat_spec, spec, spec_e
    return res


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - len(y), dtype=y.dtype)])


def check_loaded(loaded: Any, what: str) -> Any:
    """``loaded`` if it looks like a :class:`dfnb.models.LoadedModel` (``.net`` and ``.spec``), else an
    :class:`~dfnb.errors.ArgumentError` saying how to get one."""
    if not (hasattr(loaded, "net") and hasattr(loaded, "spec")):
        raise ArgumentError(f"{what} needs a loaded model (dfnb.models.load_model('DeepFilterNet3')), got "
                            f"{shown(loaded)} of type {type(loaded).__name__}.")
    return loaded


class BlockOffline(FrameRuntime):
    """The offline model as a :class:`~dfnb.runtime.Runtime`: deepfilternet's modules run over each call's frames
    (a block: ``default_chunk`` hops = 5 s from :func:`dfnb.files.enhance_file`; the block size trades memory
    for speed), every state carried.

    Its output equals :func:`enhance_offline`'s (one ``DfNet.forward`` over the whole file) up to float
    rounding, for any length, in memory that does not grow with the length; ``benchmarks/file_memory.py``
    prints the agreement. ``probes=True`` records lsnr per frame in ``trace``.

    Examples
    --------
    >>> from dfnb.files import enhance_file  # doctest: +SKIP
    >>> enhance_file(BlockOffline(load_model("DeepFilterNet3")), "noisy.wav", "enhanced.wav")  # doctest: +SKIP

    Notebook: 00_tour
    """

    default_chunk = 500

    def __init__(self, loaded: Any, *, probes=False):
        from .step import StepModel

        spec = check_loaded(loaded, "BlockOffline").spec
        self.loaded = loaded
        self.modules = StepModel(loaded.net, spec)  # enc/erb_dec/df_dec with stateful conv and GRU wrappers
        wrappers = {**self.modules.grus, **self.modules.convs}
        self._wrappers = {name.replace(".", "_"): w for name, w in wrappers.items()}
        self._descs = [d for d in self.modules.descs if d.name in self._wrappers]
        self.setup_stage(dsp.DspConfig.from_spec(spec), spec.family, spec.conv_lookahead, spec.df_lookahead,
                         spec.df_order, Layout.of(spec).delay_frames)
        self.label = "PyTorch offline (blocks, every state carried)"
        super().__init__(probes)

    def _reset_model(self) -> None:
        import torch

        for d in self._descs:
            setattr(self._wrappers[d.name], "past" if d.group == "conv" else "h", torch.zeros(d.shape))

    def _state(self, name: str) -> np.ndarray:
        w = self._wrappers[name]
        return (w.past if hasattr(w, "k_past") else w.h).numpy()

    def evaluate(self, fe: np.ndarray, fs: np.ndarray):
        """The three modules on features ``[T, E]``, ``[T, Fdf]`` (complex), states carried (see FrameRuntime)."""
        import torch

        sm = self.modules
        fe_t = torch.from_numpy(np.ascontiguousarray(fe, np.float32))[None, None]
        fs_t = torch.from_numpy(np.stack([fs.real, fs.imag], 0).astype(np.float32))[None]
        with torch.no_grad():
            e0, e1, e2, e3, emb, c0, lsnr = sm.enc(fe_t, fs_t)
            m = sm.erb_dec(emb, e3, e2, e1, e0)
            dec = sm.df_dec(emb, c0)
        c = (dec[0] if isinstance(dec, tuple) else dec)[0].numpy()  # [T, Fdf, O*2]
        return self._outputs(m[0, 0].numpy(), c, lsnr[0, :, 0].numpy(), self._state)
