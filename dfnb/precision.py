"""Reduced-precision step exports (``dfnb export --variant step --precision fp16|int8-dynamic|int8-static``)
and what they cost against the exact streaming reference.

A ``step`` folder is exact: its stream equals offline PyTorch to rounding. Smaller weights trade that away for
memory and, on a weight-bandwidth-bound hop, speed. :func:`export_precision` writes a new folder from a step
folder (or a model) and *measures* the trade: the folder's ``manifest.json`` records the precision, what was
reduced, and the SNR of the difference between its stream (:class:`dfnb.hosts.fast.FastStepHost`) and offline
float32 PyTorch on a real clip. ``benchmarks/precision.py`` adds PESQ/STOI/DNSMOS deltas and per-hop latency.

=================  ======================================================================================
precision          what the folder's ``step.onnx`` is
=================  ======================================================================================
``fp16``           every tensor in float16 (``onnxruntime.transformers.float16``, graph inputs/outputs kept
                   float32). The warm-up gating stays float32 so that hosts can remove it, as for any step
                   graph. onnxruntime's CPU provider lacks float16 kernels for most ops and runs them in
                   float32 behind inserted Casts: on a CPU this is a smaller file, not a faster one.
``int8-dynamic``   the GRUs unrolled into MatMul + Sigmoid/Tanh (:func:`unroll_gru`; onnxruntime quantizes
                   MatMul but not GRU) and their weight matrices — nearly all the weight bytes a hop
                   streams — in int8 per output channel; the input vector of each MatMul is quantized per hop
                   (``quantize_dynamic``).
``int8-static``    the same MatMuls in QDQ form with activation ranges fixed by a calibration run over real
                   clips' per-hop graph inputs (``quantize_static``, MinMax; :data:`CALIBRATION_CLIPS`, none
                   of them the fidelity clip).
=================  ======================================================================================

Everything else (convolutions, grouped linear layers, the deep filter) stays float32 in the int8 folders.

Notebook: 05_realtime
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .args import check_choice, check_flag, check_names, check_path
from .errors import ExportError

__all__ = ["PRECISIONS", "CALIBRATION_CLIPS", "FIDELITY_CLIP", "unroll_gru", "regate", "calibration_feeds",
           "export_precision", "measure_fidelity"]

PRECISIONS = ("fp16", "int8-dynamic", "int8-static")
CALIBRATION_CLIPS = ("dns4_aircon", "dns4_street", "dns4_street_creaky", "dfn_noisy_snr0")
FIDELITY_CLIP = "vb_p232_013"
_BASE_IN = ("spec", "feat_erb", "feat_spec")


# ----------------------------------------------------------------------------------------------------------
# Graph rewrites
# ----------------------------------------------------------------------------------------------------------
# one GRU step as (op, inputs, outputs); names local to the GRU except X, H0 (its inputs) and Y, Y_h (its outputs)
_GRU_STEPS = [("Squeeze", "X ax0", "x"), ("Squeeze", "H0 ax0", "h"), ("MatMul", "x Wt", "gx0"), ("Add", "gx0 Wb", "gx"),
              ("MatMul", "h Rt", "gh0"), ("Add", "gh0 Rb", "gh"), ("Split", "gx split", "xz xr xh"),
              ("Split", "gh split", "hz hr hh"), ("Add", "xz hz", "z0"), ("Sigmoid", "z0", "z"),
              ("Add", "xr hr", "r0"), ("Sigmoid", "r0", "r"), ("Mul", "r hh", "rh"), ("Add", "xh rh", "n0"),
              ("Tanh", "n0", "n"), ("Sub", "one z", "omz"), ("Mul", "omz n", "a"), ("Mul", "z h", "zh"),
              ("Add", "a zh", "hn")]


def unroll_gru(model) -> list[str]:
    """Replace every one-step ONNX ``GRU`` (``linear_before_reset=1``, forward) by MatMuls and elementwise ops.

    ``z = σ(x Wz + Wbz + h Rz + Rbz)``, ``r = σ(x Wr + Wbr + h Rr + Rbr)``, ``n = tanh(x Wh + Wbh + r (h Rh +
    Rbh))``, ``h' = (1 - z) n + z h`` (the ONNX GRU definition), for a sequence of one frame, which is what a
    step graph feeds its GRUs. Returns the names of the new weight MatMuls (what int8 quantizes).
    """
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, mms = [], []
    for k, n in enumerate(g.node):
        if n.op_type != "GRU":
            nodes.append(n)
            continue
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if at.get("linear_before_reset") != 1 or at.get("direction", b"forward") not in (b"forward", "forward") or \
                len(n.input) < 6 or not n.input[5] or n.input[1] not in inits or n.input[2] not in inits:
            raise ExportError(f"GRU node {n.name!r} is not a one-direction GRU with initial state and constant "
                              "weights; dfnb exports only such GRUs. Re-export the step folder.")
        h = at["hidden_size"]
        w, r = (numpy_helper.to_array(inits[n.input[i]])[0] for i in (1, 2))  # [3H, I], [3H, H]
        b = numpy_helper.to_array(inits[n.input[3]])[0] if n.input[3] else np.zeros(6 * h, np.float32)
        p = f"_gru{k}_"  # dfnb.graphcheck.UNROLLED_GRU counts the layer by its `split`: keep the names
        scope = f"{n.name}/" if n.name else ""  # node names keep the GRU's (/erb_dec/...): its model part
        consts = {"Wt": w.T, "Rt": r.T, "Wb": b[: 3 * h], "Rb": b[3 * h :], "one": np.array(1.0, np.float32),
                  "ax0": np.array([0], np.int64), "ax01": np.array([0, 1], np.int64),
                  "split": np.array([h, h, h], np.int64)}
        g.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(v), p + k2) for k2, v in consts.items())
        ext = {"X": n.input[0], "H0": n.input[5]}  # the GRU's own inputs/outputs keep their names
        ext.update({k2: o for k2, o in zip(("Y", "Y_h"), n.output) if o})
        for op, ins, outs in _GRU_STEPS + [("Unsqueeze", f"hn {ax}", out) for out, ax in (("Y", "ax01"), ("Y_h", "ax0"))
                                           if out in ext]:
            names = [[ext.get(t, p + t) for t in part.split()] for part in (ins, outs)]
            kw = {"axis": -1} if op == "Split" else {}
            nodes.append(helper.make_node(op, *names, name=scope + names[1][0] + "_", **kw))
        mms += [scope + p + "gx0_", scope + p + "gh0_"]  # the node names of the two weight MatMuls
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return mms


def regate(model, conv_lookahead: int) -> int:
    """Give a lean step graph (no warm-up, e.g. from :func:`dfnb.surgery.lean_step_model`) its warm-up back.

    Adds the ``warmup`` input/``warmup_next`` output and, on every state output but ``spec_buf_next``, the float32
    gate ``valid * new + (1 - valid) * old`` with ``valid = warmup >= conv_lookahead`` — the gating
    :class:`dfnb.streaming.StepModel` exports, so every step host runs the folder (the fast host removes it
    again). Graph-internal uses of a state keep the ungated value: they only reach outputs of warm-up hops,
    which hosts drop. Returns the number of gates added.
    """
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    ins = [i.name for i in g.input if i.name not in _BASE_IN]
    outs = [o.name for o in g.output][2:]
    if "warmup" in ins or len(ins) != len(outs):
        raise ExportError("regate() takes a lean step graph (no warmup input, one output per state input).")
    g.initializer.extend([numpy_helper.from_array(np.array([float(conv_lookahead)], np.float32), "_wu_L"),
                          numpy_helper.from_array(np.array([1.0], np.float32), "_wu_one")])
    mk = helper.make_node
    nodes = [mk("GreaterOrEqual", ["warmup", "_wu_L"], ["_wu_ge"], name="_wu_ge"),
             mk("Cast", ["_wu_ge"], ["_wu_valid"], to=TensorProto.FLOAT, name="_wu_valid"),
             mk("Sub", ["_wu_one", "_wu_valid"], ["_wu_keep"], name="_wu_keep"),
             mk("Add", ["warmup", "_wu_one"], ["_wu_next"], name="_wu_next"),
             mk("Min", ["_wu_next", "_wu_L"], ["warmup_next"], name="_wu_clamp")]
    n = 0
    for i, o in zip(ins, outs):
        if i == "spec_buf":
            continue
        new = f"{o}_ungated"
        for node in g.node:  # the producer and any graph-internal reader now use the ungated value
            node.output[:] = [new if x == o else x for x in node.output]
            node.input[:] = [new if x == o else x for x in node.input]
        nodes += [mk("Mul", ["_wu_valid", new], [f"_wu_a{n}"], name=f"_wu_a{n}"),
                  mk("Mul", ["_wu_keep", i], [f"_wu_b{n}"], name=f"_wu_b{n}"),
                  mk("Add", [f"_wu_a{n}", f"_wu_b{n}"], [o], name=f"_wu_gate{n}")]
        n += 1
    g.node.extend(nodes)
    g.input.append(helper.make_tensor_value_info("warmup", TensorProto.FLOAT, [1]))
    g.output.append(helper.make_tensor_value_info("warmup_next", TensorProto.FLOAT, [1]))
    return n


def _toposort(graph, order: dict[str, int]) -> None:
    """Put ``graph.node`` back in the order of the graph before reduction (``order``: node name -> index; the
    quantizers sort nodes their own way, the float16 converter appends its input Casts at the end), with every
    node after the producers of its inputs: a new node is pulled in just before its first consumer. Hosts'
    graph surgery and the folder checks (:mod:`dfnb.graphcheck`: conv kernels in module order) read nodes in
    order."""
    nodes = sorted(graph.node, key=lambda n: order.get(n.name, len(order)))  # stable: new nodes last
    made = {o: n for n in graph.node for o in n.output if o}
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    done, seen = [], set()
    for root in nodes:
        stack = [root]
        while stack:
            n = stack[-1]
            if id(n) in seen:
                stack.pop()
                continue
            wait = [made[i] for i in n.input if i not in ready and i in made and id(made[i]) not in seen]
            if wait:
                if {id(w) for w in wait} & {id(x) for x in stack}:
                    raise ExportError("the reduced graph has a cycle; this is a dfnb bug, please report it.")
                stack.extend(wait)
                continue
            if any(i not in ready for i in n.input):
                raise ExportError(f"node {n.name!r} of the reduced graph has a dangling input; this is a dfnb bug, "
                                  "please report it.")
            stack.pop()
            seen.add(id(n))
            done.append(n)
            ready.update(n.output)
    del graph.node[:]
    graph.node.extend(done)


def _named(model):
    for k, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"_node{k}_{n.op_type}"
    return model


# ----------------------------------------------------------------------------------------------------------
# Calibration and fidelity
# ----------------------------------------------------------------------------------------------------------
def calibration_feeds(model, cfg: Any, conv_lookahead: int, clips_: Sequence[str] = CALIBRATION_CLIPS, *,
                      hops: int = 300, every: int = 2) -> list[dict]:
    """Per-hop graph inputs (spectrum, features and every state) of the lean float32 step graph ``model``
    streaming the first ``hops`` hops of each clip (warm-up done as the fast host does); every ``every``-th
    hop is kept."""
    import onnxruntime as ort

    from . import clips
    from .hosts.fast import LeanDsp

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    f, e, d = cfg.freq_bins, cfg.nb_erb, cfg.nb_df
    feeds: list[dict] = []
    for name in clips_:
        x = clips.load_clip(name)[0]
        lean = LeanDsp(cfg)
        st = {i.name: np.zeros(i.shape, np.float32) for i in sess.get_inputs() if i.name not in _BASE_IN}
        spec, fe, fs = np.zeros(f, np.complex64), np.zeros(e, np.float32), np.zeros((d, 2), np.float32)
        for t in range(min(hops, len(x) // cfg.hop_size)):
            lean.analysis_into(x[t * cfg.hop_size : (t + 1) * cfg.hop_size], spec)
            lean.features_into(spec, fe, fs)
            feed = {"spec": spec.view(np.float32).reshape(1, 1, 1, f, 2).copy(),
                    "feat_erb": fe.reshape(1, 1, 1, e).copy(),
                    "feat_spec": fs.reshape(1, 1, 1, d, 2).copy(), **st}
            if t < conv_lookahead:  # warm-up: only the spectrum buffer moves
                st["spec_buf"] = np.concatenate([st["spec_buf"][:, :, 1:], feed["spec"]], axis=2)
                continue
            res = dict(zip(outs, sess.run(None, feed)))
            if t % every == 0:
                feeds.append(feed)
            st = {k: res[o] for k, o in zip(st, outs[2:])}
    return feeds


def measure_fidelity(folder: Path | str, audio: np.ndarray, references: dict[str, np.ndarray]) -> dict[str, dict]:
    """``folder``'s stream of ``audio`` (FastStepHost, run once) against each named reference: SNR of the
    difference (dB) and max abs error, ``{name: {"snr_db", "max_abs_err"}}``."""
    from . import metrics
    from .hosts.fast import FastStepHost
    from .runtime import enhance

    host = FastStepHost(folder)
    if host.lean_report.get("gates_removed", 0) == 0 and "warmup" in [i.name for i in host.sess.get_inputs()]:
        raise ExportError(f"{folder}: the fast host could not find the warm-up gating in this graph; it would run "
                          "the warm-up twice. This is a dfnb bug; please report it.")
    y = enhance(host, audio)
    return {name: {"snr_db": round(metrics.snr_of_difference(ref, y), 2),
                   "max_abs_err": float(metrics.max_abs_error(ref, y))} for name, ref in references.items()}


# ----------------------------------------------------------------------------------------------------------
# The export
# ----------------------------------------------------------------------------------------------------------
class _without_preprocess_advice(logging.Filter):
    """Drops onnxruntime.quantization's root-logger advice to run its optional pre-processing (shape inference,
    graph simplification) while the quantizer runs: the folder's fidelity is measured and recorded either way."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")

    def __enter__(self):
        logging.getLogger().addFilter(self)

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self)


