"""One hop of DeepFilterNet in PyTorch, with every model-side state explicit (needs torch).

:class:`StepModel` is a ``torch.nn.Module`` that advances all model-side state by one 10 ms hop. It reuses
deepfilternet's own ``Encoder``/``ErbDecoder``/``DfDecoder`` forward code unchanged: each causal conv's zero
padding is replaced by a buffer of past frames (:class:`ConvWithPast`) and each GRU receives its hidden state
(:class:`GruWithState`). The same module is exported to ONNX (variant ``step``), and its sub-models for variant
``full`` (:mod:`dfnb.export`). Which states exist, their shapes and order come from
:class:`dfnb.layout.Layout` (generated from the config); :class:`StepModel` checks the shapes PyTorch produces
against it, so the PyTorch step, the exports and the torch-free hosts share one description of the state.
:class:`dfnb.streaming.Stream` runs it hop by hop with the DSP around it.

Only :mod:`dfnb.streaming`, :mod:`dfnb.export` and :mod:`dfnb.offline` (lazily) import this module; nothing on
the host side does.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .errors import ModelError
from .layout import Layout

__all__ = ["ConvWithPast", "GruWithState", "StepModel", "is_gru_block", "state_name", "wrap_stateful"]


class ConvWithPast(nn.Module):
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


class GruWithState(nn.Module):
    """A deepfilternet GRU block (``SqueezedGRU_S``, ``SqueezedGRU``, ``GroupedGRU``) fed its hidden state ``.h``."""

    def __init__(self, inner: nn.Module, name: str):
        super().__init__()
        self.inner = inner
        self.name = name
        self.h = None

    def forward(self, x, h=None):
        out, h_new = self.inner(x, self.h)
        self.h = h_new
        return out, h_new


def is_gru_block(m: Any) -> bool:
    """Whether ``m`` is one of deepfilternet's GRU blocks (``SqueezedGRU_S``, ``SqueezedGRU``, ``GroupedGRU``)."""
    from df.modules import GroupedGRU, SqueezedGRU, SqueezedGRU_S

    return isinstance(m, (SqueezedGRU_S, SqueezedGRU, GroupedGRU))


def _is_padded_conv(m: Any) -> bool:
    return (isinstance(m, nn.Sequential) and len(m) > 1 and isinstance(m[0], nn.ConstantPad2d)
            and m[0].padding[2] > 0)


def wrap_stateful(root: nn.Module, owner: str) -> tuple[list[ConvWithPast], list[GruWithState]]:
    """Replace, inside ``root`` (a copy you own), every padded conv and GRU block by its stateful wrapper."""
    convs, grus = [], []
    for name, child in list(root.named_children()):
        full = f"{owner}.{name}"
        if _is_padded_conv(child):
            w = ConvWithPast(child, full)
            convs.append(w)
        elif is_gru_block(child):
            w = GruWithState(child, full)
            grus.append(w)
        else:
            continue
        setattr(root, name, w)
    return convs, grus


def state_name(module_name: str) -> str:
    """``enc.emb_gru`` -> ``enc_emb_gru`` (ONNX-friendly input names)."""
    return module_name.replace(".", "_")


