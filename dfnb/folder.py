"""Read and check a model folder before anything runs it: files, config, manifest, graphs — torch-free.

A folder holds ``config.ini`` and either ``step.onnx`` or ``enc.onnx`` + ``erb_dec.onnx`` + ``df_dec.onnx``
(plus ``manifest.json`` when dfnb exported it). :func:`inspect_folder` loads every graph with onnxruntime,
detects the variant from the graphs' inputs (as a Rust host decides: ``step.onnx`` → ``step``; an ``h0`` input
on ``enc.onnx`` → stateful, plus ``erb_h0`` on ``erb_dec.onnx`` → ``gru``, plus conv-state inputs → ``full``;
none → ``stateless``), builds the state :class:`~dfnb.layout.Layout` from ``config.ini`` and runs
:func:`folder_checks`: the graphs carry exactly the states that layout says the variant carries, with the
shapes it says; what the graphs themselves hold (sizes, kernels, GRUs, lookahead, constants:
:mod:`dfnb.graphcheck`) agrees with ``config.ini``; the manifest agrees with the files (sha256, values); files
of different models or variants are not mixed. Anything wrong raises :class:`~dfnb.errors.ModelFolderError`
before a single sample is processed; the config values no check could confirm are listed in
``FolderInfo.unverified`` (and by ``dfnb inspect``) with the reason.

Running a folder is the job of :mod:`dfnb.hosts`; this module only reads and checks.

Notebook: 02_stateful_export
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import dsp
from .args import check_int, check_path, shown
from .assets import sha256_file
from .errors import ModelFolderError, StateError
from .graphcheck import CONFIG_KEYS, WHY_UNVERIFIED, graph_checks
from .layout import BASE_IO, FILES3, MANIFEST_FORMAT, VARIANTS, Layout, ModelConfig, StateDesc

__all__ = ["FolderInfo", "inspect_folder", "folder_checks", "detect_variant", "check_feeds", "open_session"]


@dataclass
class FolderInfo:
    """What :func:`inspect_folder` finds in a model folder."""

    path: Path
    variant: str
    config: ModelConfig
    cfg: dsp.DspConfig
    layout: Layout
    manifest: dict | None
    io: dict  # file -> {"inputs": [(name, shape, type)], "outputs": [...]}
    sessions: dict = field(default_factory=dict, repr=False)
    unverified: list = field(default_factory=list)
    verified: set = field(default_factory=set)

    def confirm(self, *keys: str) -> None:
        """Mark config.ini keys as confirmed by a check (see :func:`folder_checks`)."""
        self.verified.update(keys)

    @property
    def unverified_keys(self) -> list[str]:
        """The config.ini keys no check could confirm (each one is explained in ``unverified``)."""
        return [k for k in CONFIG_KEYS if k not in self.verified]

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def conv_lookahead(self) -> int:
        return self.config.conv_lookahead

    @property
    def df_lookahead(self) -> int:
        return self.config.df_lookahead

    @property
    def df_order(self) -> int:
        return self.config.df_order

    @property
    def delay_frames(self) -> int:
        return self.layout.delay_frames

    @property
    def delay_samples(self) -> int:
        return self.layout.delay_samples

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.io)

    @property
    def packed(self) -> bool:
        """A :func:`dfnb.surgery.pack_states` folder: every state in one flat ``state`` tensor."""
        return self.variant == "step" and "packed_layout" in (self.manifest or {})

    @property
    def carried(self) -> list[StateDesc]:
        """The states the graphs take as inputs and return as outputs, in graph order (fed by name)."""
        if self.packed:
            total = sum(int(e["size"]) for e in self.manifest["packed_layout"])
            return [StateDesc("state", (total,), "packed", "step")]
        return self.layout.for_variant(self.variant)

    def graph_io(self) -> dict[str, tuple[list[str], list[str]]]:
        """File -> (input names, output names) the graphs of this folder must have."""
        if self.packed:
            ins, outs = BASE_IO["step.onnx"]
            return {"step.onnx": ([*ins, "state"], [*outs, "state_next"])}
        return self.layout.graph_io(self.variant)


def open_session(path: Path | str, threads: int = 1, config: dict | None = None, *, model: Any = None):
    """An onnxruntime CPU session for one graph (``model``: serialized bytes instead of the file), one line of
    :class:`~dfnb.errors.ModelFolderError` when the file cannot be loaded."""
    import onnxruntime as ort

    threads = check_int(threads, "threads", error=ModelFolderError, hint="onnxruntime intra-op threads, e.g. 1")
    if model is None:
        path = check_path(path, "path", error=ModelFolderError, what="the path of an .onnx file")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, str(v))
    try:
        return ort.InferenceSession(model if model is not None else str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 -- onnxruntime raises several exception types for corrupt files
        msg = str(e).splitlines()[0][:200]
        raise ModelFolderError(f"{path} cannot be loaded by onnxruntime ({msg}); the file is truncated or "
                               "corrupt: re-export the folder (dfnb export ... --force).") from None


def detect_variant(io: dict) -> str:
    """The variant from the graphs' input names (see the module docstring)."""
    if "step.onnx" in io:
        return "step"
    enc_in = [i[0] for i in io["enc.onnx"]["inputs"]]
    if "h0" not in enc_in:
        return "stateless"
    if any(n not in ("feat_erb", "feat_spec", "h0") for n in enc_in):
        return "full"
    erb_in = [i[0] for i in io["erb_dec.onnx"]["inputs"]]
    return "gru" if "erb_h0" in erb_in else "h0"


