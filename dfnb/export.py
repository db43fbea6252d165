"""Export a DeepFilterNet model to an ONNX folder, in one of five variants, verified and moved into place atomically.

==============  ======================================================================================
variant         what is in the folder (all: ``config.ini`` + ``manifest.json``)
==============  ======================================================================================
``stateless``   ``enc.onnx``, ``erb_dec.onnx``, ``df_dec.onnx`` with upstream names and a dynamic time axis
                ``S`` (what DeepFilterNet's own export script produces): every call starts from zero state.
``h0``          the seed contract: ``enc.onnx`` inputs ``feat_erb [1,1,S,E]``, ``feat_spec [1,2,S,Fdf]``,
                ``h0 [1,1,H]``; outputs ``e0, e1, e2, e3, emb, c0, lsnr, h1``; decoders as upstream.
``gru``         ``h0`` plus the decoders' GRU states (``erb_h0 -> erb_h1``, ``df_h0 -> df_h1``).
``full``        every model-side state explicit in the same three files (GRU states and the causal convs'
                past frames, ``<name> -> <name>_next``); the host keeps the DSP state, the lookahead and the
                deep-filter spectrum buffer (all described in the manifest). Exact.
``step``        ``step.onnx``: one graph per hop. Boundary = STFT frames: in ``spec [1,1,1,F,2]`` (noisy
                frame of hop n) + its features + every state; out ``enh [1,1,1,F,2]`` (enhanced frame
                ``n - delay_frames``), ``lsnr`` and every next state. The host does STFT + feature
                normalisation (numpy, :mod:`dfnb.dsp`). Exact.
==============  ======================================================================================

Exports are built in a temporary sibling folder, checked (``onnx.checker`` and onnxruntime against PyTorch on
real features, two consecutive chunks so that state hand-over is checked too), and only then moved into
place atomically (:mod:`dfnb.placement`); an existing folder is replaced only with ``force=True`` and only if
dfnb wrote it (a dfnb export or import). A run killed midway leaves the previous folder intact; the next run
removes the stray temporary folder. The three-file variants use the legacy
TorchScript exporter (``dynamo=False``) because it keeps a dynamic time axis for the GRUs.

Notebook: 02_stateful_export
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, dsp
from .args import check_flag, check_int, check_path, shown
from .assets import sha256_file as _sha256
from .errors import ArgumentError, ExportError
from .layout import BASE_IO, MANIFEST_FORMAT, VARIANTS, Layout, StateDesc
from .placement import building_folder
from .surgery import graph_io_entries

__all__ = ["VARIANTS", "SHORT_NAMES", "default_folder", "export_model", "model_sources", "OPSET"]

SHORT_NAMES = {"DeepFilterNet3": "dfn3", "DeepFilterNet2": "dfn2", "DeepFilterNet3_ll": "dfn3_ll",
               "DeepFilterNet2_ll": "dfn2_ll"}
OPSET = 17
VERIFY_CLIP = "vb_p232_013"  # real speech used to verify every export against PyTorch


def default_folder(model_name: str, variant: str, root: Path | str = "models", *, streams: int | None = None,
                   precision: str | None = None) -> Path:
    """``models/dfn3_h0`` and friends: the seed's folder names; a batched step export adds ``_b<streams>``
    (``models/dfn3_step_b32``), a reduced-precision one ``_<precision>`` (``models/dfn3_step_int8-dynamic``)."""
    if not isinstance(model_name, str) or not isinstance(variant, str):
        raise ArgumentError(f"default_folder(model_name, variant) takes two names (str), got "
                            f"{shown(model_name)} and {shown(variant)}.")
    short = SHORT_NAMES.get(model_name, model_name.lower())
    suffix = (f"_b{streams}" if streams else "") + (f"_{precision}" if precision else "")
    return check_path(root, "root", what="a folder") / f"{short}_{variant}{suffix}"


# ----------------------------------------------------------------------------------------------------------
# Torch wrappers, one per exported graph
# ----------------------------------------------------------------------------------------------------------
def _part_module(step_model: Any, owner: str, states: list[StateDesc]):
    """A ``torch.nn.Module`` running ``step_model.<owner>`` with the given states as extra inputs/outputs.

    States not listed start from zeros at every call (zero past frames == deepfilternet's zero padding).
    """
    import torch

    class Part(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sub = getattr(step_model, owner)
            self.owner = owner
            mine = [d for d in step_model.descs if d.owner == owner]
            self.all_descs = {d.name: d for d in mine}
            self.names = [d.name for d in states if d.owner == owner]
            self.wrappers = {**{k.replace(".", "_"): w for k, w in step_model.grus.items()},
                             **{k.replace(".", "_"): w for k, w in step_model.convs.items()}}

        def forward(self, *args):
            n_in = len(args) - len(self.names)
            xs, st = args[:n_in], dict(zip(self.names, args[n_in:]))
            for name, d in self.all_descs.items():
                w = self.wrappers[name]
                val = st.get(name)
                if hasattr(w, "k_past"):
                    w.past = val if val is not None else xs[0].new_zeros(d.shape)
                else:
                    w.h = val
            if self.owner == "enc":
                outs = list(self.sub(*xs))
            elif self.owner == "erb_dec":
                outs = [self.sub(*xs)]
            else:
                dec = self.sub(*xs)
                outs = [dec[0] if isinstance(dec, tuple) else dec]
            for name in self.names:
                w = self.wrappers[name]
                outs.append(w.past if hasattr(w, "k_past") else w.h)
            return tuple(outs)

    return Part().eval()


_TIME_AXIS = {"feat_erb": 2, "feat_spec": 2, "e0": 2, "e1": 2, "e2": 2, "e3": 2, "emb": 1, "c0": 2, "lsnr": 1,
              "m": 2, "coefs": 1}


def _example_inputs(spec: Any, feats: dict, t0: int, t1: int) -> dict:
    return {"feat_erb": feats["feat_erb"][:, :, t0:t1], "feat_spec": feats["feat_spec"][:, :, t0:t1]}


def _real_features(loaded: Any, seconds: float = 1.5):
    """Features of a real clip (first ``seconds``), shaped like the encoder's inputs (pad_feat applied)."""
    import torch

    from . import clips

    cfg = dsp.DspConfig.from_spec(loaded.spec)
    x, _ = clips.load_clip(VERIFY_CLIP)
    x = x[: int(seconds * cfg.sr)]
    spec, fe, fs = dsp.offline_features(cfg, x)
    L = loaded.spec.conv_lookahead
    fe_t = torch.from_numpy(fe[L:]).float()[None, None]
    fs_t = torch.from_numpy(np.stack([fs.real, fs.imag], 0)[:, L:]).float()[None]
    return {"feat_erb": fe_t, "feat_spec": fs_t, "spec": spec, "fe": fe, "fs": fs}


# ----------------------------------------------------------------------------------------------------------
# Writing and verifying
# ----------------------------------------------------------------------------------------------------------
def _onnx_export(module, args: tuple, path: Path, in_names: list[str], out_names: list[str],
                 dynamic: dict | None) -> None:
    import warnings

    import torch

    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=in_names, output_names=out_names,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)


