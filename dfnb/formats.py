"""Recognise any DeepFilterNet ONNX folder from its graphs: dfnb's exports, upstream's release layout and the
formats of the public Rust pipeline ``shimondoodkin/deepfilter-rt``. No torch.

Every ``*.onnx`` file of a folder gets a *role* from its input/output names (never from its file name):

==============  =========================================================================================
role            graph inputs -> outputs
==============  =========================================================================================
``enc``         ``feat_erb, feat_spec [, h0, conv states]`` -> ``e0..e3, emb, c0, lsnr [, h1, ...]``
``enc_conv``    ``feat_erb, feat_spec`` -> ``e0..e3, emb, c0`` (no lsnr: the convs only, newest frame sliced)
``enc_gru``     ``emb, h0`` -> ``emb_out, lsnr, h1``
``erb_dec``     ``emb, e3, e2, e1, e0 [, erb_h0, ...]`` -> ``m [, erb_h1, ...]``
``df_dec``      ``emb, c0 [, df_h0, ...]`` -> ``coefs [, alpha] [, df_h1, ...]``
``combined``    ``feat_erb, feat_spec [, h0, erb_h0, df_h0]`` -> ``lsnr, m, coefs [, h1, ...]`` (one graph)
``step``        ``spec, feat_erb, feat_spec, states`` -> ``enh, lsnr, states`` (dfnb's one-graph step)
==============  =========================================================================================

The roles present give the *format*: ``step``; three files (``stateless``/``h0``/``gru``/``full`` by the
states they carry); deepfilter-rt's ``split-streaming`` (``enc_conv`` + ``enc_gru`` + stateful decoders,
from its ``split_encoder_and_patch_decoders.py`` or ``export_onnx_stateful.py``); ``combined-streaming``
(its ``merge_split_models.py``: one graph, all GRU states, output sliced to the newest frame); ``combined``
/ ``combined-h0`` (its ``merge_onnx.py``: one unsliced graph, stateless or with ``h0``). A graph is
*sliced* when fed 3 frames it returns 1 (one zero run decides). Symbolic dims of state inputs other than
time (the ``'B'`` of ``h0 [1, 'B', 256]`` from torch's exporters) are accepted: the batch can only be 1.

Which feedings fit a format (:mod:`dfnb.hosts.pipeline` runs them): ``frame`` (dfnb's host, one hop per
call), ``step``, ``h0`` and ``window`` (deepfilter-rt's three host modes). The first is the format's own.

Notebook: 07_third_party_folders
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFolderError
from .folder import open_session
from .graph_sizes import config_problems, graph_sizes
from .layout import ModelConfig, delay_samples

__all__ = ["ROLES", "FORMATS", "FEEDS", "StateIO", "FolderFormat", "recognise", "graph_roles", "resolve_shape",
           "rt_delay_samples"]

ROLES = ("enc", "enc_conv", "enc_gru", "erb_dec", "df_dec", "combined", "step")
FORMATS = ("step", "full", "gru", "h0", "stateless", "split-streaming", "combined-streaming", "combined-h0",
           "combined")
FEEDS = ("frame", "step", "h0", "window")
_GRU_STATES = {"h0": ("h1", "gru_enc"), "erb_h0": ("erb_h1", "gru_erb"), "df_h0": ("df_h1", "gru_df")}
_TIME_AXIS = {"feat_erb": 2, "feat_spec": 2, "emb": 1, "e0": 2, "e1": 2, "e2": 2, "e3": 2, "c0": 2}
_BASE_IN = {"enc": {"feat_erb", "feat_spec"}, "enc_conv": {"feat_erb", "feat_spec"}, "enc_gru": {"emb"},
            "erb_dec": {"emb", "e3", "e2", "e1", "e0"}, "df_dec": {"emb", "c0"},
            "combined": {"feat_erb", "feat_spec"}, "step": {"spec", "feat_erb", "feat_spec"}}
WINDOW_STATELESS = 40  # deepfilter-rt's STATELESS_WINDOW: frames fed per call in window mode and split streaming


@dataclass(frozen=True)
class StateIO:
    """One state a graph carries: its input and output names, resolved shape and group."""

    file: str
    input: str
    output: str
    shape: tuple[int, ...]
    group: str  # gru_enc / gru_erb / gru_df / conv / step


@dataclass
class FolderFormat:
    """What :func:`recognise` finds: format, files by role, states, sizes, feedings, delay and weights."""

    path: Path
    format: str
    origin: str
    files: dict[str, str]
    io: dict[str, dict]
    states: tuple[StateIO, ...]
    sizes: dict[str, Any]
    config: ModelConfig | None
    feeds: tuple[str, ...]
    window: dict[str, int]
    sliced: bool
    manifest: dict | None = None
    weights: Any = None
    problems: list[str] = field(default_factory=list)
    alternatives: tuple[str, ...] = ()

    @property
    def carries(self) -> tuple[str, ...]:
        """State groups the graphs carry between calls."""
        return tuple(dict.fromkeys(s.group for s in self.states))

    @property
    def family(self) -> str:
        return self.config.family if self.config else "unknown"

    @property
    def variant(self) -> str | None:
        """dfnb's variant with the same graph contract, if any (what :func:`dfnb.hosts.open_host` runs)."""
        return self.format if self.format in ("step", "full", "gru", "h0", "stateless") else None

    def fitting(self, feed: str) -> FolderFormat:
        """The folder described as the complete model ``feed`` runs: itself, or one of its alternatives."""
        for alt in () if feed in self.feeds else self.alternatives:
            other = recognise(self.path, weights=self.weights is not None, format=alt)
            if feed in other.feeds:
                return other
        return self

    def delay(self, feed: str | None = None) -> int:
        """Samples the output lags the input under ``feed`` (default: the format's own feeding)."""
        feed = feed or self.feeds[0]
        if self.config is None:
            return 0
        return delay_samples(self.config) if feed == "frame" else rt_delay_samples(self.config)

    def host_keeps(self, feed: str | None = None) -> list[str]:
        """What a host must keep between calls to run this folder with ``feed``."""
        feed = feed or self.feeds[0]
        keep = ["DSP: STFT overlap and the ERB/unit feature norms"]
        gru = [s.input for s in self.states if s.group.startswith("gru")]
        conv = [s.input for s in self.states if s.group == "conv"]
        if feed == "frame":
            if self.format == "step":
                return keep + [f"the {len(self.states)} state tensors of step.onnx (fed back every hop)"]
            keep += [f"GRU states {', '.join(gru)}" if gru else "no model state (every call starts from zero)"]
            keep += [f"{len(conv)} conv states (past frames)"] if conv else []
            return keep + ["the lookahead (first conv_lookahead feature frames skipped) and the deep-filter "
                           "spectrum buffer"]
        t = self.window.get(feed, 1)
        keep.append(f"a ring of the last {t} feature frames (zero-prefilled)"
                    + (", delayed by the lookahead" if feed == "window" else ""))
        if feed != "window" and gru:
            keep.append(f"GRU states {', '.join(gru)}")
        return keep + ["the last df_order noisy spectra (deep filter) and the spectra waiting for the mask "
                       "(max(conv_lookahead, df_lookahead) frames)"]


