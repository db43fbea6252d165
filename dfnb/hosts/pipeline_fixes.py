"""deepfilter-rt's feedings replayed on an exact export, with every cause of difference switchable. No torch.

:class:`dfnb.hosts.pipeline.PipelineHost` runs a folder's own graphs as the crate does. To say *why* that output
differs from offline PyTorch, the same loop runs here on dfnb's ``full`` export of the same weights (three graphs
whose every GRU and conv state is an explicit input/output, any number of frames per call), where each
deviation from exact streaming is one switch. With no cause fixed, the result equals the folder's own run (the
check that the conversion is right); with every cause fixed, it is the exact stream.

=============  =============================================================================================
cause          what the feeding does (fix)
=============  =============================================================================================
``start``      the first ``L`` feature frames reach the encoder and the states start ``L`` hops early;
               offline's ``pad_feat`` drops them (fix: skip them)
``gating``     mask and deep filter are gated on lsnr (fix: always apply them)
``conv``       sliced feedings run the decoders on one frame with zero conv states: ``df_convp``'s past
               ``c0`` frames (and any decoder conv's past frames) are lost (fix: carry them)
``context``    the convs see only the T-frame window, zero-prefilled: zero *features* before the stream
               start, not zero activations, and no context beyond T; in unsliced feedings the GRUs also
               run over the prefill frames (fix: carry the convs' past frames, skip the prefill)
``gru``        a GRU state the folder does not carry restarts from zero every call (fix: carry it)
``rerun``      ``h0`` feeding: the GRUs re-run the whole window from the state left after the previous
               window, so each frame passes T times (fix: carry the state after the window's first frame)
``restart``    ``window`` feeding: every GRU restarts from zero each call (fix: as ``rerun``)
``take``       ``h0`` feeding: output frame 0 of the window is used (fix: the newest)
``delay``      ``window`` feeding: the lookahead buffer writes ``f(n-1)`` (``f(L)`` twice) (fix: ``f(n)``)
``dfstage``    DeepFilterNet2 only: the deep filter runs on the noisy spectra as for DeepFilterNet3 (fix: on
               the masked spectra, ``df_lookahead`` frames later, which adds that many hops of delay)
=============  =============================================================================================

Unsliced feedings run each graph twice per hop: on the window's first frame, then on the rest from the state
that left, so the state after the first frame is at hand for the next hop; with ``rerun``/``restart`` and
``context`` fixed that chain is the exact stream. ``frame`` is dfnb's own host fed one hop per call (T = 1,
lookahead skipped, no gating): its causes are the states the folder does not carry.

Notebook: 07_third_party_folders
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DfnbError
from ..folder import open_session
from .pipeline import PipelineHost, coefs_of, feature_tensors

__all__ = ["CAUSES", "FIXES", "causes_for", "describe", "FixableGraphs", "fixable_host", "open_exact"]

CAUSES = {
    "start": "the first {L} feature frames reach the encoder and every state starts {L} hops early (offline drops "
             "them)",
    "gating": "mask and deep filter are gated on lsnr (zero mask below -15 dB, nothing above 35 dB)",
    "conv": "the decoders run on one frame with zero conv states: their past frames (df_convp's {kdf} past c0 "
            "frames) are not carried",
    "context": "the convs see only the {T}-frame zero-prefilled window (zero features, not zero activations, before "
               "the stream start; no context beyond {T} frames)",
    "gru": "GRU state(s) {missing} are not carried: they restart from zero every call",
    "rerun": "the GRUs re-run the whole {T}-frame window every call from the state left after the previous "
             "window: each frame passes the GRUs {T} times",
    "restart": "every GRU restarts from zero every call (warmed up only by the {T}-frame window)",
    "take": "the host takes output frame 0 of the window (it assumes a sliced graph) instead of the newest",
    "delay": "the lookahead buffer writes f(n-1) (and f(L) twice) into the window instead of f(n)",
    "dfstage": "the deep filter runs on the noisy spectra aligned as for DeepFilterNet3; DeepFilterNet2 filters the "
               "masked spectra, df_lookahead frames later",
}
FIXES = {
    "start": "skip the first {L} feature frames before the encoder (offline's pad_feat)",
    "gating": "apply mask and deep filter on every hop",
    "conv": "carry the decoders' conv states (df_convp's {kdf} past c0 frames) as graph inputs/outputs",
    "context": "carry the convs' past frames instead of re-running a zero-prefilled window",
    "gru": "carry {missing} between calls",
    "rerun": "slice the newest frame before the GRUs (carry the state after the window's first frame)",
    "restart": "carry the GRU states between calls (one frame through each GRU per hop)",
    "take": "take the newest output frame of the window",
    "delay": "write the current frame f(n) into the window",
    "dfstage": "filter the masked spectra with DeepFilterNet2's df_lookahead delay",
}
_GRU_IN = {"enc": "h0", "erb_dec": "erb_h0", "df_dec": "df_h0"}
_GROUP = {"h0": "gru_enc", "erb_h0": "gru_erb", "df_h0": "gru_df"}


def causes_for(feed: str, carries: tuple[str, ...], config: Any, window: int) -> list[str]:
    """The causes a feeding can have for a folder carrying ``carries`` (state groups), in display order."""
    L = max(config.conv_lookahead, config.df_lookahead)
    out = ["start"] if L and feed in ("step", "h0") else []
    missing = [g for g in ("gru_enc", "gru_erb", "gru_df") if g not in carries]
    if feed == "frame":
        out += ["context"] * ("conv" not in carries) + ["conv"] * ("conv" not in carries)
        return out + ["gru"] * bool(missing)
    out += {"step": ["conv", "context"], "h0": ["take", "rerun", "context"],
            "window": ["delay", "restart", "context"]}[feed]
    if feed == "h0" and (set(missing) & {"gru_erb", "gru_df"}):
        out.append("gru")
    return out + ["dfstage"] * (config.family == "deepfilternet2") + ["gating"]


def describe(cause: str, table: dict[str, str], *, config: Any, window: int, missing: list[str]) -> str:
    """A cause's (or fix's) text with the model's numbers filled in."""
    return table[cause].format(L=max(config.conv_lookahead, config.df_lookahead), T=window,
                               kdf=config.df_pathway_kernel_size_t - 1, missing=", ".join(missing) or "none")