def _name_output_dims(path: Path, outputs: dict) -> None:
    """Give the graph outputs readable dims: the time axis ``S`` (as the inputs), every other axis its fixed size.

    The TorchScript exporter names the output dims it cannot infer after the node that made them
    (``Reluemb_dim_0``, ``GRUh1_dim_1``); the sizes are known from the export's own PyTorch run (``outputs``:
    name -> tensor), so they are written in before the graph is verified.
    """
    import onnx

    model = onnx.load(str(path))
    for v in model.graph.output:
        shape = tuple(outputs[v.name].shape)
        for i, d in enumerate(v.type.tensor_type.shape.dim):
            if d.dim_param and d.dim_param != "S":
                if _TIME_AXIS.get(v.name) == i:
                    d.dim_param = "S"
                else:
                    d.dim_value = int(shape[i])  # a dim is a oneof: setting the value drops the generated name
    onnx.save(model, str(path))


def _check_against_torch(path: Path, module, chunks: list[tuple], in_names: list[str], out_names: list[str],
                         n_state: int) -> float:
    """Run two consecutive chunks through ORT and torch, carrying states; return the max abs difference."""
    import onnx
    import onnxruntime as ort
    import torch

    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    states_t = states_o = None
    for xs in chunks:
        st_t = states_t if states_t is not None else xs[len(xs) - n_state:]
        st_o = states_o if states_o is not None else [s.numpy() for s in xs[len(xs) - n_state:]]
        base = xs[: len(xs) - n_state]
        with torch.no_grad():
            out_t = module(*base, *st_t)
        out_o = sess.run(out_names, {n: v for n, v in zip(in_names, [b.numpy() for b in base] + list(st_o))})
        for a, b in zip(out_t, out_o):
            worst = max(worst, float(np.max(np.abs(a.numpy() - b))) if a.numel() else 0.0)
        if n_state:
            states_t = list(out_t[len(out_t) - n_state:])
            states_o = out_o[len(out_o) - n_state:]
    return worst