class StepModel(nn.Module):
    """One hop of DeepFilterNet with every model-side state explicit (see the module docstring).

    ``forward(spec, feat_erb, feat_spec, *states) -> (spec_out, lsnr, *new_states)`` with
    ``spec [1,1,1,F,2]`` (noisy STFT frame of hop n), ``feat_erb [1,1,1,nb_erb]``,
    ``feat_spec [1,1,1,nb_df,2]`` (its normalised features), ``spec_out [1,1,1,F,2]`` (enhanced frame
    ``n - delay_frames``), ``lsnr [1,1,1]`` (encoder time ``n - conv_lookahead``); ``states`` in the order
    of :attr:`state_names`. Built from a deep copy of ``net`` (a deepfilternet ``DfNet``), in eval mode all
    the way down (BatchNorm must use its running statistics).

    Parameters
    ----------
    net : torch.nn.Module
        deepfilternet's ``DfNet`` (``dfnb.models.load_model(...).net``); it is copied, not changed.
    spec : dfnb.models.ModelSpec
        The model's spec (``load_model(...).spec``).

    Examples
    --------
    >>> m = load_model("DeepFilterNet3")  # doctest: +SKIP
    >>> step = StepModel(m.net, m.spec)  # doctest: +SKIP
    >>> step.state_names[:2]  # doctest: +SKIP
    ['enc_emb_gru', 'erb_dec_emb_gru']
    """

    def __init__(self, net: Any, spec: Any):
        super().__init__()
        net_c = copy.deepcopy(net).eval()
        self.enc, self.erb_dec, self.df_dec = net_c.enc, net_c.erb_dec, net_c.df_dec
        self.mask = net_c.mask
        self.df_out_transform = net_c.df_out_transform
        self.spec = spec
        self.family = spec.family
        self.L = int(spec.conv_lookahead)
        self.dfl = int(spec.df_lookahead)
        self.order = int(spec.df_order)
        self.nb_df = int(spec.nb_df)
        self.freq_bins = int(spec.fft_size // 2 + 1)
        self.convs, self.grus = {}, {}
        for owner in ("enc", "erb_dec", "df_dec"):
            c, g = wrap_stateful(getattr(self, owner), owner)
            self.convs.update({w.name: w for w in c})
            self.grus.update({w.name: w for w in g})
        self.descs = self._describe()
        self.state_names = [d.name for d in self.descs]
        self.eval()

    # -- state description ----------------------------------------------------------------------------
    @torch.no_grad()
    def _describe(self) -> list:
        """The layout's model-side states, checked against one probe hop with zero-length pasts: the shapes
        PyTorch produces must be the ones :class:`dfnb.layout.Layout` derived from the config."""
        spec = self.spec
        shapes: dict[str, tuple] = {}
        hooks = []
        for name, w in self.convs.items():
            def pre(mod, args, name=name):
                x = args[0]
                shapes[state_name(name)] = (x.shape[0], x.shape[1], mod.k_past, x.shape[3])
                mod.past = x.new_zeros(shapes[state_name(name)])
            hooks.append(w.register_forward_pre_hook(pre))
        for w in self.grus.values():
            w.h = None
        e0, e1, e2, e3, emb, c0, _ = self.enc(torch.zeros(1, 1, 1, spec.nb_erb), torch.zeros(1, 2, 1, spec.nb_df))
        self.erb_dec(emb, e3, e2, e1, e0)
        self.df_dec(emb, c0)
        for h in hooks:
            h.remove()
        shapes.update({state_name(n): tuple(w.h.shape) for n, w in self.grus.items()})
        descs = list(Layout.of(spec).model_states)
        probed = [d.name for d in descs if d.owner != "step"]
        if sorted(probed) != sorted(shapes) or any(tuple(shapes[d.name]) != d.shape for d in descs
                                                    if d.name in shapes):
            raise ModelError(f"the state layout derived from the config ({[(d.name, d.shape) for d in descs]}) "
                             f"does not match the model PyTorch built ({shapes}); this model's architecture "
                             "is not one dfnb knows. Please report it with its config.ini.")
        return descs

    def _set(self, states: dict) -> None:
        for name, w in self.grus.items():
            w.h = states[state_name(name)]
        for name, w in self.convs.items():
            w.past = states[state_name(name)]

    def _get(self) -> dict:
        out = {state_name(n): w.h for n, w in self.grus.items()}
        out.update({state_name(n): w.past for n, w in self.convs.items()})
        return out

    # -- the hop --------------------------------------------------------------------------------------
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


def _deep_filter(window, coefs, base, nb_df):
    """``sum_o window[o] * coefs[o]`` (complex, real arithmetic for ONNX) into the low ``nb_df`` bins of ``base``.

    Same arithmetic as deepfilternet's ``multiframe.df`` (no conjugate); window ``[1, O, nb_df, 2]``.
    """
    wr, wi = window[..., 0], window[..., 1]
    cr, ci = coefs[..., 0], coefs[..., 1]
    re = (wr * cr - wi * ci).sum(dim=1)
    im = (wr * ci + wi * cr).sum(dim=1)
    low = torch.stack([re, im], dim=-1).reshape(1, 1, 1, nb_df, 2)
    return torch.cat([low, base[:, :, :, nb_df:]], dim=3)