def _read_manifest(p: Path) -> dict | None:
    mp = p / "manifest.json"
    if not mp.is_file():
        return None
    try:
        man = json.loads(mp.read_text())
    except (OSError, ValueError) as e:
        raise ModelFolderError(f"{mp} is not valid JSON ({e}); re-export the folder.") from None
    if not isinstance(man, dict) or not isinstance(man.get("states", []), list) or \
            not isinstance(man.get("files", {}), dict):
        raise ModelFolderError(f"{mp} is not a dfnb manifest (a JSON object with 'files' and 'states'; got "
                               f"{type(man).__name__}); remove it or re-export the folder.")
    if man.get("format") not in (None, MANIFEST_FORMAT):
        raise ModelFolderError(f"{mp} has format {man.get('format')!r}; this dfnb reads {MANIFEST_FORMAT!r}. "
                               "Re-export the folder with this dfnb version.")
    return man


def inspect_folder(folder: Path | str, *, threads: int = 1, sessions: dict | None = None) -> FolderInfo:
    """Check a model folder (files present, loadable, consistent) and describe it.

    Parameters
    ----------
    folder : path
        A dfnb export or an upstream-style three-file folder with its ``config.ini``.
    threads : int
        onnxruntime intra-op threads of the sessions opened here (kept in ``info.sessions`` for a host).

    Returns
    -------
    FolderInfo
        Variant, config, layout, manifest, every graph's inputs/outputs; ``unverified`` lists what could not
        be checked against the graphs.

    Raises
    ------
    ModelFolderError
        Missing/corrupt files, an incomplete config.ini, or files that do not belong together.

    Examples
    --------
    >>> info = inspect_folder("models/dfn3_h0")  # doctest: +SKIP
    >>> info.variant, info.delay_samples  # doctest: +SKIP
    ('h0', 1440)

    Notebook: 02_stateful_export
    """
    p = check_path(folder, "folder", error=ModelFolderError, what="the path of a model folder")
    threads = check_int(threads, "threads", error=ModelFolderError, hint="onnxruntime intra-op threads, e.g. 1")
    if not p.is_dir():
        raise ModelFolderError(f"model folder not found: {p}; export one with `dfnb export --model DeepFilterNet3 "
                               f"--variant full --out {p}` or pass an existing folder.")
    if not (p / "config.ini").is_file():
        raise ModelFolderError(f"{p} has no config.ini; every model folder needs the config.ini of its model.")
    names = ["step.onnx"] if (p / "step.onnx").exists() else list(FILES3)
    missing = [n for n in names if not (p / n).is_file()]
    if missing:
        raise ModelFolderError(f"{p} is missing {', '.join(missing)}; a model folder holds "
                               f"{', '.join(names)} and config.ini. Re-export it.")
    config = ModelConfig.read(p / "config.ini")
    try:
        cfg = dsp.DspConfig.build(config.sr, config.fft_size, config.hop_size, config.nb_erb, config.nb_df,
                                  config.min_nb_erb_freqs, config.norm_tau)
    except Exception as e:  # noqa: BLE001 -- libdf panics on impossible sizes; say which file is wrong
        raise ModelFolderError(f"{p / 'config.ini'} describes an impossible STFT/ERB layout ({e}); use the "
                               "config.ini that came with the model.") from None
    manifest = _read_manifest(p)
    sess = {} if sessions is None else sessions
    io = {}
    for n in names:
        s = sess.setdefault(n, open_session(p / n, threads))
        io[n] = {"inputs": [(i.name, i.shape, i.type) for i in s.get_inputs()],
                 "outputs": [(o.name, o.shape, o.type) for o in s.get_outputs()]}
    info = FolderInfo(p, detect_variant(io), config, cfg, Layout.of(config), manifest, io, sess)
    problems = [msg for check in folder_checks(info) for msg in check(info)]
    if problems:
        raise ModelFolderError(f"{p} is inconsistent: " + "; ".join(problems) + ". Re-export the folder "
                               "(dfnb export ... --force) instead of mixing files or editing config.ini.")
    for key in info.unverified_keys:
        info.unverified.append(f"config.ini {key} = {_value(config, key)}: "
                               f"{WHY_UNVERIFIED.get(key, 'no check could read it from the graphs')}")
    return info


