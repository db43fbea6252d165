"""Exact frame-by-frame streaming of a DeepFilterNet model, with ONE explicit state object.

The offline model (``DfNet.forward`` over a whole file) hides six kinds of memory. A streaming step must carry
all of them from one 10 ms hop to the next, or its output diverges from offline:

====================  ===========================================================================  =========
group                 what it is                                                                   where
====================  ===========================================================================  =========
``stft``              analysis window overlap and synthesis overlap-add memory                     dsp
``norm``              running means of the ERB (mean-norm) and complex (unit-norm) features        dsp
``gru_enc``           encoder GRU hidden state (``h0``/``h1`` of the seed contract)                model
``gru_erb``           ERB-decoder GRU hidden states                                               model
``gru_df``            DF-decoder GRU hidden states                                                model
``conv``              past input frames of every causal conv with a time kernel > 1                model
``lookahead``         the first ``conv_lookahead`` feature frames are never fed to the encoder;     model
                      outputs lag by ``delay_frames`` hops (a warm-up counter)
``df_buffer``         past (and lookahead) spectra the deep filter reads; for DeepFilterNet2 also  model
                      the masked spectra and coefficients waiting for the DF lookahead
====================  ===========================================================================  =========

:class:`StepModel` is a ``torch.nn.Module`` that advances all model-side state by one hop. It reuses
deepfilternet's own ``Encoder``/``ErbDecoder``/``DfDecoder`` forward code unchanged: the causal convs' zero
padding is replaced by a buffer of past frames (:class:`ConvWithPast`) and each GRU receives its hidden state
(:class:`GruWithState`). The same module is exported to ONNX (variant ``step``), and the per-sub-model parts are
exported for variant ``full``, so the PyTorch step and the exports share one description of the state
(:func:`describe_states`) and cannot drift.

Timing. At hop ``n`` the encoder sees feature frame ``n`` and computes encoder time ``t = n - conv_lookahead``
(offline, ``pad_feat`` drops the first ``conv_lookahead`` feature frames). DeepFilterNet3 filters the raw
spectrum, so the output frame is ``t``; DeepFilterNet2 filters the *masked* spectrum and needs the masks of
``df_lookahead`` further frames, so its output frame is ``t - df_lookahead``. Hence
``delay_frames = conv_lookahead (+ df_lookahead for DeepFilterNet2)`` and the streamed audio lags the input by
``delay_frames * hop + (fft_size - hop)`` samples (1440 for DeepFilterNet3, 480 for the _ll models).
The end of a file is reproduced exactly by :meth:`Stream.flush`: ``delay_frames`` hops of zero features and
zero spectrum, which is what offline padding feeds the model.

Notebook: 01_why_stateless_diverges
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from . import audio as audio_mod
from . import dsp
from .errors import AudioError, DfnbError, StateError

__all__ = [
    "STATE_GROUPS",
    "StateDesc",
    "ConvWithPast",
    "GruWithState",
    "StepModel",
    "StreamState",
    "Stream",
    "describe_states",
    "delay_frames",
    "delay_samples",
    "stream_enhance",
]

STATE_GROUPS = ("stft", "norm", "gru_enc", "gru_erb", "gru_df", "conv", "lookahead", "df_buffer")
_GRU_GROUP = {"enc": "gru_enc", "erb_dec": "gru_erb", "df_dec": "gru_df"}


@dataclass(frozen=True)
class StateDesc:
    """One piece of streaming state: its name (also the ONNX input name), shape, group and initial value."""

    name: str
    shape: tuple[int, ...]
    group: str
    owner: str  # "enc" | "erb_dec" | "df_dec" | "step" (model side) or "dsp" (host side)
    init: str  # "zeros" or a description of the non-zero initial value
    dtype: str = "float32"

    def initial(self) -> np.ndarray:
        """The initial value as a numpy array (the DSP norm states are filled by :mod:`dfnb.dsp`)."""
        return np.zeros(self.shape, dtype=self.dtype)


def delay_frames(spec: Any) -> int:
    """Hops between a frame entering the stream and its enhanced frame leaving it (see module docstring)."""
    extra = spec.df_lookahead if spec.family == "deepfilternet2" else max(0, spec.df_lookahead - spec.conv_lookahead)
    return int(spec.conv_lookahead + extra)


def delay_samples(spec: Any) -> int:
    """Samples by which streamed audio lags the input (offline output is aligned with the input)."""
    return delay_frames(spec) * spec.hop_size + (spec.fft_size - spec.hop_size)


# ----------------------------------------------------------------------------------------------------------
# Stateful wrappers around deepfilternet's own modules
# ----------------------------------------------------------------------------------------------------------
def _torch():
    import torch

    return torch


def _make_wrappers():
    torch = _torch()
    nn = torch.nn

    class _ConvWithPast(nn.Module):
        """A deepfilternet causal conv block whose leading time padding is replaced by ``past`` frames.

        deepfilternet's ``Conv2dNormAct``/``ConvTranspose2dNormAct`` start with ``ConstantPad2d((0, 0, k-1, 0))``:
        zeros for the ``k-1`` frames before the input. Here those frames come from ``self.past`` (set before and
        read after each call), so a chunk continues exactly where the previous one ended.
        """

        def __init__(self, block: nn.Sequential, name: str):
            super().__init__()
            pad = block[0]
            left, right, top, bottom = pad.padding
            if left or right or bottom or top <= 0:
                raise ValueError(f"{name}: unexpected padding {pad.padding}")
            self.k_past = int(top)
            self.body = nn.Sequential(*list(block)[1:])
            self.name = name
            self.past = None

        def forward(self, x):
            xx = torch.cat([self.past, x], dim=2)
            self.past = xx[:, :, -self.k_past :]
            return self.body(xx)

    class _GruWithState(nn.Module):
        """A deepfilternet GRU block (``SqueezedGRU_S``, ``SqueezedGRU``, ``GroupedGRU``) fed its hidden state."""

        def __init__(self, inner: nn.Module, name: str):
            super().__init__()
            self.inner = inner
            self.name = name
            self.h = None

        def forward(self, x, h=None):
            out, h_new = self.inner(x, self.h)
            self.h = h_new
            return out, h_new

    return _ConvWithPast, _GruWithState


_WRAPPERS: tuple | None = None


def _wrappers():
    global _WRAPPERS
    if _WRAPPERS is None:
        _WRAPPERS = _make_wrappers()
    return _WRAPPERS


def GruWithState(inner, name):  # noqa: N802 (factory keeps torch import lazy)
    """Wrap a deepfilternet GRU block so that its hidden state is explicit (``.h``)."""
    return _wrappers()[1](inner, name)


def ConvWithPast(block, name):  # noqa: N802
    """Wrap a deepfilternet causal conv block so that its past frames are explicit (``.past``)."""
    return _wrappers()[0](block, name)


def _is_padded_conv(m) -> bool:
    torch = _torch()
    return (
        isinstance(m, torch.nn.Sequential)
        and len(m) > 1
        and isinstance(m[0], torch.nn.ConstantPad2d)
        and m[0].padding[2] > 0
    )


def _is_gru_block(m) -> bool:
    from df.modules import GroupedGRU, SqueezedGRU, SqueezedGRU_S

    return isinstance(m, (SqueezedGRU_S, SqueezedGRU, GroupedGRU))


def _wrap_submodule(root, owner: str, convs_too: bool = True):
    """Replace, inside ``root`` (a deep copy), every padded conv and GRU block by its stateful wrapper."""
    convs, grus = [], []
    for name, child in list(root.named_children()):
        full = f"{owner}.{name}"
        if convs_too and _is_padded_conv(child):
            w = ConvWithPast(child, full)
            setattr(root, name, w)
            convs.append(w)
        elif _is_gru_block(child):
            w = GruWithState(child, full)
            setattr(root, name, w)
            grus.append(w)
    return convs, grus


# ----------------------------------------------------------------------------------------------------------
# The step module
# ----------------------------------------------------------------------------------------------------------
def _build_step_model(net, spec):
    torch = _torch()
    nn = torch.nn

    class _StepModel(nn.Module):
        """One hop of DeepFilterNet with every model-side state explicit. See the module docstring.

        ``forward(spec, feat_erb, feat_spec, *states) -> (spec_out, lsnr, *new_states)`` with
        ``spec [1,1,1,F,2]`` (noisy STFT frame of hop n), ``feat_erb [1,1,1,nb_erb]``,
        ``feat_spec [1,1,1,nb_df,2]`` (its normalised features), ``spec_out [1,1,1,F,2]`` (enhanced frame
        ``n - delay_frames``), ``lsnr [1,1,1]`` (encoder time ``n - conv_lookahead``); ``states`` in the order
        of :attr:`state_names`.
        """

        def __init__(self):
            super().__init__()
            net_c = copy.deepcopy(net).eval()
            self.enc, self.erb_dec, self.df_dec = net_c.enc, net_c.erb_dec, net_c.df_dec
            self.mask = net_c.mask
            self.df_out_transform = net_c.df_out_transform
            self.family = spec.family
            self.L = int(spec.conv_lookahead)
            self.dfl = int(spec.df_lookahead)
            self.order = int(spec.df_order)
            self.nb_df = int(spec.nb_df)
            self.freq_bins = int(spec.fft_size // 2 + 1)
            self.convs, self.grus = {}, {}
            for owner in ("enc", "erb_dec", "df_dec"):
                c, g = _wrap_submodule(getattr(self, owner), owner)
                self.convs.update({w.name: w for w in c})
                self.grus.update({w.name: w for w in g})
            self.descs = self._describe()
            self.state_names = [d.name for d in self.descs]

        # -- state description ------------------------------------------------------------------------
        @torch.no_grad()
        def _describe(self) -> list[StateDesc]:
            """Derive every state's shape by one probe hop with zero-length pasts (no hard-coded sizes)."""
            shapes: dict[str, tuple] = {}
            hooks = []
            for name, w in self.convs.items():
                def pre(mod, args, name=name):
                    x = args[0]
                    shapes[name] = (x.shape[0], x.shape[1], mod.k_past, x.shape[3])
                    mod.past = x.new_zeros(shapes[name])
                hooks.append(w.register_forward_pre_hook(pre))
            for w in self.grus.values():
                w.h = None
            fe = torch.zeros(1, 1, 1, spec.nb_erb)
            fs = torch.zeros(1, 2, 1, spec.nb_df)
            e0, e1, e2, e3, emb, c0, _ = self.enc(fe, fs)
            self.erb_dec(emb, e3, e2, e1, e0)
            self.df_dec(emb, c0)
            for h in hooks:
                h.remove()
            descs = []
            for name, w in self.grus.items():
                owner = name.split(".")[0]
                descs.append(StateDesc(_state_name(name), tuple(w.h.shape), _GRU_GROUP[owner], owner, "zeros"))
            for name in self.convs:
                descs.append(StateDesc(_state_name(name), tuple(int(s) for s in shapes[name]), "conv",
                                       name.split(".")[0], "zeros"))
            f, o = self.freq_bins, self.order
            if self.family == "deepfilternet3":
                descs.append(StateDesc("spec_buf", (1, 1, self.L + o - self.dfl, f, 2), "df_buffer", "step",
                                       "zeros"))
            else:
                descs.append(StateDesc("spec_buf", (1, 1, self.L + 1, f, 2), "df_buffer", "step", "zeros"))
                descs.append(StateDesc("masked_buf", (1, 1, o, f, 2), "df_buffer", "step", "zeros"))
                descs.append(StateDesc("coef_buf", (1, o, self.dfl + 1, self.nb_df, 2), "df_buffer", "step",
                                       "zeros"))
            descs.append(StateDesc("warmup", (1,), "lookahead", "step",
                                   f"zeros; counts hops up to conv_lookahead={self.L}"))
            return descs

        def _set(self, states: dict) -> None:
            for name, w in self.grus.items():
                w.h = states[_state_name(name)]
            for name, w in self.convs.items():
                w.past = states[_state_name(name)]

        def _get(self) -> dict:
            out = {_state_name(n): w.h for n, w in self.grus.items()}
            out.update({_state_name(n): w.past for n, w in self.convs.items()})
            return out

        # -- the hop ----------------------------------------------------------------------------------
        def forward(self, spec_in, feat_erb, feat_spec, *states):
            st = dict(zip(self.state_names, states))
            self._set(st)
            fs = feat_spec.squeeze(1).permute(0, 3, 1, 2)  # [1, 2, 1, nb_df] as DfNet.forward does
            e0, e1, e2, e3, emb, c0, lsnr = self.enc(feat_erb, fs)
            m = self.erb_dec(emb, e3, e2, e1, e0)
            dec = self.df_dec(emb, c0)
            coefs = dec[0] if isinstance(dec, tuple) else dec
            coefs = self.df_out_transform(coefs)  # [1, O, 1, nb_df, 2]
            new = self._get()
            warm = st["warmup"]
            valid = (warm >= self.L).to(spec_in.dtype)  # the first L feature frames never reach the encoder
            gated = {k: valid * v + (1 - valid) * st[k] for k, v in new.items()}
            gated["warmup"] = torch.clamp(warm + 1, max=float(self.L))
            spec_buf = torch.cat([st["spec_buf"][:, :, 1:], spec_in], dim=2)
            gated["spec_buf"] = spec_buf
            r = spec_buf.shape[2]
            spec_t = spec_buf[:, :, r - 1 - self.L : r - self.L]  # raw frame at encoder time t
            spec_m = self.mask(spec_t, m)
            o, dfl = self.order, self.dfl
            if self.family == "deepfilternet3":
                lo = r - 1 - self.L - (o - 1 - dfl)
                window = spec_buf[:, :, lo : lo + o]  # frames t-(O-1-dfl) .. t+dfl
                c = coefs[:, :, 0]  # [1, O, nb_df, 2]
                base = spec_m
            else:
                masked = torch.cat([st["masked_buf"][:, :, 1:], spec_m], dim=2)
                cbuf = torch.cat([st["coef_buf"][:, :, 1:], coefs], dim=2)
                gated["masked_buf"] = valid * masked + (1 - valid) * st["masked_buf"]
                gated["coef_buf"] = valid * cbuf + (1 - valid) * st["coef_buf"]
                window = gated["masked_buf"]
                c = gated["coef_buf"][:, :, 0]  # coefficients of output frame t - dfl
                base = window[:, :, o - 1 - dfl : o - dfl]
            out = _deep_filter(window[:, 0, :, : self.nb_df], c, base, self.nb_df)
            return (out, lsnr.reshape(1, 1, 1), *[gated[n] for n in self.state_names])

    return _StepModel().eval()  # eval all the way down: BatchNorm must use running stats