def _write_three_files(loaded: Any, step_model: Any, variant: str, tmp: Path, feats: dict) -> dict:
    import torch

    states = Layout.of(loaded.spec).for_variant(variant)
    report = {}
    t = feats["feat_erb"].shape[2]
    cut = [(0, t // 2), (t // 2, t)]
    enc_out_chunks: list = []
    for owner in ("enc", "erb_dec", "df_dec"):
        mine = [d for d in states if d.owner == owner]
        mod = _part_module(step_model, owner, states)
        base_in, base_out = (list(n) for n in BASE_IO[f"{owner}.onnx"])
        in_names = base_in + [d.io[0] for d in mine]
        out_names = base_out + [d.io[1] for d in mine]
        zeros = [torch.zeros(d.shape) for d in mine]
        chunks = []
        for k, (a, b) in enumerate(cut):
            if owner == "enc":
                base = [feats["feat_erb"][:, :, a:b], feats["feat_spec"][:, :, a:b]]
                with torch.no_grad():
                    enc_out_chunks.append(_part_module(step_model, "enc", [])(*base))
            else:
                e0, e1, e2, e3, emb, c0, _ = enc_out_chunks[k]
                base = [emb, e3, e2, e1, e0] if owner == "erb_dec" else [emb, c0]
            chunks.append(tuple(base + zeros))
        dyn = {n: {_TIME_AXIS[n]: "S"} for n in base_in + base_out}
        path = tmp / f"{owner}.onnx"
        _onnx_export(mod, chunks[0], path, in_names, out_names, dyn)
        with torch.no_grad():
            _name_output_dims(path, dict(zip(out_names, mod(*chunks[0]))))
        report[path.name] = _check_against_torch(path, mod, chunks, in_names, out_names, len(mine))
    return report


def _write_step(loaded: Any, step_model: Any, tmp: Path, feats: dict) -> dict:
    import torch

    descs = step_model.descs
    in_names, out_names = (list(n) for n in Layout.of(loaded.spec).graph_io("step")["step.onnx"])
    spec, fe, fs = feats["spec"], feats["fe"], feats["fs"]
    f = spec.shape[1]

    def hop(i):
        x = torch.from_numpy(np.stack([spec[i].real, spec[i].imag], -1)).float().view(1, 1, 1, f, 2)
        e = torch.from_numpy(fe[i]).float().view(1, 1, 1, -1)
        s = torch.from_numpy(np.stack([fs[i].real, fs[i].imag], -1)).float().view(1, 1, 1, -1, 2)
        return x, e, s

    zeros = [torch.zeros(d.shape) for d in descs]
    path = tmp / "step.onnx"
    _onnx_export(step_model, (*hop(0), *zeros), path, in_names, out_names, None)
    hops = [(*hop(i), *zeros) for i in range(min(40, spec.shape[0]))]  # 40 consecutive hops, states carried
    return {"step.onnx": _check_against_torch(path, step_model, hops, in_names, out_names, len(descs))}


def _manifest(loaded: Any, variant: str, step_model: Any, tmp: Path, report: dict, seconds: float) -> dict:
    import onnx
    import torch

    spec = loaded.spec
    lay = Layout.of(spec)
    files = sorted(p.name for p in tmp.glob("*.onnx"))
    return {
        "format": MANIFEST_FORMAT,
        "variant": variant,
        "model": loaded.name,
        "family": spec.family,
        "weights": {"source": str(loaded.source), "sha256": loaded.source_sha256},
        "exact": variant in ("full", "step"),
        "sr": spec.sr, "fft_size": spec.fft_size, "hop_size": spec.hop_size,
        "nb_erb": spec.nb_erb, "nb_df": spec.nb_df, "df_order": spec.df_order,
        "conv_lookahead": spec.conv_lookahead, "df_lookahead": spec.df_lookahead, "norm_alpha": spec.norm_alpha,
        # dfnb's host runs every variant with the lookahead delayed (as the seed's Rust pipeline does)
        "delay_frames": lay.delay_frames,
        "delay_samples": lay.delay_samples,
        "files": {f: {"sha256": _sha256(tmp / f), **graph_io_entries(tmp / f)} for f in files}
                 | {"config.ini": {"sha256": _sha256(tmp / "config.ini")}},
        "states": lay.manifest_states(variant),
        "verification": {"max_abs_diff_vs_torch": report, "clip": "first 1.5 s of the default clip"},
        "opset": OPSET,
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "dfnb": __version__,
                     "kind": "torch.onnx.export(dynamo=False) (TorchScript)"},
        "export_seconds": round(seconds, 2),
    }


# ----------------------------------------------------------------------------------------------------------
# Export into place
# ----------------------------------------------------------------------------------------------------------
def export_model(loaded: Any, variant: str, out: Path | str, *, force: bool = False, quiet: bool = True,
                 streams: int | None = None) -> Path:
    """Export a model as one variant into folder ``out``, verified against PyTorch (module docstring).

    The folder is built beside ``out`` and put in place by :func:`dfnb.placement.building_folder` (the
    ``force`` rules and concurrent exports: module docstring).

    Parameters
    ----------
    loaded : dfnb.models.LoadedModel
        The model (:func:`dfnb.models.load_model`, or :func:`dfnb.convert.convert_folder` for another
        pipeline's folder).
    variant : {"stateless", "h0", "gru", "full", "step"}
    out : path
        The folder to create.
    force : bool
        Replace ``out`` if it is a dfnb export or import.
    quiet : bool
        Kept for callers; the exporter's warnings are always silenced.
    streams : int, optional
        ``step`` only: the batched step graph that advances this many streams per call (:mod:`dfnb.batching`).

    Returns
    -------
    pathlib.Path
        ``out``, holding the graphs, ``config.ini`` and ``manifest.json``.

    Raises
    ------
    ExportError
        An unknown variant, ``out`` exists without ``force`` or is not dfnb's, the target is not writable,
        or the export does not match PyTorch (max abs diff > 1e-4).

    Examples
    --------
    >>> export_model(load_model("DeepFilterNet3"), "full", "models/dfn3_full")  # doctest: +SKIP
    PosixPath('models/dfn3_full')

    Notebook: 02_stateful_export
    """
    from .offline import check_loaded
    from .step import StepModel

    check_loaded(loaded, "export_model()")
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ExportError(f"unknown variant {shown(variant)}; choose one of {', '.join(VARIANTS)}.")
    out = check_path(out, "out", error=ExportError, what="the path of the folder to export to")
    force = check_flag(force, "force", error=ExportError)
    if streams is not None and (check_int(streams, "streams", error=ExportError) and variant != "step"):
        raise ExportError(f"streams={streams} needs variant 'step' (dfnb export --variant step --streams N).")
    t0 = time.perf_counter()
    try:
        with building_folder(out, replace=force, sources=model_sources(loaded)) as tmp:
            step_model = StepModel(loaded.net, loaded.spec)
            feats = _real_features(loaded)
            if streams is not None:
                from .batching import write_batched_step

                report, batched = write_batched_step(step_model, tmp, feats, streams, opset=OPSET)
            elif variant == "step":
                report = _write_step(loaded, step_model, tmp, feats)
            else:
                report = _write_three_files(loaded, step_model, variant, tmp, feats)
            worst = max(report.values())
            if not worst <= 1e-4:
                raise ExportError(f"the exported {variant} graphs differ from PyTorch by {worst:.3g} (> 1e-4): "
                                  f"{report}. This is a dfnb bug; please report it with this message.")
            shutil.copyfile(Path(loaded.folder) / "config.ini", tmp / "config.ini")
            manifest = _manifest(loaded, variant, step_model, tmp, report, time.perf_counter() - t0)
            if streams is not None:
                from .batching import batch_manifest

                manifest = batch_manifest(manifest, batched, streams)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as e:  # disk full, folder removed or made read-only midway, ...
        raise ExportError(f"could not write the export to {out} ({e}). Check the free space "
                          "and permissions of the --out folder; a previous folder there is kept.") from e
    return out


def model_sources(loaded: Any) -> list[Path]:
    """The paths an export of ``loaded`` reads (its checkpoint folder and the path it was loaded from):
    an export must never be placed over them."""
    return [Path(p) for p in (getattr(loaded, "folder", None), getattr(loaded, "source_path", None)) if p]
