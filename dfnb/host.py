"""Run an exported model folder with onnxruntime, hop by hop or in chunks, as a realtime host would. No torch.

A host needs only numpy, libdf, onnxruntime and this file — exactly what the Rust pipeline needs. The variant
is detected from the graphs' inputs, as the Rust pipeline decides: ``step.onnx`` → ``step``; an ``h0`` input
on ``enc.onnx`` means stateful (``h0``), plus ``erb_h0`` on ``erb_dec.onnx`` → ``gru``, plus conv-state inputs
→ ``full``; none → ``stateless``.

How a folder is run (one call = ``chunk`` hops). By default every variant runs in the *realtime host*
pipeline that the seed's Rust pipeline uses: the host keeps its DSP state (STFT overlap, feature norms, as
libDF's ``DFState`` does), delays the spectrum by the model's lookahead (the first ``conv_lookahead`` feature
frames never reach the encoder; output lags by ``delay_samples``, 1440 for DeepFilterNet3), keeps the
deep-filter spectrum buffer (numpy mirror of :class:`dfnb.streaming.StepModel`'s last stage), and runs the
graphs on each call's frames. What the graphs remember across calls is exactly what the folder declares:

* ``stateless`` — nothing: every call starts the GRUs from zero and the convs from zero padding;
* ``h0`` — the encoder GRU (``h1`` fed back as ``h0``; zeroed on ``reset()``), as in the seed contract;
* ``gru`` — all GRUs; ``full`` — all GRUs and the convs' past frames: exact;
* ``step`` — one onnxruntime call per hop with every state: exact.

``per_call_offline=True`` instead runs each call as if it were a whole file given to the offline model
(features shifted inside the call, its last ``conv_lookahead`` frames zero-padded, spectra outside the call
zero, output immediately): the *lost lookahead* of a host that knows nothing about streaming. With
``reset_dsp=True`` such a host also resets STFT and norm state each call, like a Python host calling
libdf's resetting ``analysis()`` per chunk.

:func:`host_enhance` pads, streams, flushes and removes the delay so every output has the input's length and
is time-aligned with it.

Notebook: 02_stateful_export
"""

from __future__ import annotations

import configparser
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import audio as audio_mod
from . import dsp
from .clips import sha256_file
from .errors import AudioError, DfnbError, ModelFolderError, StateError

__all__ = ["FolderInfo", "inspect_folder", "Host", "host_enhance", "detect_variant", "check_feeds"]

_FILES3 = ("enc.onnx", "erb_dec.onnx", "df_dec.onnx")


@dataclass
class FolderInfo:
    """What :func:`inspect_folder` finds in a model folder."""

    path: Path
    variant: str
    family: str
    cfg: "dsp.DspConfig"
    conv_lookahead: int
    df_lookahead: int
    df_order: int
    manifest: dict | None
    io: dict  # file -> {"inputs": [(name, shape, type)], "outputs": [...]}
    problems: list

    @property
    def delay_frames(self) -> int:
        extra = self.df_lookahead if self.family == "deepfilternet2" else max(0, self.df_lookahead - self.conv_lookahead)
        return self.conv_lookahead + extra

    @property
    def delay_samples(self) -> int:
        return self.delay_frames * self.cfg.hop_size + self.cfg.fft_size - self.cfg.hop_size


def _read_config(path: Path) -> tuple[str, "dsp.DspConfig", int, int, int]:
    cp = configparser.ConfigParser()
    try:
        with open(path) as fh:
            cp.read_file(fh)
        family = cp.get("train", "model", fallback="deepfilternet3").strip()
        g = lambda s, k, d: cp.get(s, k, fallback=str(d)).strip()  # noqa: E731
        sr, fft, hop = int(g("df", "sr", 48000)), int(g("df", "fft_size", 960)), int(g("df", "hop_size", 480))
        nb_erb, nb_df = int(g("df", "nb_erb", 32)), int(g("df", "nb_df", 96))
        min_f = int(g("df", "min_nb_erb_freqs", 2))
        tau = float(g("df", "norm_tau", 1))
        sec = "deepfilternet" if family == "deepfilternet3" else "deepfilternet"
        order = int(cp.get("df", "df_order", fallback=cp.get(sec, "df_order", fallback="5")))
        dfl = int(cp.get("df", "df_lookahead", fallback=cp.get(sec, "df_lookahead", fallback="0")))
        conv_la = int(g(sec, "conv_lookahead", 0))
    except (OSError, configparser.Error, ValueError) as e:
        raise ModelFolderError(f"{path} is not a readable DeepFilterNet config.ini ({e}); copy the config.ini "
                               "that came with the model into the folder.") from None
    cfg = dsp.DspConfig.build(sr, fft, hop, nb_erb, nb_df, min_f, tau)
    return family, cfg, conv_la, dfl, order


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several exception types for corrupt files
        msg = str(e).splitlines()[0][:200]
        raise ModelFolderError(f"{path} cannot be loaded by onnxruntime ({msg}); the file is truncated or "
                               "corrupt: re-export the folder (dfnb export ... --force).") from None


