"""Run a model folder the way the Rust pipeline ``shimondoodkin/deepfilter-rt`` feeds it. No torch.

That pipeline does not feed one frame per model call. Read from its public sources (never copied):
``src/lib.rs`` at commit f1a1b27 (``DeepFilterProcessor::build`` with its ``SessionMode`` switch,
``process_frame``, ``fill_inference_tensors``, ``run_inference``, ``apply_deep_filter_flat``,
``delay_samples``, ``DeepFilterStream::flush``; the split path first appears at a9c5596), ``MODES.md``,
``README.md``, ``ARCHITECTURE.md`` (time slicing) and ``examples/process_file.rs`` (the ``-D`` trim).
Per 480-sample hop it does libDF's STFT analysis and features (``DFState``; here :mod:`dfnb.dsp`), then:

* **a ring of the last T feature frames**, pre-filled with zeros (all T frames are fed from the first hop);
* ``step`` feeding (its *split streaming* and *combined streaming* modes): the current frame goes straight into
  the ring; the graphs run the convs over the T frames, **slice the newest frame** and run every GRU on that one
  frame with its state carried (``h0 -> h1``, ``erb_h0 -> erb_h1``, ``df_h0 -> df_h1``). T = 40
  (``STATELESS_WINDOW``) for the four split files, ``conv_kernel_inp`` (3) for ``combined_streaming.onnx``;
* ``h0`` feeding (its *StatefulH0* mode on a ``combined.onnx`` merged from an ``_h0`` folder; running the
  three files on the same frames is the same arithmetic): the current frame goes into a ring of T =
  ``conv_kernel_inp`` frames; the whole unsliced graph runs on the T frames with the GRU states carried from
  the previous call (so every frame passes the GRUs T times), and the host takes output frame **0** of the
  window, as its code does for a graph it assumes is sliced;
* ``window`` feeding (its *stateless window* mode, ``combined.onnx`` or any stateless folder): features wait in
  a lookahead buffer (nothing runs for the first ``L`` hops; then the frame written is ``f(L)`` twice, and
  ``f(n-1)`` from hop ``L+1`` on -- the buffer's indexing, reproduced as it is), T = 40 frames from zero
  states every call, newest output frame taken.

(An older ``lib.rs``, 8c4fda6, ran an ``_h0`` folder as three sessions on a growing, unprefilled window and took
its last frame; dfnb emulates the current code.) Then, for every feeding, with
``L = max(conv_lookahead, df_lookahead)``: the ERB mask goes on the spectrum of
frame ``n - L``, the deep filter uses the ``df_order`` newest *noisy* spectra (correct for DeepFilterNet3;
DeepFilterNet2 filters the masked spectrum offline), and the stages are **gated on lsnr** with the crate's
constants: mask only if ``lsnr <= 35`` dB, zero mask if ``lsnr < -15``, deep filter only if ``lsnr <= 35`` and
not zeroed. Output lags the input by ``(fft_size - hop) + L * hop`` samples (its ``delay_samples()``, the
``-D`` trim of ``process_file``). Its ``flush()`` only pads the last partial hop (a ``-D`` output is ``L`` hops
short); :meth:`PipelineHost.flush`, as every dfnb runtime's, drains the lookahead with ``L`` zero frames (zero
spectrum and features, what offline padding feeds), and :func:`dfnb.runtime.enhance` trims the delay, so every
output is time-aligned with its input and as long.

:class:`PipelineHost` is that loop. The graphs are pluggable: :class:`FolderGraphs` runs a folder's own files
(any format :func:`dfnb.formats.recognise` knows that fits the feeding); :mod:`dfnb.hosts.pipeline_fixes` runs
the same feeding on an exact export with each cause switchable, for ``dfnb diagnose``.

Notebook: 07_third_party_folders
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from .. import dsp
from ..args import check_choice, check_int
from ..errors import DfnbError, ModelFolderError
from ..folder import open_session
from ..formats import FEEDS, FolderFormat, recognise
from ..runtime import Runtime

__all__ = ["MIN_DB_THRESH", "MAX_DB_ERB_THRESH", "MAX_DB_DF_THRESH", "FolderGraphs", "PipelineHost", "open_pipeline",
           "open_folder", "feature_tensors", "coefs_of"]

# deepfilter-rt src/lib.rs constants ("Match DeepFilterNet CLI defaults")
MIN_DB_THRESH = -15.0
MAX_DB_ERB_THRESH = 35.0
MAX_DB_DF_THRESH = 35.0
_FEEDS_OF = {"step": ("split-streaming", "combined-streaming"),
             "h0": ("h0", "gru", "combined-h0"),
             "window": ("stateless", "h0", "gru", "combined", "combined-h0")}


def feature_tensors(fe: np.ndarray, fs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ring frames ``[T, E]``, ``[T, F]`` complex -> ``feat_erb [1,1,T,E]``, ``feat_spec [1,2,T,F]``."""
    return (np.ascontiguousarray(fe[None, None], np.float32),
            np.ascontiguousarray(np.stack([fs.real, fs.imag])[None], np.float32))