def open_exact(full_folder: Path | str) -> dict[str, Any]:
    """The onnxruntime sessions of a dfnb ``full`` folder's three graphs (open once, replay many times)."""
    return {g: open_session(Path(full_folder) / f"{g}.onnx") for g in ("enc", "erb_dec", "df_dec")}


class FixableGraphs:
    """The feeding's model calls on a dfnb ``full`` folder; ``fixed`` names the causes removed.

    ``carried`` are the GRU state inputs (``h0``, ``erb_h0``, ``df_h0``) the emulated folder itself carries.
    """

    def __init__(self, full_folder: Path | str, feed: str, window: int, fixed: set[str], carried: set[str],
                 order: int, sessions: dict[str, Any] | None = None):
        p = Path(full_folder)
        self.sess = sessions or open_exact(p)
        self.states = {}
        for g, s in self.sess.items():
            base = {"enc": 2, "erb_dec": 5, "df_dec": 2}[g]
            self.states[g] = [(i.name, tuple(i.shape)) for i in s.get_inputs()[base:]]
        if any(not all(isinstance(d, int) for d in shp) for st in self.states.values() for _, shp in st):
            raise DfnbError(f"{p} is not a dfnb full export (its state shapes are not fixed).")
        self.feed, self.T, self.fixed, self.carried, self.order = feed, int(window), set(fixed), set(carried), order
        self.sliced = feed in ("step", "frame")
        self.reset()

    def reset(self) -> None:
        self.final = {g: self._zeros(g) for g in self.sess}
        self.after0 = {g: self._zeros(g) for g in self.sess}
        self.n = 0  # model calls so far = real frames in the window

    def _zeros(self, g: str) -> dict[str, np.ndarray]:
        return {n: np.zeros(shp, np.float32) for n, shp in self.states[g]}

    def _run(self, g: str, base: dict, st: dict) -> tuple[dict, dict]:
        s = self.sess[g]
        res = dict(zip([o.name for o in s.get_outputs()], s.run(None, {**base, **st})))
        nxt = {n: res[n.replace("h0", "h1") if n in _GRU_IN.values() else f"{n}_next"] for n, _ in self.states[g]}
        return res, nxt

    def _gru_carried(self, g: str) -> bool:
        return _GRU_IN[g] in self.carried or "gru" in self.fixed

    def _start(self, g: str) -> dict[str, np.ndarray]:
        """States at the first frame of this call's window (unsliced feedings)."""
        h = _GRU_IN[g]
        fresh = "context" in self.fixed and self.n <= self.T  # the window still begins at the stream's first frame
        prev0 = self._zeros(g) if fresh else self.after0[g]  # the state before the window's first frame
        conv = prev0 if "context" in self.fixed else self._zeros(g)
        if self.feed == "h0":
            gru = ((prev0[h] if "rerun" in self.fixed else self.final[g][h]) if self._gru_carried(g)
                   else np.zeros_like(prev0[h]))
        else:
            gru = prev0[h] if "restart" in self.fixed else np.zeros_like(prev0[h])
        return {**{k: v for k, v in conv.items() if k != h}, h: gru}

    def _unsliced(self, g: str, frames: list[dict]) -> list[dict]:
        """Run graph ``g`` over the window's frames (A: first frame, B: the rest) -> per-frame outputs."""
        cat = lambda key, parts: np.concatenate(parts, axis=1 if key == "emb" else 2)  # noqa: E731
        a, st_a = self._run(g, frames[0], self._start(g))
        outs = [a]
        st = st_a
        if len(frames) > 1:
            rest = {k: cat(k, [f[k] for f in frames[1:]]) for k in frames[0]}
            b, st = self._run(g, rest, st_a)
            outs.append(b)
        self.after0[g], self.final[g] = st_a, st
        return outs

    def infer(self, fe: np.ndarray, fs: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        self.n += 1
        if self.sliced:
            return self._sliced(fe, fs)
        if "context" in self.fixed:  # skip the zero prefill: only frames the stream has fed
            fe, fs = fe[-self.n:], fs[-self.n:]
        feat_erb, feat_spec = feature_tensors(fe, fs)
        frames = [{"feat_erb": feat_erb[:, :, k:k + 1], "feat_spec": feat_spec[:, :, k:k + 1]} for k in range(len(fe))]
        enc = self._unsliced("enc", frames)
        keys = ("e0", "e1", "e2", "e3", "emb", "c0", "lsnr")
        full = {k: np.concatenate([o[k] for o in enc], axis=1 if k in ("emb", "lsnr") else 2) for k in keys}
        per = [{k: (full[k][:, j:j + 1] if k in ("emb", "lsnr") else full[k][:, :, j:j + 1]) for k in keys}
               for j in range(len(fe))]
        m = self._unsliced("erb_dec", [{k: f[k] for k in ("emb", "e3", "e2", "e1", "e0")} for f in per])
        c = self._unsliced("df_dec", [{"emb": f["emb"], "c0": f["c0"]} for f in per])
        m = np.concatenate([o["m"] for o in m], axis=2)
        c = np.concatenate([o["coefs"] for o in c], axis=1)
        k = 0 if (self.feed == "h0" and "take" not in self.fixed) else -1
        return float(full["lsnr"].reshape(-1)[k]), m[0, 0, k], coefs_of(c[0, k], self.order)

    def _sliced(self, fe: np.ndarray, fs: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        feat_erb, feat_spec = feature_tensors(fe, fs)
        newest = {"feat_erb": feat_erb[:, :, -1:], "feat_spec": feat_spec[:, :, -1:]}
        st = dict(self.final["enc"])
        if "context" not in self.fixed:  # the convs' context is what the zero-prefilled window gives
            st = self._zeros("enc")
            if len(fe) > 1:
                _, ctx = self._run("enc", {"feat_erb": feat_erb[:, :, :-1], "feat_spec": feat_spec[:, :, :-1]}, st)
                st = ctx
            st["h0"] = self.final["enc"]["h0"]
        if not self._gru_carried("enc"):
            st["h0"] = np.zeros_like(st["h0"])
        enc, self.final["enc"] = self._run("enc", newest, st)
        out = {}
        for g, base in (("erb_dec", {k: enc[k] for k in ("emb", "e3", "e2", "e1", "e0")}),
                        ("df_dec", {"emb": enc["emb"], "c0": enc["c0"]})):
            st = dict(self.final[g]) if "conv" in self.fixed else self._zeros(g)
            h = _GRU_IN[g]
            st[h] = self.final[g][h] if self._gru_carried(g) else np.zeros_like(self.final[g][h])
            out[g], self.final[g] = self._run(g, base, st)
        return (float(enc["lsnr"].reshape(-1)[-1]), out["erb_dec"]["m"][0, 0, -1],
                coefs_of(out["df_dec"]["coefs"][0, -1], self.order))


def fixable_host(full_folder: Path | str, config: Any, *, feed: str, window: int, carried: set[str],
                 fixed: set[str] = frozenset(), probes: bool = False,
                 sessions: dict[str, Any] | None = None) -> PipelineHost:
    """:class:`PipelineHost` on a dfnb ``full`` folder with the causes in ``fixed`` removed.

    Parameters
    ----------
    full_folder : path
        A dfnb ``full`` export of the same weights.
    config : dfnb.layout.ModelConfig
    feed : str
        ``step``, ``h0``, ``window`` or ``frame`` (dfnb's host, one hop per call).
    window : int
        T.
    carried : set of str
        GRU state inputs the emulated folder carries (``h0``, ``erb_h0``, ``df_h0``).
    fixed : set of str
        Causes (:data:`CAUSES`) to remove.
    sessions : dict, optional
        :func:`open_exact` of ``full_folder``, to share between many replays.

    Returns
    -------
    PipelineHost

    Examples
    --------
    >>> h = fixable_host(full, cfg, feed="step", window=40, carried={"h0", "erb_h0", "df_h0"},
    ...                  fixed={"conv", "start"})  # doctest: +SKIP

    Notebook: 07_third_party_folders
    """
    unknown = set(fixed) - set(CAUSES)
    if unknown:
        raise DfnbError(f"unknown cause(s) {sorted(unknown)}; causes are {', '.join(CAUSES)}.")
    rt_feed = "step" if feed == "frame" else feed
    graphs = FixableGraphs(full_folder, feed, 1 if feed == "frame" else window, set(fixed), set(carried),
                           config.df_order, sessions)
    return PipelineHost(graphs, config, feed=rt_feed, window=1 if feed == "frame" else window,
                        gating=feed != "frame" and "gating" not in fixed,
                        offline_start=feed == "frame" or "start" in fixed,
                        delayed_features=(feed == "window" and "delay" not in fixed),
                        dfn2_stage=feed == "frame" or "dfstage" in fixed, probes=probes,
                        label=f"{feed} feeding on an exact export, fixed: {', '.join(sorted(fixed)) or 'nothing'}")