def _deep_filter(window, coefs, base, nb_df):
    """``sum_o window[o] * coefs[o]`` (complex, real arithmetic for ONNX) into the low ``nb_df`` bins of ``base``.

    Same arithmetic as deepfilternet's ``multiframe.df`` (no conjugate); window ``[1, O, nb_df, 2]``.
    """
    torch = _torch()
    wr, wi = window[..., 0], window[..., 1]
    cr, ci = coefs[..., 0], coefs[..., 1]
    re = (wr * cr - wi * ci).sum(dim=1)
    im = (wr * ci + wi * cr).sum(dim=1)
    low = torch.stack([re, im], dim=-1).reshape(1, 1, 1, nb_df, 2)
    return torch.cat([low, base[:, :, :, nb_df:]], dim=3)


def _state_name(module_name: str) -> str:
    """``enc.emb_gru`` -> ``enc_emb_gru`` (ONNX-friendly input names)."""
    return module_name.replace(".", "_")


def StepModel(net, spec):  # noqa: N802 (factory keeps torch lazy)
    """Build the one-hop ``torch.nn.Module`` for ``net`` (a DfNet) with model spec ``spec``."""
    return _build_step_model(net, spec)


def describe_states(step_model, cfg: "dsp.DspConfig") -> list[StateDesc]:
    """All streaming state: the model-side states of ``step_model`` plus the host-side DSP states."""
    f, h = cfg.fft_size, cfg.hop_size
    host = [
        StateDesc("analysis_mem", (f - h,), "stft", "dsp", "zeros"),
        StateDesc("synthesis_mem", (f - h,), "stft", "dsp", "zeros"),
        StateDesc("erb_norm", (cfg.nb_erb,), "norm", "dsp", "linspace(-60, -90, nb_erb)"),
        StateDesc("unit_norm", (cfg.nb_df,), "norm", "dsp", "linspace(0.001, 0.0001, nb_df)"),
    ]
    return list(step_model.descs) + host