def _reduce(model, precision: str, path: Path, cfg: Any, L: int, calibration: Sequence[str]) -> dict:
    """Write the reduced lean ``model`` to ``path``, gated again (:func:`regate`); returns what was done."""
    import onnx
    import onnxruntime as ort

    if precision != "fp16":
        mms = unroll_gru(model)
    order = {n.name: k for k, n in enumerate(_named(model).graph.node)}
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        reduced = convert_float_to_float16(model, keep_io_types=True)
        detail = {"tool": f"onnxruntime.transformers.float16 (onnxruntime {ort.__version__})",
                  "reduced": "every tensor and op in float16; graph inputs/outputs float32",
                  "kept_float32": "the warm-up gating of the states"}
    else:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )

        common = dict(op_types_to_quantize=["MatMul"], nodes_to_quantize=mms, per_channel=True,
                      weight_type=QuantType.QInt8)
        detail = {"reduced": f"the GRU weight matrices ({len(mms)} MatMuls, GRUs unrolled), int8 per output channel",
                  "kept_float32": "convolutions, grouped linear layers, deep filter, warm-up gating"}
        if precision == "int8-dynamic":
            with _without_preprocess_advice():
                quantize_dynamic(model, str(path), **common)
            detail = {"tool": f"onnxruntime.quantization.quantize_dynamic (onnxruntime {ort.__version__})", **detail,
                      "activations": "int8 per MatMul input, scale computed every hop"}
        else:
            feeds = calibration_feeds(model, cfg, L, calibration)

            class _Reader(CalibrationDataReader):
                def __init__(self):
                    self._it = iter(feeds)

                def get_next(self):
                    return next(self._it, None)

            with _without_preprocess_advice():
                quantize_static(model, str(path), _Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, **common)
            detail = {"tool": f"onnxruntime.quantization.quantize_static, QDQ, MinMax (onnxruntime {ort.__version__})",
                      **detail, "activations": "uint8 with ranges fixed by calibration",
                      "calibration": {"clips": list(calibration), "feeds": len(feeds)}}
        reduced = onnx.load(str(path))
    _toposort(reduced.graph, order)
    regate(reduced, L)
    onnx.save(reduced, str(path))
    return detail