def resolve_shape(shape: Any, name: str, time_params: set[str]) -> tuple[int, ...]:
    """A state input's shape with symbolic non-time dims set to 1 (the batch, which can only be 1)."""
    out = []
    for d in shape:
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif d in time_params:
            raise ModelFolderError(f"state input {name} has a dim {d!r} tied to the time axis {list(shape)}; a "
                                   "streaming state must not grow with time. Re-export it with a fixed shape.")
        else:
            out.append(1)
    return tuple(out)


def rt_delay_samples(cfg: Any) -> int:
    """deepfilter-rt's ``delay_samples()``: ``(fft - hop) + max(conv_lookahead, df_lookahead) * hop``."""
    return (cfg.fft_size - cfg.hop_size) + max(cfg.conv_lookahead, cfg.df_lookahead) * cfg.hop_size


def graph_roles(ins: list[str], outs: list[str]) -> str | None:
    """The role of a graph from its input and output names (see the module docstring)."""
    i, o = set(ins), set(outs)
    if {"spec", "feat_erb", "feat_spec"} <= i and {"enh", "lsnr"} <= o:
        return "step"
    if {"feat_erb", "feat_spec"} <= i:
        if {"lsnr", "m", "coefs"} <= o:
            return "combined"
        if {"e0", "e1", "e2", "e3", "emb", "c0"} <= o:
            return "enc" if "lsnr" in o else "enc_conv"
    if {"emb", "h0"} <= i and {"emb_out", "lsnr", "h1"} <= o:
        return "enc_gru"
    if {"emb", "e3", "e2", "e1", "e0"} <= i and "m" in o:
        return "erb_dec"
    if {"emb", "c0"} <= i and "coefs" in o:
        return "df_dec"
    return None