def detect_variant(io: dict) -> str:
    """The variant from the graphs' input names (see module docstring)."""
    if "step.onnx" in io:
        return "step"
    enc_in = [i[0] for i in io["enc.onnx"]["inputs"]]
    if "h0" not in enc_in:
        return "stateless"
    if len(enc_in) > 3:
        return "full"
    erb_in = [i[0] for i in io["erb_dec.onnx"]["inputs"]]
    return "gru" if "erb_h0" in erb_in else "h0"


def inspect_folder(folder: Path | str, *, threads: int = 1, sessions: dict | None = None) -> FolderInfo:
    """Check a model folder (files present, loadable, consistent) and describe it. Raises ModelFolderError.

    Notebook: 02_stateful_export
    """
    p = Path(folder)
    if not p.is_dir():
        raise ModelFolderError(f"model folder not found: {p}; export one with `dfnb export --model DeepFilterNet3 "
                               f"--variant full --out {p}` or pass an existing folder.")
    if not (p / "config.ini").is_file():
        raise ModelFolderError(f"{p} has no config.ini; every model folder needs the config.ini of its model.")
    names = ["step.onnx"] if (p / "step.onnx").exists() else list(_FILES3)
    missing = [n for n in names if not (p / n).is_file()]
    if missing:
        raise ModelFolderError(f"{p} is missing {', '.join(missing)}; a model folder holds "
                               f"{', '.join(names)} and config.ini. Re-export it.")
    family, cfg, conv_la, dfl, order = _read_config(p / "config.ini")
    sess = {} if sessions is None else sessions
    io = {}
    for n in names:
        s = sess.setdefault(n, _session(p / n, threads))
        io[n] = {"inputs": [(i.name, i.shape, i.type) for i in s.get_inputs()],
                 "outputs": [(o.name, o.shape, o.type) for o in s.get_outputs()]}
    manifest = None
    if (p / "manifest.json").is_file():
        try:
            manifest = json.loads((p / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise ModelFolderError(f"{p / 'manifest.json'} is not valid JSON ({e}); re-export the folder.") from None
    variant = detect_variant(io)
    info = FolderInfo(p, variant, family, cfg, conv_la, dfl, order, manifest, io, [])
    info.problems = _consistency(info)
    if info.problems:
        raise ModelFolderError(f"{p} is inconsistent: " + "; ".join(info.problems) + ". Re-export the folder "
                               "(dfnb export ... --force) instead of mixing files.")
    return info


def _dim(shape, k):
    try:
        v = shape[k]
    except (IndexError, TypeError):
        return None
    return v if isinstance(v, int) else None


def _consistency(info: FolderInfo) -> list:
    """Files of one model and variant: manifest agrees, and the graphs' shapes fit together and the config."""
    problems = []
    m = info.manifest
    if m is not None:
        if m.get("variant") != info.variant:
            problems.append(f"manifest.json says variant {m.get('variant')!r} but the graphs are {info.variant!r}")
        if m.get("family") and m.get("family") != info.family:
            problems.append(f"manifest.json is for {m.get('family')} but config.ini is for {info.family}")
        for f, meta in m.get("files", {}).items():
            if f.endswith(".onnx") and f in info.io:
                want = [e["name"] for e in meta.get("inputs", [])]
                have = [i[0] for i in info.io[f]["inputs"]]
                if want and want != have:
                    problems.append(f"{f} inputs {have} differ from the manifest's {want} (file from another export)")
    problems += _mixed_files(info)
    if info.variant == "step":
        return problems
    ins = {f: {i[0]: i[1] for i in info.io[f]["inputs"]} for f in _FILES3}
    outs = {o[0]: o[1] for o in info.io["enc.onnx"]["outputs"]}
    emb_enc, emb_erb, emb_df = _dim(outs.get("emb"), 2), _dim(ins["erb_dec.onnx"].get("emb"), 2), _dim(ins["df_dec.onnx"].get("emb"), 2)
    dims = {k: v for k, v in (("enc", emb_enc), ("erb_dec", emb_erb), ("df_dec", emb_df)) if v is not None}
    if len(set(dims.values())) > 1:
        problems.append(f"embedding sizes differ between files {dims} (files of different models)")
    fe = _dim(ins["enc.onnx"].get("feat_erb"), 3)
    if fe is not None and fe != info.cfg.nb_erb:
        problems.append(f"enc.onnx takes {fe} ERB bands but config.ini says nb_erb={info.cfg.nb_erb}")
    fs = _dim(ins["enc.onnx"].get("feat_spec"), 3)
    if fs is not None and fs != info.cfg.nb_df:
        problems.append(f"enc.onnx takes {fs} DF bins but config.ini says nb_df={info.cfg.nb_df}")
    return problems


_BASE_INPUTS = {"enc.onnx": ("feat_erb", "feat_spec"), "erb_dec.onnx": ("emb", "e3", "e2", "e1", "e0"),
                "df_dec.onnx": ("emb", "c0"), "step.onnx": ("spec", "feat_erb", "feat_spec")}


def _config_sizes(path: Path) -> dict:
    """GRU sizes and the DF pathway kernel from config.ini (None when absent or unreadable)."""
    cp = configparser.ConfigParser()
    try:
        cp.read(path)
    except configparser.Error:
        return {}
    out = {}
    for k in ("emb_hidden_dim", "df_hidden_dim", "df_num_layers", "df_pathway_kernel_size_t"):
        try:
            out[k] = int(cp.get("deepfilternet", k))
        except (configparser.Error, ValueError):
            out[k] = None
    return out


def _gru_sizes(path: Path) -> set:
    """``hidden_size`` of every GRU node of an ONNX file (empty when the ``onnx`` package or the file cannot tell)."""
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 -- optional check; onnxruntime has already loaded the file
        return set()
    return {a.i for n in graph.node if n.op_type == "GRU" for a in n.attribute if a.name == "hidden_size"}


def _mixed_files(info: FolderInfo) -> list:
    """Files that do not belong together although their input names fit each other: config.ini against the
    manifest (values and sha256 of every file), GRU state sizes against config.ini, and the state inputs of
    the three files against each other (which also catches mixed variants in folders without a manifest)."""
    problems = []
    m, p = info.manifest, info.path
    if m is not None:
        have = {"sr": info.cfg.sr, "fft_size": info.cfg.fft_size, "hop_size": info.cfg.hop_size,
                "nb_erb": info.cfg.nb_erb, "nb_df": info.cfg.nb_df, "df_order": info.df_order,
                "conv_lookahead": info.conv_lookahead, "df_lookahead": info.df_lookahead}
        bad = [f"{k}={v} (manifest.json: {m[k]})" for k, v in have.items() if k in m and m[k] != v]
        if bad:
            problems.append(f"config.ini says {', '.join(bad)}: it is the config.ini of another model")
        for f, meta in (m.get("files") or {}).items():
            want = meta.get("sha256") if isinstance(meta, dict) else None
            if want and (p / f).is_file() and sha256_file(p / f) != want:
                problems.append(f"{f} is not the file exported with this manifest.json (sha256 differs)")
    sizes = _config_sizes(p / "config.ini")
    checked = set()
    if info.variant != "step":  # GRU sizes inside the graphs (also for stateless folders, which have no states)
        want = {"enc.onnx": "emb_hidden_dim", "erb_dec.onnx": "emb_hidden_dim", "df_dec.onnx": "df_hidden_dim"}
        for f, key in want.items():
            hs = _gru_sizes(p / f)
            checked |= {f} if hs else set()
            if sizes.get(key) is not None and hs and hs != {sizes[key]}:
                problems.append(f"{f} has GRUs of {sorted(hs)} units but config.ini says {key}={sizes[key]} "
                                "(files of different models)")
    want_units = {"h0": "emb_hidden_dim", "erb_h0": "emb_hidden_dim", "df_h0": "df_hidden_dim"}
    for f, io in info.io.items():  # the GRU states' sizes (step.onnx, or without the onnx package)
        for name, shape, _ in io["inputs"] if f not in checked else []:
            key = want_units.get(name)
            units = _dim(shape, -1) if key else None
            if key and sizes.get(key) is not None and units is not None and units != sizes[key]:
                problems.append(f"{f} state {name} has {units} units but config.ini says {key}={sizes[key]} "
                                "(graphs and config.ini of different models)")
    if info.variant != "step" and all(f in info.io for f in _FILES3):
        st = {f: [i[0] for i in info.io[f]["inputs"] if i[0] not in _BASE_INPUTS[f]] for f in _FILES3}
        dec = st["erb_dec.onnx"] + st["df_dec.onnx"]
        enc_conv = [n for n in st["enc.onnx"] if n != "h0"]
        dec_gru = [n for n in dec if n in ("erb_h0", "df_h0")]
        dec_conv = [n for n in dec if n not in ("erb_h0", "df_h0")]
        if "h0" not in st["enc.onnx"] and dec:
            problems.append(f"enc.onnx carries no state (stateless export) but the decoders carry {dec}")
        elif len(dec_gru) == 1:
            problems.append(f"only one decoder carries its GRU state ({dec_gru[0]}): erb_dec.onnx and df_dec.onnx "
                            "come from different variants")
        elif dec_conv and not enc_conv:
            problems.append(f"the decoders carry conv states {dec_conv} but enc.onnx does not: enc.onnx comes from "
                            "an h0/gru export, the decoders from a full one")
        elif enc_conv and (not dec_gru or (not dec_conv and (sizes.get("df_pathway_kernel_size_t") or 1) > 1)):
            problems.append("enc.onnx comes from a full export (conv states) but the decoders do not carry "
                            f"{'their conv states' if dec_gru else 'any state'}")
    return problems


def check_feeds(model: Any, feeds: dict) -> None:
    """Check ``feeds`` against the inputs of an onnxruntime session or ``.onnx`` file before ``session.run``.

    Raises :class:`StateError` naming every missing input -- separating the state inputs (``h0``, conv pasts, ...),
    which a stateful folder needs on *every* call (zeros first, then the previous call's ``h1``/``*_next``
    outputs; shapes in ``dfnb inspect``) -- plus unknown names and arrays whose rank, fixed dims or dtype do
    not fit. A bare ``session.run`` only says "Required inputs ([...]) are missing from input feed".

    Notebook: 02_stateful_export
    """
    sess = model if hasattr(model, "get_inputs") else _session(Path(model), 1)
    label = Path(model).name if isinstance(model, (str, Path)) else "the session"
    base = {n for names in _BASE_INPUTS.values() for n in names}
    inputs = {i.name: i for i in sess.get_inputs()}
    problems = []
    missing = [n for n in inputs if n not in feeds]
    states = [n for n in missing if n not in base]
    if states:
        problems.append(f"state input(s) {states} are missing: feed zeros of shape "
                        f"{[list(inputs[n].shape) for n in states]} on the first call and the previous call's "
                        "matching outputs (h1, *_next) after that")
    if len(missing) > len(states):
        problems.append(f"input(s) {[n for n in missing if n in base]} are missing")
    unknown = sorted(set(feeds) - set(inputs))
    if unknown:
        problems.append(f"{unknown} are not inputs of this graph (its inputs: {list(inputs)})")
    for n, v in feeds.items():
        if n not in inputs:
            continue
        a, shape = np.asarray(v), inputs[n].shape
        fixed_ok = a.ndim == len(shape) and all(not isinstance(d, int) or d == s for d, s in zip(shape, a.shape))
        if not fixed_ok or (inputs[n].type == "tensor(float)" and a.dtype != np.float32):
            problems.append(f"{n} must be {'float32' if inputs[n].type == 'tensor(float)' else inputs[n].type} "
                            f"{list(shape)}, got {a.dtype} {list(a.shape)}")
    if problems:
        raise StateError(f"{label}: " + "; ".join(problems) + ". `dfnb inspect <folder>` lists every input and state.")


class Host:
    """A realtime host for one exported folder: ``process(samples)`` per call, ``flush()``, ``reset()``.

    Notebook: 02_stateful_export
    """

    def __init__(self, folder: Path | str, *, threads: int = 1, per_call_offline: bool = False,
                 reset_dsp: bool = False):
        self.per_call_offline = bool(per_call_offline)
        self.reset_dsp = bool(reset_dsp)
        self.sessions: dict = {}
        self.info = inspect_folder(folder, threads=threads, sessions=self.sessions)
        self.variant = self.info.variant
        self.cfg = self.info.cfg
        self.family = self.info.family
        self.L, self.dfl, self.order = self.info.conv_lookahead, self.info.df_lookahead, self.info.df_order
        if self.per_call_offline and self.variant == "step":
            raise StateError("per_call_offline needs a three-file folder (enc/erb_dec/df_dec), not a step folder.")
        self.delay_frames = 0 if self.per_call_offline else self.info.delay_frames
        self.delay_samples = self.delay_frames * self.cfg.hop_size + self.cfg.fft_size - self.cfg.hop_size
        self._inv = np.repeat(np.eye(self.cfg.nb_erb, dtype=np.float32), self.cfg.erb_widths, axis=1)  # [E, F]
        self._state_io = self._collect_state_io()
        self.reset()

    # -- states --------------------------------------------------------------------------------------
    def _collect_state_io(self) -> dict:
        """file -> list of (input name, output name, shape) of the carried model states."""
        out = {}
        for f, s in self.sessions.items():
            ins = s.get_inputs()
            base = {"enc.onnx": 2, "erb_dec.onnx": 5, "df_dec.onnx": 2, "step.onnx": 3}[f]
            outs = [o.name for o in s.get_outputs()]
            n_base_out = {"enc.onnx": 7, "erb_dec.onnx": 1, "df_dec.onnx": 1, "step.onnx": 2}[f]
            pairs = []
            for i, o in zip(ins[base:], outs[n_base_out:]):
                if any(not isinstance(d, int) for d in i.shape):
                    raise ModelFolderError(f"{f}: state input {i.name} has a symbolic shape {i.shape}; re-export.")
                pairs.append((i.name, o, tuple(i.shape)))
            out[f] = pairs
        return out

    def reset(self) -> None:
        """Back to the initial state: zero model states, fresh DSP state, warm-up restarted."""
        self.states = {i: np.zeros(shape, np.float32) for pairs in self._state_io.values() for i, _, shape in pairs}
        self.dsp_state = dsp.DspState.initial(self.cfg)
        self.n_in = 0
        self.samples_in = 0  # samples given to process() since reset: names the time of a bad sample
        self.lsnr_trace: list = []  # exact hosts: the encoder's lsnr per frame, in order (offline's lsnr probe)
        f, o = self.cfg.freq_bins, self.order
        if self.family == "deepfilternet3":
            self.spec_buf = np.zeros((self.L + o - self.dfl, f), np.complex64)
        else:
            self.spec_buf = np.zeros((self.L + 1, f), np.complex64)
            self.masked_buf = np.zeros((o, f), np.complex64)
            self.coef_buf = np.zeros((self.dfl + 1, o, self.cfg.nb_df), np.complex64)

    def set_state(self, name: str, value: np.ndarray) -> None:
        """Set one carried model state (e.g. ``h0``), checking its shape and dtype."""
        if name not in self.states:
            raise StateError(f"{name!r} is not a state of this {self.variant} folder; its states are "
                             f"{sorted(self.states)}.")
        v = np.asarray(value)
        want = self.states[name].shape
        if v.shape != want or v.dtype != np.float32:
            raise StateError(f"state {name!r} must be float32 of shape {list(want)}, got {v.dtype} {list(v.shape)}; "
                             "use the shape listed by `dfnb inspect` (manifest.json).")
        self.states[name] = v

    def _run(self, f: str, feeds: dict) -> dict:
        s = self.sessions[f]
        pairs = self._state_io[f]
        for i, _, _ in pairs:
            feeds[i] = self.states[i]
        names = [o.name for o in s.get_outputs()]
        res = dict(zip(names, s.run(None, feeds)))
        for i, o, _ in pairs:
            self.states[i] = res[o]
        return res

    # -- model over frames ---------------------------------------------------------------------------
    def _model(self, fe: np.ndarray, fs: np.ndarray):
        """Run the three graphs on features ``[T, E]``, ``[T, Fdf]`` (complex); return m ``[T, E]``, coefs
        ``[T, O, Fdf]`` (complex) and lsnr ``[T]``."""
        feat_erb = fe[None, None].astype(np.float32)
        feat_spec = np.stack([fs.real, fs.imag], 0)[None].astype(np.float32)
        enc = self._run("enc.onnx", {"feat_erb": feat_erb, "feat_spec": feat_spec})
        m = self._run("erb_dec.onnx", {k: enc[k] for k in ("emb", "e3", "e2", "e1", "e0")})["m"][0, 0]
        c = self._run("df_dec.onnx", {"emb": enc["emb"], "c0": enc["c0"]})["coefs"][0]  # [T, Fdf, O*2]
        c = c.reshape(c.shape[0], c.shape[1], self.order, 2)
        coefs = (c[..., 0] + 1j * c[..., 1]).transpose(0, 2, 1).astype(np.complex64)
        return m, coefs, enc["lsnr"][0, :, 0]

    def _mask(self, spec: np.ndarray, m: np.ndarray) -> np.ndarray:
        return (spec * (m @ self._inv)).astype(np.complex64)

    def _df(self, window: np.ndarray, coefs: np.ndarray, base: np.ndarray) -> np.ndarray:
        out = base.copy()
        out[: self.cfg.nb_df] = np.sum(window[:, : self.cfg.nb_df] * coefs, axis=0)
        return out

    # -- each call as an offline file -------------------------------------------------------------------
    def _naive_call(self, samples: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if self.reset_dsp:  # a host calling libdf's analysis()/erb_norm per call: DSP state reset each time
            spec, fe, fs = dsp.offline_features(cfg, samples)
        else:  # a host keeping its DSP state (libDF's DFState does), only the model starts from scratch
            spec = dsp.analysis_frames(cfg, self.dsp_state, samples)
            fe, fs = dsp.features_frames(cfg, self.dsp_state, spec)
        t = spec.shape[0]
        z = lambda a: np.concatenate([a[self.L:], np.zeros((min(self.L, t),) + a.shape[1:], a.dtype)])  # noqa: E731
        m, coefs, lsnr = self._model(z(fe)[:t], z(fs)[:t])
        self.last_lsnr = lsnr
        o, dfl = self.order, self.dfl
        src = spec if self.family == "deepfilternet3" else self._mask(spec, m)
        pad = np.concatenate([np.zeros((o - 1 - dfl, cfg.freq_bins), np.complex64), src,
                              np.zeros((dfl, cfg.freq_bins), np.complex64)])
        base = self._mask(spec, m) if self.family == "deepfilternet3" else src
        out = np.stack([self._df(pad[i : i + o], coefs[i], base[i]) for i in range(t)])
        if self.reset_dsp:
            return dsp.offline_synthesis(cfg, out)
        return dsp.synthesis_frames(cfg, self.dsp_state, out)

    # -- exact hosts -----------------------------------------------------------------------------------
    def _stage(self, spec_n: np.ndarray, m_t, coefs_t):
        """Numpy mirror of StepModel's last stage for one hop; returns the output frame or None (warm-up)."""
        valid = self.n_in >= self.L
        self.n_in += 1
        self.spec_buf = np.roll(self.spec_buf, -1, axis=0)
        self.spec_buf[-1] = spec_n
        if not valid:
            return None
        r, o, dfl = len(self.spec_buf), self.order, self.dfl
        spec_m = self._mask(self.spec_buf[r - 1 - self.L], m_t)
        if self.family == "deepfilternet3":
            lo = r - 1 - self.L - (o - 1 - dfl)
            return self._df(self.spec_buf[lo : lo + o], coefs_t, spec_m)
        self.masked_buf = np.roll(self.masked_buf, -1, axis=0)
        self.masked_buf[-1] = spec_m
        self.coef_buf = np.roll(self.coef_buf, -1, axis=0)
        self.coef_buf[-1] = coefs_t
        if self.n_in <= self.L + dfl:
            return None
        return self._df(self.masked_buf, self.coef_buf[0], self.masked_buf[o - 1 - dfl])

    def _full_frames(self, spec: np.ndarray, fe: np.ndarray, fs: np.ndarray) -> list:
        skip = max(0, min(self.L - self.n_in, len(spec)))  # warm-up frames never reach the encoder
        res: list = []
        if len(spec) > skip:
            m, coefs, lsnr = self._model(fe[skip:], fs[skip:])
            self.last_lsnr = lsnr
            self.lsnr_trace.extend(float(v) for v in lsnr)
        for i in range(len(spec)):
            j = i - skip
            res.append(self._stage(spec[i], m[j] if j >= 0 else None, coefs[j] if j >= 0 else None))
        return res

    def _step_frames(self, spec: np.ndarray, fe: np.ndarray, fs: np.ndarray) -> list:
        res = []
        f = self.cfg.freq_bins
        for i in range(len(spec)):
            x = np.stack([spec[i].real, spec[i].imag], -1).astype(np.float32).reshape(1, 1, 1, f, 2)
            e = fe[i].astype(np.float32).reshape(1, 1, 1, -1)
            s = np.stack([fs[i].real, fs[i].imag], -1).astype(np.float32).reshape(1, 1, 1, -1, 2)
            out = self._run("step.onnx", {"spec": x, "feat_erb": e, "feat_spec": s})
            self.n_in += 1
            self.last_lsnr = out["lsnr"].reshape(-1)
            if self.n_in > self.L:
                self.lsnr_trace.append(float(self.last_lsnr[0]))
            if self.n_in > self.delay_frames:
                y = out["enh"].reshape(f, 2)
                res.append((y[:, 0] + 1j * y[:, 1]).astype(np.complex64))
            else:
                res.append(None)
        return res

    def _exact(self, spec, fe, fs) -> np.ndarray:
        frames = (self._step_frames if self.variant == "step" else self._full_frames)(spec, fe, fs)
        h = self.cfg.hop_size
        out = [dsp.synthesis(self.cfg, self.dsp_state, y) if y is not None else np.zeros(h, np.float32)
               for y in frames]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    # -- public --------------------------------------------------------------------------------------
    def process(self, samples: np.ndarray) -> np.ndarray:
        """One host call on whole hops (``len(samples)`` a multiple of ``hop_size``); same number of samples out."""
        x = np.asarray(samples)
        h = self.cfg.hop_size
        if x.ndim != 1 or len(x) % h or len(x) == 0:
            raise StateError(f"a host call takes a 1-D float32 block of whole hops (multiples of {h} samples), "
                             f"got shape {list(x.shape)}; buffer your audio into {h}-sample hops.")
        # the audio gate (AudioError): a NaN/Inf would otherwise poison every later call's states
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            i = int(np.argmin(np.isfinite(x)))
            k = self.samples_in + i
            raise AudioError(f"host call: stream sample {k} (at {k / self.cfg.sr:.3f} s; sample {i} of this call) is "
                             f"{'NaN' if np.isnan(x[i]) else 'Inf'}; nothing of this call reached the model. Replace "
                             "bad samples (e.g. np.nan_to_num) before passing them in.")
        x = audio_mod.check_audio(x, self.cfg.sr, name="host call")
        self.samples_in += len(x)
        if not self.per_call_offline:
            spec = dsp.analysis_frames(self.cfg, self.dsp_state, x)
            fe, fs = dsp.features_frames(self.cfg, self.dsp_state, spec)
            return self._exact(spec, fe, fs)
        return self._naive_call(x)

    def flush(self) -> np.ndarray:
        """Drain the lookahead: zero spectrum and features, as offline padding does at the end of a file."""
        n = self.delay_frames
        if n == 0:
            return np.zeros(0, np.float32)
        f = self.cfg.freq_bins
        spec = np.zeros((n, f), np.complex64)
        return self._exact(spec, np.zeros((n, self.cfg.nb_erb), np.float32), np.zeros((n, self.cfg.nb_df), np.complex64))


def host_enhance(folder: Path | str, audio: np.ndarray, *, chunk: int = 1, threads: int = 1,
                 host: Host | None = None, per_call_offline: bool = False, reset_dsp: bool = False) -> np.ndarray:
    """Enhance 48 kHz mono ``audio`` through ``folder`` in calls of ``chunk`` hops; output aligned, same length.

    Notebook: 02_stateful_export
    """
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise DfnbError(f"chunk must be a positive number of hops, got {chunk!r}.")
    h = host or Host(folder, threads=threads, per_call_offline=per_call_offline, reset_dsp=reset_dsp)
    h.reset()
    x = audio_mod.check_audio(audio, h.cfg.sr)  # same gate as enhance_offline: AudioError, never a crash
    hop, fft = h.cfg.hop_size, h.cfg.fft_size
    padded = np.concatenate([x, np.zeros(fft, np.float32)])
    n = len(padded) // hop
    padded = padded[: n * hop]
    outs = [h.process(padded[i * hop : min(n, i + chunk) * hop]) for i in range(0, n, chunk)]
    y = np.concatenate(outs + [h.flush()])
    d = h.delay_samples
    y = y[d : d + len(x)]
    if len(y) < len(x):
        y = np.concatenate([y, np.zeros(len(x) - len(y), np.float32)])
    return y