def export_precision(source: Any, out: Path | str, precision: str, *, calibration: Sequence[str] = CALIBRATION_CLIPS,
                     fidelity_clip: str = FIDELITY_CLIP, force: bool = False) -> Path:
    """Write a reduced-precision copy of a step export into ``out`` and record its measured fidelity.

    Parameters
    ----------
    source : LoadedModel or path
        A model (exported as ``step`` first, in a temporary folder) or a single-stream float32 step folder.
    out : path
        The new folder (replaced only with ``force``); run it with :class:`dfnb.hosts.fast.FastStepHost`.
    precision : {"fp16", "int8-dynamic", "int8-static"}
        See the module docstring.
    calibration : sequence of str
        Clip names (:mod:`dfnb.clips`) whose per-hop inputs calibrate ``int8-static``.
    fidelity_clip : str
        The real clip the manifest's ``fidelity`` is measured on (not a calibration clip).

    Returns
    -------
    pathlib.Path
        ``out``; its ``manifest.json`` has ``precision``, ``precision_detail`` and ``fidelity``
        (``snr_db_vs_offline_fp32``: SNR of the difference to offline float32 PyTorch on ``fidelity_clip``).

    Examples
    --------
    >>> export_precision("models/dfn3_step", "models/dfn3_step_int8-dynamic", "int8-dynamic")  # doctest: +SKIP

    Notebook: 05_realtime
    """
    import tempfile

    from . import clips, dsp
    from .assets import sha256_file
    from .batching import model_of_step_folder
    from .export import export_model, model_sources
    from .hosts.fast import FastStepHost
    from .layout import ModelConfig
    from .offline import enhance_offline
    from .placement import building_folder, check_target
    from .runtime import enhance
    from .surgery import graph_io_entries, lean_step_model

    precision = check_choice(precision, "precision", PRECISIONS, error=ExportError)
    calibration = check_names(calibration, "calibration", error=ExportError)
    if fidelity_clip in calibration:
        raise ExportError(f"the fidelity clip {fidelity_clip!r} is also a calibration clip; measure on a held-out "
                          "clip.")
    out = check_path(out, "out", error=ExportError, what="the path of the folder to export to")
    force = check_flag(force, "force", error=ExportError)
    check_target(out, folder=True, replace=force,  # before any work: placement checks it again at the end
                 sources=[Path(source)] if isinstance(source, (str, Path)) else model_sources(source))
    with tempfile.TemporaryDirectory(prefix="dfnb_precision_") as td:
        if isinstance(source, (str, Path)):
            src, loaded = Path(source), model_of_step_folder(source)
        else:
            src, loaded = export_model(source, "step", Path(td) / "step"), source
        man = json.loads((src / "manifest.json").read_text())
        cfg = dsp.DspConfig.from_spec(ModelConfig.read(src / "config.ini"))
        model, _ = lean_step_model(src / "step.onnx")  # no warm-up gates, Einsum -> MatMul; regate() puts gates back
        with building_folder(out, replace=force, sources=[src, *model_sources(loaded)]) as tmp:
            L = int(man["conv_lookahead"])
            detail = _reduce(model, precision, tmp / "step.onnx", cfg, L, calibration)
            shutil.copyfile(src / "config.ini", tmp / "config.ini")
            x = clips.load_clip(fidelity_clip)[0]
            offline = enhance_offline(loaded, x).audio
            m = dict(man, precision=precision, exact=False, precision_detail=detail, source_folder=str(src))
            onnx_file = tmp / "step.onnx"
            m["files"] = {"step.onnx": {"sha256": sha256_file(onnx_file), **graph_io_entries(onnx_file)},
                          "config.ini": {"sha256": sha256_file(tmp / "config.ini")}}
            (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
            vs = measure_fidelity(tmp, x, {"offline": offline, "fp32": enhance(FastStepHost(src), x)})
            m["fidelity"] = {"clip": fidelity_clip, "seconds": round(len(x) / cfg.sr, 2), "host": "FastStepHost",
                             "snr_db_vs_offline_fp32": vs["offline"]["snr_db"],
                             "max_abs_err_vs_offline_fp32": vs["offline"]["max_abs_err"],
                             "snr_db_vs_fp32_stream": vs["fp32"]["snr_db"]}
            (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    return out