def _state_group(file_role: str, name: str) -> str:
    if name in _GRU_STATES:
        return _GRU_STATES[name][1]
    return "step" if file_role == "step" else "conv"


def _zero_run(sess, shapes: dict[str, tuple[int, ...]], t: int) -> dict[str, tuple[int, ...]]:
    """Output shapes of one run on zeros with ``t`` frames (states at their resolved shapes)."""
    feeds = {}
    for i in sess.get_inputs():
        if i.name in shapes:
            shp = shapes[i.name]
        else:
            shp = tuple(t if k == _TIME_AXIS.get(i.name, -1) else (d if isinstance(d, int) and d > 0 else 1)
                        for k, d in enumerate(i.shape))
        feeds[i.name] = np.zeros(shp, np.float32)
    try:
        return {o.name: r.shape for o, r in zip(sess.get_outputs(), sess.run(None, feeds))}
    except Exception as e:  # noqa: BLE001 -- any runtime failure means the graph does not take this contract
        raise ModelFolderError(f"a zero run of {Path(sess._model_path).name} with {t} frames failed "
                               f"({str(e).splitlines()[0][:160]}); the graph does not take the inputs its names "
                               "promise. Re-export it.") from None


def _pick(cands: list[tuple[str, dict]], want_states: bool | None) -> str | None:
    """Among files of one role, prefer those with (or without) GRU states, then canonical names."""
    if not cands:
        return None
    def key(c):
        name, io = c
        has = any(n in _GRU_STATES for n in io["inputs"])
        return (want_states is not None and has != want_states, "_streaming" in name or "combined" in name, name)
    return sorted(cands, key=key)[0][0]


def _group_files(roles: dict[str, str], io: dict[str, dict], sliced: dict[str, bool]) -> list[tuple[str, dict]]:
    """Every complete format the files can form, in deepfilter-rt's priority order (dfnb's step first)."""
    by = {r: [(f, io[f]) for f, rr in roles.items() if rr == r] for r in ROLES}
    out = []
    if by["step"]:
        out.append(("step", {"step": by["step"][0][0]}))
    if by["enc_conv"] and by["enc_gru"] and by["erb_dec"] and by["df_dec"]:
        out.append(("split-streaming", {"enc_conv": _pick(by["enc_conv"], None), "enc_gru": _pick(by["enc_gru"], True),
                                        "erb_dec": _pick(by["erb_dec"], True), "df_dec": _pick(by["df_dec"], True)}))
    for f, fio in by["combined"]:
        has_h0 = "h0" in fio["inputs"]
        kind = "combined-streaming" if sliced.get(f) else ("combined-h0" if has_h0 else "combined")
        out.append((kind, {"combined": f}))
    enc = [c for c in by["enc"]]
    if enc and by["erb_dec"] and by["df_dec"]:
        e = _pick(enc, None)
        enc_states = [n for n in io[e]["inputs"] if n not in _BASE_IN["enc"]]
        want = None if not enc_states else True
        files = {"enc": e, "erb_dec": _pick(by["erb_dec"], want), "df_dec": _pick(by["df_dec"], want)}
        states = [n for f in files.values() for n in io[f]["inputs"] if n not in _BASE_IN[roles[f]]]
        if any(n not in _GRU_STATES for n in states):
            kind = "full"
        elif {"erb_h0", "df_h0"} <= set(states):
            kind = "gru"
        else:
            kind = "h0" if "h0" in states else "stateless"
        out.append((kind, files))
    order = {k: i for i, k in enumerate(("step", "split-streaming", "combined-streaming", "full", "gru", "h0",
                                         "combined-h0", "stateless", "combined"))}
    return sorted(out, key=lambda kv: order[kv[0]])