# ----------------------------------------------------------------------------------------------------------
# The stream: DSP + step + delay handling, with one state object
# ----------------------------------------------------------------------------------------------------------
@dataclass
class StreamState:
    """Everything one stream remembers: model-side tensors by name, the DSP state, and the hop counters."""

    model: dict
    dsp: "dsp.DspState"
    hops_in: int = 0
    hops_out: int = 0

    def copy(self) -> "StreamState":
        return StreamState({k: v.clone() for k, v in self.model.items()}, self.dsp.copy(), self.hops_in,
                           self.hops_out)


@dataclass
class Stream:
    """A streaming DeepFilterNet in PyTorch: feed hops, get hops; ``reset()`` returns to the initial state.

    ``carry`` lists the state groups kept across chunk boundaries (:data:`STATE_GROUPS`); the default keeps all,
    which is exact. Dropping groups reproduces what a naive chunked host does (Notebook 01): at each chunk
    boundary (every ``chunk`` hops) the dropped groups are reset, and without ``lookahead`` the chunk is flushed
    with zero future frames, exactly as running the offline model on each chunk alone would.

    Notebook: 01_why_stateless_diverges
    """

    loaded: Any
    carry: Iterable[str] = STATE_GROUPS
    probes: bool = False
    step_model: Any = field(init=False, repr=False)

    def __post_init__(self):
        bad = set(self.carry) - set(STATE_GROUPS)
        if bad:
            raise StateError(f"unknown state group(s) {sorted(bad)}; choose from {list(STATE_GROUPS)}")
        self.carry = frozenset(self.carry)
        self.spec = self.loaded.spec
        self.cfg = dsp.DspConfig.from_spec(self.spec)
        self.step_model = StepModel(self.loaded.net, self.spec)
        self.descs = describe_states(self.step_model, self.cfg)
        self.delay_frames = delay_frames(self.spec)
        self.delay_samples = delay_samples(self.spec)
        self.reset()

    # -- state --------------------------------------------------------------------------------------
    def initial_model_state(self) -> dict:
        torch = _torch()
        return {d.name: torch.zeros(d.shape) for d in self.step_model.descs}

    def reset(self) -> None:
        """Back to the exact initial state (same input twice gives identical output)."""
        self.state = StreamState(self.initial_model_state(), dsp.DspState.initial(self.cfg))
        self.lsnr: list[float] = []
        self.trace: dict[str, list] = {}

    def _reset_groups(self, groups: Iterable[str]) -> None:
        init = self.initial_model_state()
        groups = set(groups)
        for d in self.step_model.descs:
            if d.group in groups:
                self.state.model[d.name] = init[d.name]
        fresh = dsp.DspState.initial(self.cfg)
        if "stft" in groups:
            self.state.dsp.analysis_mem[:] = fresh.analysis_mem
            self.state.dsp.synthesis_mem[:] = fresh.synthesis_mem
        if "norm" in groups:
            self.state.dsp.erb_norm[:] = fresh.erb_norm
            self.state.dsp.unit_norm[:] = fresh.unit_norm

    # -- one hop ------------------------------------------------------------------------------------
    def _model_hop(self, spec_c: np.ndarray | None, feat_erb: np.ndarray | None, feat_spec: np.ndarray | None):
        torch = _torch()
        f = self.cfg.freq_bins
        if spec_c is None:  # flush: zero spectrum and zero features, as offline padding feeds the model
            x = torch.zeros(1, 1, 1, f, 2)
            fe = torch.zeros(1, 1, 1, self.cfg.nb_erb)
            fs = torch.zeros(1, 1, 1, self.cfg.nb_df, 2)
        else:
            x = torch.from_numpy(np.stack([spec_c.real, spec_c.imag], -1).astype(np.float32)).view(1, 1, 1, f, 2)
            fe = torch.from_numpy(feat_erb.astype(np.float32)).view(1, 1, 1, -1)
            fs = torch.from_numpy(np.stack([feat_spec.real, feat_spec.imag], -1).astype(np.float32)).view(
                1, 1, 1, -1, 2)
        names = self.step_model.state_names
        with torch.no_grad():
            out = self.step_model(x, fe, fs, *[self.state.model[n] for n in names])
        self.state.model = dict(zip(names, out[2:]))
        self.state.hops_in += 1
        if self.state.hops_in > self.spec.conv_lookahead:
            self.lsnr.append(float(out[1].reshape(-1)[0]))
            if self.probes:
                for n in names:
                    if n.endswith("gru"):
                        self.trace.setdefault(n, []).append(self.state.model[n][-1, 0].numpy().copy())
        if self.state.hops_in <= self.delay_frames:
            return None  # warm-up: no output frame yet
        o = out[0].reshape(f, 2).numpy()
        return (o[:, 0] + 1j * o[:, 1]).astype(np.complex64)

    def process_hop(self, hop: np.ndarray) -> np.ndarray:
        """One hop in (``hop_size`` samples), one hop out (zeros during the first ``delay_frames`` hops).

        The hop is validated like any audio (:func:`dfnb.audio.check_audio`): a NaN/Inf sample raises
        :class:`~dfnb.errors.AudioError` naming its time instead of poisoning every later hop's state.
        """
        x = np.asarray(hop)
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            i = int(np.argmin(np.isfinite(x.reshape(-1))))
            k = self.state.hops_in * self.cfg.hop_size + i
            raise AudioError(f"stream hop {self.state.hops_in}: stream sample {k} (at {k / self.cfg.sr:.3f} s) is "
                             f"{'NaN' if np.isnan(x.reshape(-1)[i]) else 'Inf'}; the hop did not reach the model. "
                             "Replace bad samples (e.g. np.nan_to_num) before passing them in.")
        x = audio_mod.check_audio(x, self.cfg.sr, name=f"stream hop {self.state.hops_in}")
        spec_c = dsp.analysis(self.cfg, self.state.dsp, x)
        fe, fs = dsp.features(self.cfg, self.state.dsp, spec_c)
        y = self._model_hop(spec_c, fe, fs)
        if y is None:
            return np.zeros(self.cfg.hop_size, dtype=np.float32)
        self.state.hops_out += 1
        return dsp.synthesis(self.cfg, self.state.dsp, y)

    def flush(self) -> np.ndarray:
        """Drain the lookahead with zero frames (what offline padding does at the end of a file)."""
        outs = []
        for _ in range(self.delay_frames):
            y = self._model_hop(None, None, None)
            if y is not None:
                outs.append(dsp.synthesis(self.cfg, self.state.dsp, y))
        return np.concatenate(outs) if outs else np.zeros(0, dtype=np.float32)

    def process(self, samples: np.ndarray, chunk: int = 1) -> np.ndarray:
        """Process whole hops in chunks of ``chunk`` hops, applying ``carry`` at chunk boundaries."""
        h = self.cfg.hop_size
        n = len(samples) // h
        out = []
        for start in range(0, n, chunk):
            if start > 0:
                self._chunk_boundary()
            for i in range(start, min(n, start + chunk)):
                out.append(self.process_hop(samples[i * h : (i + 1) * h]))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def _chunk_boundary(self) -> None:
        if self.carry >= set(STATE_GROUPS):
            return
        if "lookahead" not in self.carry:
            # the chunk ends without its future frames: emit its last frames now from zero padding.
            keep = {k: v.clone() for k, v in self.state.model.items() if k in ("spec_buf",)}
            tail = self.flush()
            self._pending_tail = tail
            if "df_buffer" in self.carry:
                self.state.model.update(keep)  # a host keeps the real past spectra, not the padding
            self.state.model["warmup"] = self.state.model["warmup"] * 0
            self.state.hops_in = 0
        self._reset_groups(set(STATE_GROUPS) - self.carry)


