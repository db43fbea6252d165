"""Exact hop-by-hop streaming of a DeepFilterNet model in PyTorch, with ONE explicit state object.

The offline model (``DfNet.forward`` over a whole file) hides eight groups of memory (:mod:`dfnb.layout` lists
them). A streaming runtime must carry all of them from one 10 ms hop to the next, or its output diverges from
offline. :class:`Stream` runs :class:`dfnb.step.StepModel` (one hop of the model with every model-side state
explicit) between :mod:`dfnb.dsp`'s analysis and synthesis, and keeps everything one stream remembers in one
:class:`StreamState`. It is a :class:`dfnb.runtime.Runtime`, run by :func:`dfnb.runtime.enhance` like every host.

Timing and delay: see :mod:`dfnb.layout`. The end of a file is reproduced exactly by :meth:`Stream.flush`:
``delay_frames`` hops of zero features and zero spectrum, which is what offline padding feeds the model.
``carry=`` drops state groups at call boundaries, which is how Notebook 01 measures what each one is worth.

Notebook: 01_why_stateless_diverges
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import dsp
from .args import check_names
from .errors import StateError
from .layout import STATE_GROUPS, Layout
from .runtime import Runtime
from .step import StepModel

__all__ = ["StreamState", "Stream"]


# ----------------------------------------------------------------------------------------------------------
# The stream: DSP + step + delay handling, with one state object
# ----------------------------------------------------------------------------------------------------------
@dataclass
class StreamState:
    """Everything one stream remembers: model-side tensors by name, the DSP state, and the hop counters."""

    model: dict
    dsp: dsp.DspState
    hops_in: int = 0
    hops_out: int = 0

    def copy(self) -> StreamState:
        return StreamState({k: v.clone() for k, v in self.model.items()}, self.dsp.copy(), self.hops_in,
                           self.hops_out)


class Stream(Runtime):
    """A streaming DeepFilterNet in PyTorch (a :class:`dfnb.runtime.Runtime`): feed hops, get hops.

    With the default ``carry`` (every group) it is exact: :func:`dfnb.runtime.enhance` over a ``Stream`` equals
    :func:`dfnb.offline.enhance_offline` to float32 round-off at any chunk size. Dropping groups reproduces what
    a naive chunked host does (Notebook 01): at the start of each call the dropped groups are reset, and
    without ``lookahead`` each call is flushed at its end with zero future frames and emits all its frames at
    once, exactly as running the offline model on each call alone would.

    Parameters
    ----------
    loaded : dfnb.models.LoadedModel
        The model (:func:`dfnb.models.load_model`).
    carry : iterable of str
        State groups kept from one ``process()`` call to the next (:data:`dfnb.layout.STATE_GROUPS`); the
        default keeps all of them.
    probes : bool or list of str
        ``True`` records lsnr per frame in ``trace``; a list of state names (e.g. ``["enc_emb_gru"]``) records
        those states too.

    Raises
    ------
    StateError
        An unknown group in ``carry``.

    Examples
    --------
    >>> from dfnb.runtime import enhance  # doctest: +SKIP
    >>> naive = enhance(Stream(load_model("DeepFilterNet3"), carry=()), noisy, chunk=7)  # doctest: +SKIP

    Notebook: 01_why_stateless_diverges
    """

    def __init__(self, loaded: Any, carry: Iterable[str] = STATE_GROUPS, probes=False):
        from .offline import check_loaded

        check_loaded(loaded, "Stream")
        carry = frozenset(check_names(carry, "carry", error=StateError))
        bad = carry - set(STATE_GROUPS)
        if bad:
            raise StateError(f"unknown state group(s) {sorted(bad)}; choose from {list(STATE_GROUPS)}")
        self.loaded, self.carry = loaded, carry
        self.spec = loaded.spec
        self.cfg = dsp.DspConfig.from_spec(self.spec)
        self.step_model = StepModel(loaded.net, self.spec)
        self.layout = Layout.of(self.spec)
        self.descs = self.layout.states
        self.exact = carry >= set(STATE_GROUPS)
        self.delay_frames = self.layout.delay_frames
        self.emit_per_call = "lookahead" not in carry
        lag = 0 if self.emit_per_call else self.delay_frames
        self.delay_samples = lag * self.cfg.hop_size + self.cfg.fft_size - self.cfg.hop_size
        self.label = "PyTorch stream" + ("" if self.exact else f" (carrying {sorted(carry) or 'nothing'})")
        super().__init__(probes)

    # -- state --------------------------------------------------------------------------------------
    def initial_model_state(self) -> dict:
        return {d.name: torch.zeros(d.shape) for d in self.step_model.descs}

    def _reset(self) -> None:
        self.state = StreamState(self.initial_model_state(), dsp.DspState.initial(self.cfg))
        self._calls = 0

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
            self._record(float(out[1].reshape(-1)[0]), lambda n: self.state.model[n].numpy())
        if self.state.hops_in <= self.delay_frames:
            return None  # warm-up: no output frame yet
        o = out[0].reshape(f, 2).numpy()
        return (o[:, 0] + 1j * o[:, 1]).astype(np.complex64)

    def _hop(self, x: np.ndarray) -> np.ndarray | None:
        """One (gated) hop in; its enhanced hop out, or None during the warm-up."""
        spec_c = dsp.analysis(self.cfg, self.state.dsp, x)
        fe, fs = dsp.features(self.cfg, self.state.dsp, spec_c)
        y = self._model_hop(spec_c, fe, fs)
        if y is None:
            return None
        self.state.hops_out += 1
        return dsp.synthesis(self.cfg, self.state.dsp, y)

    def _tail(self) -> list:
        """The lookahead's frames, from zero frames (what offline padding feeds at the end of a file)."""
        outs = []
        for _ in range(self.delay_frames):
            y = self._model_hop(None, None, None)
            if y is not None:
                outs.append(dsp.synthesis(self.cfg, self.state.dsp, y))
        return outs

    # -- the runtime contract ------------------------------------------------------------------------
    def _hops(self, x: np.ndarray) -> np.ndarray:
        h = self.cfg.hop_size
        if self._calls and not self.exact:
            self._reset_groups(set(STATE_GROUPS) - self.carry)  # a naive host forgets these between calls
        self._calls += 1
        out = []
        for i in range(0, len(x), h):
            y = self._hop(x[i : i + h])
            if y is not None:
                out.append(y)
            elif not self.emit_per_call:
                out.append(np.zeros(h, np.float32))  # realtime timing: the first delay_frames hops are silent
        if self.emit_per_call:  # the call ends without its future frames: emit its last frames now
            keep = self.state.model["spec_buf"].clone()
            out += self._tail()
            if "df_buffer" in self.carry:
                self.state.model["spec_buf"] = keep  # a host keeps the real past spectra, not the padding
            self.state.model["warmup"] = self.state.model["warmup"] * 0
            self.state.hops_in = 0
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _drain(self) -> np.ndarray:
        if self.emit_per_call:
            return np.zeros(0, np.float32)  # every call already emitted its tail
        outs = self._tail()
        return np.concatenate(outs) if outs else np.zeros(0, np.float32)