def _origin(fmt: str, manifest: dict | None, io: dict, files: dict[str, str]) -> str:
    if manifest and str(manifest.get("format", "")).startswith("dfnb-model-folder"):
        return "dfnb export (manifest.json)"
    if fmt in ("split-streaming", "combined-streaming", "combined", "combined-h0"):
        return "deepfilter-rt (shimondoodkin/deepfilter-rt scripts)"
    symbolic = any(not isinstance(d, int) for f in files.values() for n, shp in io[f]["inputs"].items()
                   if n in _GRU_STATES for d in shp)
    if fmt in ("h0", "gru") and symbolic:
        return ("deepfilter-rt's _h0 folder (export_onnx_stateful.py: symbolic batch 'B' in the GRU states"
                + ("; dfnb calls this contract gru)" if fmt == "gru" else ")"))
    if fmt == "stateless":
        return "upstream DeepFilterNet release layout (or any stateless export)"
    return "unknown exporter"


def _feeds(fmt: str, origin: str, cfg: ModelConfig | None) -> tuple[tuple[str, ...], dict[str, int]]:
    kt = cfg.conv_kernel_inp[0] if cfg else 3
    table = {"step": ("frame",), "full": ("frame",), "split-streaming": ("step",), "combined-streaming": ("step",),
             "combined": ("window",), "combined-h0": ("h0", "window"), "stateless": ("frame", "window"),
             "h0": ("frame", "h0", "window"), "gru": ("frame", "h0", "window")}
    feeds = table[fmt]
    if origin.startswith("deepfilter-rt") and "frame" in feeds:
        feeds = tuple(f for f in feeds if f != "frame")
    windows = {"window": WINDOW_STATELESS, "h0": kt,
               "step": WINDOW_STATELESS if fmt == "split-streaming" else kt}
    return feeds, {k: v for k, v in windows.items() if k in feeds}