def stream_enhance(loaded: Any, audio: np.ndarray, *, chunk: int = 1, carry: Iterable[str] = STATE_GROUPS,
                   probes: bool = False) -> tuple[np.ndarray, Stream]:
    """Enhance 48 kHz ``audio`` with the PyTorch streaming step; output aligned with the input, same length.

    The input is padded like the offline reference (``fft_size`` zeros), streamed hop by hop (in chunks of
    ``chunk`` hops, carrying the groups in ``carry``), flushed, and the constant streaming delay removed.

    Notebook: 01_why_stateless_diverges
    """
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise DfnbError(f"chunk must be a positive number of hops, got {chunk!r}.")
    x = audio_mod.check_audio(audio, loaded.spec.sr)  # same gate as enhance_offline: AudioError, never a crash
    s = Stream(loaded, carry=carry, probes=probes)
    h, f = s.cfg.hop_size, s.cfg.fft_size
    padded = np.concatenate([x, np.zeros(f, dtype=np.float32)])
    n = len(padded) // h
    padded = padded[: n * h]
    s._pending_tail = None
    h_out = _process_collect(s, padded, chunk)
    y = np.concatenate([h_out, s.flush()])
    d = s.delay_samples
    return y[d : d + len(x)], s


def _process_collect(s: Stream, samples: np.ndarray, chunk: int) -> np.ndarray:
    """Like :meth:`Stream.process`, but splices in the outputs a lookahead-less chunk boundary flushes."""
    h = s.cfg.hop_size
    n = len(samples) // h
    out: list[np.ndarray] = []
    produced = 0  # hops of real output (not warm-up zeros)
    for start in range(0, n, chunk):
        if start > 0:
            s._pending_tail = None
            s._chunk_boundary()
            if s._pending_tail is not None and len(s._pending_tail):
                out.append(s._pending_tail)
                produced += len(s._pending_tail) // h
        for i in range(start, min(n, start + chunk)):
            before = s.state.hops_out
            y = s.process_hop(samples[i * h : (i + 1) * h])
            if s.state.hops_out > before:
                out.append(y)
                produced += 1
    # keep the timing of a realtime stream: output lags by delay_frames hops (leading zeros)
    lead = np.zeros(s.delay_frames * h, dtype=np.float32)
    return np.concatenate([lead] + out) if out else lead