def folder_checks(info: FolderInfo) -> list:
    """Every check :func:`inspect_folder` runs, in order: the graph facts (:func:`dfnb.graphcheck.graph_checks`),
    the graphs' inputs/outputs against the layout, the manifest. Each takes the :class:`FolderInfo`, returns its
    problems and confirms the config keys it verified (``info.confirm``); a later check (e.g. "these weights are
    release X, so config.ini must be X's") is one more entry here.

    Notebook: 02_stateful_export
    """
    return [*graph_checks(info), _check_graph_io, _check_manifest]


def _value(config: ModelConfig, key: str) -> str:
    v = config.family if key == "model" else getattr(config, key)
    return ",".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)


def _dim_ok(have: Any, want: int) -> bool:
    return not isinstance(have, int) or have == want or (have in (0, -1))


def _check_graph_io(info: FolderInfo) -> list[str]:
    """Every graph carries exactly the states the layout gives its variant, with the layout's shapes, and takes
    the feature sizes config.ini says (this is what catches a mixed folder or an edited config.ini)."""
    problems = []
    want = info.graph_io()
    shapes = {d.io[0]: d.shape for d in info.carried}
    c = info.config
    base_shape = {"feat_erb": (1, 1, None, c.nb_erb), "feat_spec": (1, 2, None, c.nb_df)}
    if info.variant == "step":
        base_shape = {"spec": (1, 1, 1, c.fft_size // 2 + 1, 2), "feat_erb": (1, 1, 1, c.nb_erb),
                      "feat_spec": (1, 1, 1, c.nb_df, 2)}
    mixed = _mixed_variants(info)
    if mixed:
        return [mixed]
    states = {n for v in VARIANTS for i, o in info.layout.graph_io(v).values() for n in (*i, *o)}
    for f, (ins, outs) in want.items():
        have_in = [i[0] for i in info.io[f]["inputs"]]
        have_out = [o[0] for o in info.io[f]["outputs"]]
        unread = {n for n in set(have_out) - set(outs) if n not in states}  # e.g. the releases' df_dec alpha output
        if set(have_in) != set(ins) or set(have_out) - unread != set(outs):
            extra = sorted(set(have_in) - set(ins)) + sorted(set(have_out) - set(outs))
            lack = sorted(set(ins) - set(have_in)) + sorted(set(outs) - set(have_out))
            problems.append(f"{f} does not have the inputs/outputs of a {info.variant} export of this config.ini "
                            f"(unexpected: {extra or 'none'}; missing: {lack or 'none'})")
            continue
        for name, shape, _ in info.io[f]["inputs"]:
            exp = shapes.get(name) or base_shape.get(name)
            if exp is None:
                continue
            if len(shape) != len(exp) or not all(w is None or _dim_ok(h, w) for h, w in zip(shape, exp)):
                problems.append(f"{f} input {name} has shape {list(shape)} but config.ini gives "
                                f"{[('T' if w is None else w) for w in exp]} (graphs and config.ini of different "
                                "models, or an edited config.ini)")
    return problems


def _mixed_variants(info: FolderInfo) -> str:
    """For a three-file folder whose files carry the states of different variants: which file comes from which
    export (each file's inputs/outputs compared with every variant's), or "" when they agree."""
    if info.variant == "step":
        return ""
    fits = {}
    for f in FILES3:
        names = ({i[0] for i in info.io[f]["inputs"]}, {o[0] for o in info.io[f]["outputs"]})
        fits[f] = tuple(v for v in VARIANTS[:-1]
                        if names == tuple(set(n) for n in info.layout.graph_io(v)[f]))
    common = set.intersection(*(set(v) for v in fits.values()))
    if common or not all(fits.values()):
        return ""  # consistent, or a file fitting no variant at all (reported by the caller)

    def art(vs):
        return f"{'an' if vs[0] in ('h0',) else 'a'} {'/'.join(vs)}"

    parts = [f"{f} comes from {art(v)} export" for f, v in fits.items()]
    return ", ".join(parts) + ": files of different variants"


def _check_manifest(info: FolderInfo) -> list[str]:
    m, p = info.manifest, info.path
    if m is None:
        info.unverified.append("no manifest.json: sha256 of the files, the weights' origin and the export's "
                               "verification cannot be checked")
        return []
    problems = []
    if m.get("variant") != info.variant:
        problems.append(f"manifest.json says variant {m.get('variant')!r} but the graphs are {info.variant!r}")
    if m.get("family") and m.get("family") != info.family:
        problems.append(f"manifest.json is for {m.get('family')} but config.ini is for {info.family}")
    c = info.config
    have = {"sr": c.sr, "fft_size": c.fft_size, "hop_size": c.hop_size, "nb_erb": c.nb_erb, "nb_df": c.nb_df,
            "df_order": c.df_order, "conv_lookahead": c.conv_lookahead, "df_lookahead": c.df_lookahead}
    bad = [f"{k}={v} (manifest.json: {m[k]})" for k, v in have.items() if k in m and m[k] != v]
    if bad:
        problems.append(f"config.ini says {', '.join(bad)}: it is the config.ini of another model or was edited")
    matched = set()
    for f, meta in (m.get("files") or {}).items():
        want = meta.get("sha256") if isinstance(meta, dict) else None
        if want and (p / f).is_file():
            if sha256_file(p / f) != want:
                problems.append(f"{f} is not the file exported with this manifest.json (sha256 differs)")
            else:
                matched.add(f)
    if not problems and "config.ini" in matched and set(info.files) <= matched:
        info.confirm(*CONFIG_KEYS)  # the very config.ini and graphs dfnb exported and verified together
    return problems


def check_feeds(model: Any, feeds: dict) -> None:
    """Check ``feeds`` against the inputs of an onnxruntime session or ``.onnx`` file before ``session.run``.

    Raises :class:`StateError` naming every missing input -- separating the state inputs (``h0``, conv pasts, ...),
    which a stateful folder needs on *every* call (zeros first, then the previous call's ``h1``/``*_next``
    outputs; shapes in ``dfnb inspect``) -- plus unknown names and arrays whose rank, fixed dims or dtype do
    not fit. A bare ``session.run`` only says "Required inputs ([...]) are missing from input feed".

    Notebook: 02_stateful_export
    """
    if not hasattr(model, "get_inputs"):
        model = check_path(model, "model", error=StateError, what="an onnxruntime session or the path of an .onnx file")
    if not isinstance(feeds, dict):
        raise StateError(f"feeds must be a dict of input name -> array, got {shown(feeds)}.")
    sess = model if hasattr(model, "get_inputs") else open_session(model, 1)
    label = model.name if isinstance(model, Path) else "the session"
    base = {n for ins, _ in BASE_IO.values() for n in ins}
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