def coefs_of(c: np.ndarray, order: int) -> np.ndarray:
    """``coefs`` output frame ``[F, O*2]`` -> complex ``[O, F]``."""
    c = np.asarray(c, np.float32).reshape(c.shape[0], order, 2)
    return (c[..., 0] + 1j * c[..., 1]).T.astype(np.complex64)


class FolderGraphs:
    """A folder's own graphs behind one call per hop: ``infer(fe_ring, fs_ring) -> (lsnr, m, coefs)``.

    ``step`` runs sliced graphs (one output frame) with every GRU state carried; ``h0`` runs the unsliced
    graphs on the T frames with the folder's GRU states carried from call to call and returns frame 0;
    ``window`` runs them from zero states and returns the newest frame.
    """

    def __init__(self, fmt: FolderFormat, feed: str, threads: int = 1):
        if fmt.format not in _FEEDS_OF.get(feed, ()):
            raise ModelFolderError(f"{fmt.path}: a {fmt.format} folder cannot be fed as {feed!r} (deepfilter-rt feeds "
                                   f"it as {', '.join(f for f in fmt.feeds if f != 'frame') or 'nothing'}); "
                                   f"choose --feed among {', '.join(fmt.feeds)}.")
        self.fmt, self.feed = fmt, feed
        self.order = fmt.config.df_order
        self.sess = {role: open_session(fmt.path / f, threads) for role, f in fmt.files.items()}
        self.state_io = {role: [(s.input, s.output, s.shape) for s in fmt.states if s.file == f]
                         for role, f in fmt.files.items()}
        self.take = 0 if feed == "h0" else -1
        self.reset()

    def reset(self) -> None:
        self.states = {i: np.zeros(shape, np.float32) for io in self.state_io.values() for i, _, shape in io}

    def _run(self, role: str, feeds: dict) -> dict:
        for i, _, shape in self.state_io[role]:
            feeds[i] = self.states[i] if self.feed != "window" else np.zeros(shape, np.float32)
        s = self.sess[role]
        res = dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))
        if self.feed != "window":
            for i, o, _ in self.state_io[role]:
                self.states[i] = res[o]
        return res

    def infer(self, fe: np.ndarray, fs: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        feat_erb, feat_spec = feature_tensors(fe, fs)
        if "combined" in self.sess:
            r = self._run("combined", {"feat_erb": feat_erb, "feat_spec": feat_spec})
            lsnr, m, c = r["lsnr"], r["m"], r["coefs"]
        else:
            if "enc_conv" in self.sess:  # split streaming: convs on the window, newest frame sliced in the graph
                enc = self._run("enc_conv", {"feat_erb": feat_erb, "feat_spec": feat_spec})
                g = self._run("enc_gru", {"emb": enc["emb"]})
                enc["emb"], enc["lsnr"] = g["emb_out"], g["lsnr"]
            else:
                enc = self._run("enc", {"feat_erb": feat_erb, "feat_spec": feat_spec})
            m = self._run("erb_dec", {k: enc[k] for k in ("emb", "e3", "e2", "e1", "e0")})["m"]
            c = self._run("df_dec", {"emb": enc["emb"], "c0": enc["c0"]})["coefs"]
            lsnr = enc["lsnr"]
        k = self.take
        return float(lsnr.reshape(-1)[k]), m[0, 0, k], coefs_of(c[0, k], self.order)


class PipelineHost(Runtime):
    """deepfilter-rt's per-hop loop (see the module docstring) around pluggable graphs.

    Parameters
    ----------
    graphs : FolderGraphs or any object with ``reset()`` and ``infer(fe_ring, fs_ring)``
    config : dfnb.layout.ModelConfig
        The model's ``config.ini`` values.
    feed : str
        ``step``, ``h0`` or ``window``.
    window : int
        T, the frames kept in the ring.
    gating : bool
        Gate mask and deep filter on lsnr (the crate does; offline does not).
    offline_start : bool
        Do not feed the first ``conv_lookahead`` frames (offline drops them); the crate feeds them.
    delayed_features : bool
        The window feeding's lookahead buffer; False writes the current frame.
    dfn2_stage : bool
        DeepFilterNet2's deep filter (on the masked spectra, ``df_lookahead`` frames later) instead of the
        crate's (on the noisy spectra, as for DeepFilterNet3).

    Notebook: 07_third_party_folders
    """

    def __init__(self, graphs: Any, config: Any, *, feed: str, window: int, gating: bool = True,
                 offline_start: bool = False, delayed_features: bool | None = None, dfn2_stage: bool = False,
                 probes: bool = False, label: str = "deepfilter-rt pipeline"):
        feed = check_choice(feed, "feed", FEEDS[1:])
        window = check_int(window, "window", hint="T, the feature frames the ring keeps (e.g. 40)")
        self.graphs, self.spec, self.feed, self.T = graphs, config, feed, window
        self.gating, self.offline_start = bool(gating), bool(offline_start)
        self.delayed = (feed == "window") if delayed_features is None else bool(delayed_features)
        c = config
        self.cfg = dsp.DspConfig.build(c.sr, c.fft_size, c.hop_size, c.nb_erb, c.nb_df, c.min_nb_erb_freqs,
                                       c.norm_tau)
        self.L = max(c.conv_lookahead, c.df_lookahead)
        self.order = c.df_order
        self.dfn2_stage = bool(dfn2_stage) and c.family == "deepfilternet2"
        self.dfl = c.df_lookahead if self.dfn2_stage else 0
        self.delay_samples = (c.fft_size - c.hop_size) + (self.L + self.dfl) * c.hop_size
        self.label = label
        self._widths = np.asarray(self.cfg.erb_widths)
        super().__init__(probes)

    def _reset(self) -> None:
        f = self.cfg.freq_bins
        self.dsp_state = dsp.DspState.initial(self.cfg)
        self.buf_x = deque([np.zeros(f, np.complex64)] * max(self.order, self.L, 1), maxlen=max(self.order, self.L, 1))
        self.buf_y = deque([np.zeros(f, np.complex64)] * (self.order + self.L), maxlen=self.order + self.L)
        self.ring_e = deque([np.zeros(self.cfg.nb_erb, np.float32)] * self.T, maxlen=self.T)
        self.ring_s = deque([np.zeros(self.cfg.nb_df, np.complex64)] * self.T, maxlen=self.T)
        self.pending: list = []  # the window feeding's lookahead buffer
        self.masked = deque([np.zeros(f, np.complex64)] * self.order, maxlen=self.order)
        self.coefq: list = []
        self.n = 0
        self.graphs.reset()

    def _push(self, fe: np.ndarray, fs: np.ndarray) -> bool:
        """Put this hop's frame into the ring; False when the model does not run this hop."""
        n, L = self.n, self.L
        if self.delayed:
            self.pending.append((fe, fs))
            if len(self.pending) <= L:
                return False
            fe, fs = self.pending[L]
            if len(self.pending) > L + 1:
                self.pending.pop(0)
        elif self.offline_start and n < L:
            return False
        self.ring_e.append(fe)
        self.ring_s.append(fs)
        return True

    def _hop(self, x: np.ndarray) -> np.ndarray:
        spec = dsp.analysis(self.cfg, self.dsp_state, x)
        return self._frame(spec, *dsp.features(self.cfg, self.dsp_state, spec))

    def _frame(self, spec: np.ndarray, fe: np.ndarray, fs: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        self.buf_x.append(spec)
        self.buf_y.append(spec.copy())
        run = self._push(fe, fs)
        self.n += 1
        if not run:
            return dsp.synthesis(cfg, self.dsp_state, np.zeros(cfg.freq_bins, np.complex64))
        lsnr, m, coefs = self.graphs.infer(np.stack(self.ring_e), np.stack(self.ring_s))
        self._record(lsnr)
        out = self.buf_y[len(self.buf_y) - 1 - self.L].copy()
        zero = self.gating and lsnr < MIN_DB_THRESH
        if not self.gating or lsnr <= MAX_DB_ERB_THRESH:
            out *= 0.0 if zero else np.repeat(np.asarray(m, np.float32), self._widths)  # each band's gain per bin
        use_df = not self.gating or (lsnr <= MAX_DB_DF_THRESH and not zero)
        nb = cfg.nb_df
        if self.dfn2_stage:  # DeepFilterNet2's order: filter the masked spectra, df_lookahead frames later
            self.masked.append(out)
            self.coefq.append(coefs if use_df else None)
            if len(self.coefq) <= self.dfl:
                return dsp.synthesis(cfg, self.dsp_state, np.zeros(cfg.freq_bins, np.complex64))
            win, coefs, use_df = np.stack([f[:nb] for f in self.masked]), self.coefq[0], self.coefq[0] is not None
            out = self.masked[self.order - 1 - self.dfl].copy()
            self.coefq.pop(0)
        else:
            win = np.stack([self.buf_x[k][:nb] for k in range(self.order)])
        if use_df:
            out[:nb] = np.sum(win * coefs, axis=0)
        return dsp.synthesis(cfg, self.dsp_state, out.astype(np.complex64))

    def _hops(self, x: np.ndarray) -> np.ndarray:
        h = self.cfg.hop_size
        return np.concatenate([self._hop(x[i:i + h]) for i in range(0, len(x), h)])

    def _drain(self) -> np.ndarray:
        """The lookahead's zero frames (zero spectrum and features, what offline padding feeds), as every dfnb
        runtime."""
        c = self.cfg
        z = (np.zeros(c.freq_bins, np.complex64), np.zeros(c.nb_erb, np.float32), np.zeros(c.nb_df, np.complex64))
        return np.concatenate([self._frame(*z) for _ in range(self.L + self.dfl)] or [np.zeros(0, np.float32)])


def open_pipeline(folder: Path | str | FolderFormat, *, feed: str | None = None, window: int | None = None,
                  threads: int = 1, probes: bool = False) -> PipelineHost:
    """A :class:`PipelineHost` running ``folder``'s own graphs with deepfilter-rt's ``feed`` (default: the
    folder's own feeding, see :func:`dfnb.formats.recognise`).

    Parameters
    ----------
    folder : path or FolderFormat
    feed : str, optional
        ``step``, ``h0`` or ``window``.
    window : int, optional
        T, the frames per call (default: what the crate uses for this format and feeding).

    Returns
    -------
    PipelineHost

    Examples
    --------
    >>> from dfnb.runtime import enhance
    >>> y = enhance(open_pipeline("models/dfn3_split"), noisy)  # doctest: +SKIP

    Notebook: 07_third_party_folders
    """
    fmt = folder if isinstance(folder, FolderFormat) else recognise(folder, weights=False)
    rt_feeds = [f for f in fmt.feeds if f != "frame"] or [f for f, kinds in _FEEDS_OF.items() if fmt.format in kinds]
    feed = feed or (rt_feeds[0] if rt_feeds else None)
    fmt = fmt.fitting(feed) if feed else fmt  # another complete model in the folder may be the one this feeding runs
    if feed is None or feed == "frame":
        raise DfnbError(f"{fmt.path} is a {fmt.format} folder, which deepfilter-rt cannot run; run it with dfnb's "
                        "host (omit --feed).")
    if fmt.config is None:
        raise ModelFolderError(f"{fmt.path} has no config.ini; deepfilter-rt needs it too (lookahead, sizes). Copy "
                               "the model's config.ini into the folder.")
    graphs = FolderGraphs(fmt, feed, threads)
    default_t = fmt.window.get(feed) or (fmt.config.conv_kernel_inp[0] if feed != "window" else 40)
    t = default_t if window is None else window
    return PipelineHost(graphs, fmt.config, feed=feed, window=t, probes=probes,
                        label=f"deepfilter-rt {feed} feeding (T={t}) of {fmt.path.name}")


def open_folder(folder: Path | str, *, feed: str | None = None, window: int | None = None, host: str = "auto",
                threads: int = 1, **kw: Any) -> Runtime:
    """A runtime for any folder :func:`dfnb.formats.recognise` knows (what ``dfnb enhance --model FOLDER`` runs).

    dfnb's own host (:func:`dfnb.hosts.open_host`, ``host`` and ``**kw`` passed on) when it runs the folder and
    no deepfilter-rt feeding is asked for; else :func:`open_pipeline`: a folder only deepfilter-rt runs is fed
    its own way, ``feed``/``window`` choose another.

    Parameters
    ----------
    folder : path
    feed : {"frame", "step", "h0", "window"}, optional
        ``frame``: dfnb's host only; the others: deepfilter-rt's feedings.
    window : int, optional
        T of deepfilter-rt's feedings (default: what it uses for the format).

    Returns
    -------
    dfnb.runtime.Runtime
        A :class:`~dfnb.hosts.onnx.Host`, :class:`~dfnb.hosts.fast.FastStepHost` or :class:`PipelineHost`.

    Examples
    --------
    >>> from dfnb.runtime import enhance  # doctest: +SKIP
    >>> y = enhance(open_folder("deepfilter-rt/models/dfn3", feed="window", window=40), noisy)  # doctest: +SKIP

    Notebook: 07_third_party_folders
    """
    from . import open_host

    if feed is not None:
        feed = check_choice(feed, "feed", FEEDS)
    if feed not in (None, "frame") or window is not None:
        fmt = recognise(folder, weights=False)
        if feed in (None, "frame") and "frame" in fmt.feeds:
            raise DfnbError("window sets T of deepfilter-rt's feedings: add a feed (step, h0 or window); dfnb's host "
                            "feeds one hop per call (the chunk sets the hops per call).")
        return open_pipeline(fmt, feed=feed, window=window, threads=threads)
    try:
        return open_host(folder, host=host, threads=threads, **kw)
    except ModelFolderError as e:  # not a folder dfnb's hosts run: maybe another pipeline's format
        try:
            fmt = recognise(folder, weights=False)
        except DfnbError:
            raise e from None
        if feed == "frame" or "frame" in fmt.feeds:
            raise e from None
        return open_pipeline(fmt, threads=threads)