def recognise(folder: Path | str, *, weights: bool = True, format: str | None = None) -> FolderFormat:
    """Recognise a model folder from its graphs: format, roles, states, sizes, feedings, delay, weights.

    Parameters
    ----------
    folder : path
        A folder with ``*.onnx`` files and (usually) ``config.ini``.
    weights : bool
        Also compare every weight with the official releases at hand (:func:`dfnb.fingerprint.identify`).
    format : str, optional
        When the folder holds several complete formats (deepfilter-rt keeps the split files, the merged graphs
        and the original three side by side), the one to describe; default: the one its host picks first.

    Returns
    -------
    FolderFormat

    Examples
    --------
    >>> f = recognise("models/dfn3_h0")  # doctest: +SKIP
    >>> f.format, f.feeds, f.delay()  # doctest: +SKIP
    ('h0', ('frame', 'h0', 'window'), 1440)

    Notebook: 07_third_party_folders
    """
    p = Path(folder)
    if not p.is_dir():
        raise ModelFolderError(f"model folder not found: {p}; pass a folder holding the ONNX files.")
    onnx_files = sorted(f.name for f in p.glob("*.onnx"))
    if not onnx_files:
        raise ModelFolderError(f"{p} holds no .onnx file; pass a folder with a model's ONNX graphs.")
    cfg = ModelConfig.read(p / "config.ini") if (p / "config.ini").is_file() else None
    sessions, io, roles = {}, {}, {}
    for f in onnx_files:
        s = sessions[f] = open_session(p / f)
        io[f] = {"inputs": {i.name: list(i.shape) for i in s.get_inputs()},
                 "outputs": {o.name: list(o.shape) for o in s.get_outputs()}}
        r = graph_roles(list(io[f]["inputs"]), list(io[f]["outputs"]))
        if r:
            roles[f] = r
    if not roles:
        raise ModelFolderError(f"{p}: none of {onnx_files} has the inputs/outputs of a DeepFilterNet graph "
                               "(feat_erb/feat_spec -> e0..e3, emb, c0, lsnr; or the decoders); nothing to run.")
    state_shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for f, r in roles.items():
        time_params = {str(shp[_TIME_AXIS[n]]) for n, shp in io[f]["inputs"].items()
                       if n in _TIME_AXIS and len(shp) > _TIME_AXIS[n] and not isinstance(shp[_TIME_AXIS[n]], int)}
        state_shapes[f] = {n: resolve_shape(shp, n, time_params) for n, shp in io[f]["inputs"].items()
                           if n not in _BASE_IN[r]}
    out_shapes, sliced = {}, {}
    for f, r in roles.items():
        out_shapes[f] = _zero_run(sessions[f], state_shapes[f], 1 if r in ("step", "enc_gru") else 3)
        if r in ("combined", "enc_conv"):
            sliced[f] = out_shapes[f].get("m" if r == "combined" else "e0", (0, 0, 0))[2] == 1
    groups = _group_files(roles, io, sliced)
    if not groups:
        raise ModelFolderError(f"{p} does not hold a complete model: roles found {sorted(set(roles.values()))} "
                               f"in {sorted(roles)}; a folder needs enc/erb_dec/df_dec, enc_conv/enc_gru/erb_dec/"
                               "df_dec, one combined graph or step.onnx.")
    if format is not None:
        if format not in {g for g, _ in groups}:
            raise ModelFolderError(f"{p} holds {', '.join(g for g, _ in groups)}, not a complete {format} model.")
        groups = sorted(groups, key=lambda g: g[0] != format)
    fmt, files = groups[0]
    manifest = None
    if (p / "manifest.json").is_file():
        try:
            manifest = json.loads((p / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise ModelFolderError(f"{p / 'manifest.json'} is not valid JSON ({e}); re-export the folder.") from None
    states = []
    for role, f in files.items():
        outs = list(io[f]["outputs"])
        for n, shp in state_shapes[f].items():
            o = _GRU_STATES[n][0] if n in _GRU_STATES else (f"{n}_next" if f"{n}_next" in outs else "?")
            states.append(StateIO(f, n, o, shp, _state_group(role, n)))
    origin = _origin(fmt, manifest, {f: io[f] for f in files.values()}, files)
    sizes = graph_sizes(p, files, out_shapes)
    feeds, window = _feeds(fmt, origin, cfg)
    res = FolderFormat(p, fmt, origin, files, {f: io[f] for f in files.values()}, tuple(states), sizes, cfg, feeds,
                       window, any(sliced.get(f, False) for f in files.values()), manifest,
                       alternatives=tuple(g for g, _ in groups[1:]))
    res.problems = config_problems(cfg, sizes)
    if cfg is None:
        res.problems.append("no config.ini: sizes come from the graphs only, the delay is unknown; copy the "
                            "model's config.ini into the folder to run it")
    if weights:
        from .fingerprint import config_constants, identify

        guess = []
        if cfg is not None:
            guess = [("DeepFilterNet3" if cfg.family == "deepfilternet3" else "DeepFilterNet2")
                     + ("_ll" if cfg.conv_lookahead == 0 else "")]
        res.weights = identify([p / f for f in dict.fromkeys(files.values())], prefer=guess,
                               known=config_constants(cfg) if cfg is not None else ())
    return res
