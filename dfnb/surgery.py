"""Graph surgery on exported ONNX graphs: rewrite a verified graph into an equivalent, faster or differently
shaped one. Nothing here runs a stream; :mod:`dfnb.hosts` does.

* :func:`lean_step_model` — what :class:`dfnb.hosts.fast.FastStepHost` runs: ``step.onnx`` without its warm-up
  gating (the host does the warm-up) and with the grouped linear layers' ``Einsum`` as batched ``MatMul``;
  optionally exposing the per-bin ERB gains (``erb_gains``) for the official runtime's emulation.
* :func:`pack_states` — a ``step`` folder whose graph takes all states as one flat tensor (verified bit-exact
  against the original).
* :func:`graph_io_entries` — the inputs/outputs of a graph as manifest.json lists them (readable dim names).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .args import check_flag, check_int, check_path
from .assets import sha256_file
from .errors import ModelFolderError
from .layout import BASE_IO, MANIFEST_FORMAT
from .placement import building_folder, check_target

__all__ = ["GAINS_OUTPUT", "lean_step_model", "pack_states", "graph_io_entries"]

_F32 = np.float32
_BASE_IN, _BASE_OUT = BASE_IO["step.onnx"]


def graph_io_entries(path: Path | str) -> dict:
    """``{"inputs": [...], "outputs": [...], "opset": n}`` of an ONNX file: name, shape (symbolic dims by name),
    dtype — what manifest.json lists for each file."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)

    def entries(vals):
        out = []
        for v in vals:
            tt = v.type.tensor_type
            dims = [d.dim_param if d.dim_param else d.dim_value for d in tt.shape.dim]
            out.append({"name": v.name, "shape": dims,
                        "dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name})
        return out

    return {"inputs": entries(m.graph.input), "outputs": entries(m.graph.output), "opset": m.opset_import[0].version}


# ----------------------------------------------------------------------------------------------------------
# Graph surgery
# ----------------------------------------------------------------------------------------------------------
def _dce(graph) -> None:
    """Drop nodes and initializers that no graph output depends on."""
    live = {o.name for o in graph.output}
    keep = []
    for n in reversed(list(graph.node)):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(n.input)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in live]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _ungate(model) -> int:
    """Replace every ``valid * new + (1 - valid) * old`` by ``new``; drop the ``warmup`` input and output.

    ``valid`` is the output of ``Cast(GreaterOrEqual(warmup, L))`` (see StepModel.forward). Returns the
    number of gates removed (0 when the graph has no warm-up, e.g. an ``_ll`` model with L = 0 still has one).
    """
    g = model.graph
    ge = [n for n in g.node if n.op_type == "GreaterOrEqual" and "warmup" in n.input]
    if len(ge) != 1:
        return 0
    casts = [n for n in g.node if n.op_type == "Cast" and n.input[0] == ge[0].output[0]]
    if len(casts) != 1:
        return 0
    valid = casts[0].output[0]
    prod = {o: n for n in g.node for o in n.output}
    count = 0
    for n in g.node:
        if n.op_type != "Add":
            continue
        a, b = (prod.get(x) for x in n.input)
        if a is None or b is None or a.op_type != "Mul" or b.op_type != "Mul":
            continue
        gate = [mm for mm in (a, b) if valid in mm.input]
        if len(gate) != 1:
            continue
        new = [x for x in gate[0].input if x != valid][0]
        n.op_type = "Identity"
        del n.input[:]
        n.input.append(new)
        n.name = (n.name or "gate") + "_ungated"
        count += 1
    outs = [o for o in g.output if o.name != "warmup_next"]
    del g.output[:]
    g.output.extend(outs)
    _dce(g)
    if any("warmup" in n.input for n in g.node):
        raise ModelFolderError("step.onnx uses its warmup input outside the state gates; re-export the folder "
                               "with this dfnb version (the fast path expects StepModel's gating).")
    ins = [i for i in g.input if i.name != "warmup"]
    del g.input[:]
    g.input.extend(ins)
    return count


def _einsum_to_matmul(model) -> int:
    """``Einsum('btgi,gih->btgh', x[1,1,G,I], W[G,I,H])`` → ``Reshape(x,[G,1,I]) @ W → Reshape([1,1,G,H])``."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.value_info) + list(inferred.input)}
    inits = {i.name: list(i.dims) for i in g.initializer}
    new_nodes, k = [], 0
    for n in g.node:
        eq = next((a.s for a in n.attribute if a.name == "equation"), b"") if n.op_type == "Einsum" else b""
        if (eq.replace(b" ", b"") == b"btgi,gih->btgh" and n.input[1] in inits
                and shapes.get(n.input[0], [0])[:2] == [1, 1]):
            G, Ci, H = inits[n.input[1]]  # groups, inputs and outputs per group
            s1, s2 = f"_fp_em_s1_{k}", f"_fp_em_s2_{k}"
            g.initializer.extend([numpy_helper.from_array(np.array([G, 1, Ci], np.int64), s1),
                                  numpy_helper.from_array(np.array([1, 1, G, H], np.int64), s2)])
            new_nodes += [helper.make_node("Reshape", [n.input[0], s1], [f"_fp_em_x_{k}"], name=f"_fp_em_r1_{k}"),
                          helper.make_node("MatMul", [f"_fp_em_x_{k}", n.input[1]], [f"_fp_em_y_{k}"],
                                           name=f"_fp_em_mm_{k}"),
                          helper.make_node("Reshape", [f"_fp_em_y_{k}", s2], [n.output[0]], name=f"_fp_em_r2_{k}")]
            k += 1
        else:
            new_nodes.append(n)
    del g.node[:]
    g.node.extend(new_nodes)
    return k


GAINS_OUTPUT = "erb_gains"


def _expose_gains(model) -> bool:
    """Add the per-bin ERB gains (``m @ erb_inv_fb``, float32 [1,1,1,F]) as graph output ``erb_gains``.

    The mask stage multiplies the spectrum by this tensor; :mod:`dfnb.hosts.official` needs it to apply the mask
    without the deep filter, as the official runtime does for some LSNR ranges.
    """
    from onnx import TensorProto, helper

    g = model.graph
    inits = {i.name for i in g.initializer}
    cands = [n for n in g.node if n.op_type == "MatMul" and n.input[1] in inits and "erb_inv_fb" in n.input[1]]
    if len(cands) != 1:
        return False
    g.node.append(helper.make_node("Identity", [cands[0].output[0]], [GAINS_OUTPUT], name="_fp_gains"))
    g.output.append(helper.make_tensor_value_info(GAINS_OUTPUT, TensorProto.FLOAT, None))
    return True


def lean_step_model(step_onnx: Path | str, *, ungate: bool = True, einsum: bool = True, gains: bool = False):
    """The lean version of a ``step.onnx`` (an ``onnx.ModelProto``) and a report of what was changed.

    ``gains=True`` also exposes the ERB mask gains per bin as output ``erb_gains`` (see :mod:`dfnb.hosts.official`).
    """
    import onnx

    path = check_path(step_onnx, "step_onnx", error=ModelFolderError, what="the path of a step.onnx")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 -- onnx raises several types for missing or corrupt files
        raise ModelFolderError(f"{path} cannot be read as ONNX ({str(e).splitlines()[0][:160]}); pass the "
                               "step.onnx of a step export (dfnb export --variant step).") from None
    report = {"nodes_before": len(model.graph.node)}
    report["gates_removed"] = _ungate(model) if ungate else 0
    report["einsum_to_matmul"] = _einsum_to_matmul(model) if einsum else 0
    if gains and not _expose_gains(model):
        raise ModelFolderError(f"{step_onnx}: cannot find the mask's MatMul with erb_inv_fb; re-export the folder.")
    report["nodes_after"] = len(model.graph.node)
    return model, report


# ----------------------------------------------------------------------------------------------------------
# Packed states
# ----------------------------------------------------------------------------------------------------------
def pack_states(step_folder: Path | str, out_folder: Path | str, *, force: bool = False,
                verify_hops: int = 12) -> Path:
    """Write a copy of a ``step`` folder whose graph takes all states as ONE flat float32 tensor.

    ``step.onnx`` of ``out_folder``: inputs ``spec, feat_erb, feat_spec, state [N]``; outputs ``enh, lsnr,
    state_next [N]``. Inside: ``Split`` of ``state`` into the original states (``Reshape`` to their shapes)
    → the original graph, unchanged → ``Reshape`` of every next state to 1-D → ``Concat``. The layout
    (name, offset, shape of each state, in the manifest's order) is in ``manifest.json`` under
    ``"packed_layout"``. Verified against the original graph for ``verify_hops`` hops of random input
    (max abs difference must be 0: the wrapped graph is the same graph). :class:`dfnb.hosts.fast.FastStepHost` and
    :class:`dfnb.hosts.onnx.Host` run the packed folder like any step folder (one state).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src = check_path(step_folder, "step_folder", error=ModelFolderError, what="the path of a step folder")
    out = check_path(out_folder, "out_folder", error=ModelFolderError, what="the path of the folder to write")
    force = check_flag(force, "force", error=ModelFolderError)
    verify_hops = check_int(verify_hops, "verify_hops", error=ModelFolderError)
    if not (src / "step.onnx").is_file():
        raise ModelFolderError(f"{src} has no step.onnx; pack_states needs a step folder (dfnb export --variant step).")
    place = dict(replace=force, sources=[src], error=ModelFolderError, force_hint="force=True", what="out_folder")
    check_target(out, folder=True, **place)  # before the work: never the source, never a folder dfnb did not write
    manifest = json.loads((src / "manifest.json").read_text()) if (src / "manifest.json").is_file() else {}
    model = onnx.load(str(src / "step.onnx"))
    g = model.graph
    ins = list(g.input)
    outs = list(g.output)
    st_in = [i for i in ins if i.name not in _BASE_IN]
    st_out = [o for o in outs if o.name not in _BASE_OUT]
    if len(st_in) != len(st_out):
        raise ModelFolderError(f"{src / 'step.onnx'}: {len(st_in)} state inputs but {len(st_out)} state outputs.")
    shapes = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in st_in]
    sizes = [int(np.prod(s)) for s in shapes]
    total = int(sum(sizes))
    pre, post = [], []
    pre.append(helper.make_node("Split", ["state", "_pk_sizes"], [f"_pk_flat_{i.name}" for i in st_in],
                                axis=0, name="_pk_split"))
    inits = [numpy_helper.from_array(np.array(sizes, np.int64), "_pk_sizes")]
    for i, shp in zip(st_in, shapes):
        inits.append(numpy_helper.from_array(np.array(shp, np.int64), f"_pk_shape_{i.name}"))
        pre.append(helper.make_node("Reshape", [f"_pk_flat_{i.name}", f"_pk_shape_{i.name}"], [i.name],
                                    name=f"_pk_reshape_{i.name}"))
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "_pk_minus1"))
    for o in st_out:
        post.append(helper.make_node("Reshape", [o.name, "_pk_minus1"], [f"_pk_flat_{o.name}"],
                                     name=f"_pk_flatten_{o.name}"))
    post.append(helper.make_node("Concat", [f"_pk_flat_{o.name}" for o in st_out], ["state_next"], axis=0,
                                 name="_pk_concat"))
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    del g.input[:]
    g.input.extend([i for i in ins if i.name in _BASE_IN] +
                   [helper.make_tensor_value_info("state", TensorProto.FLOAT, [total])])
    del g.output[:]
    g.output.extend([o for o in outs if o.name in _BASE_OUT] +
                    [helper.make_tensor_value_info("state_next", TensorProto.FLOAT, [total])])
    onnx.checker.check_model(model)

    with building_folder(out, **place) as tmp:
        onnx.save(model, str(tmp / "step.onnx"))
        shutil.copyfile(src / "config.ini", tmp / "config.ini")
        worst = _verify_packed(src / "step.onnx", tmp / "step.onnx", st_in, shapes, verify_hops)
        if worst != 0.0:
            raise ModelFolderError(f"packed graph differs from {src / 'step.onnx'} by {worst:.3g}; not written.")
        layout, off = [], 0
        for i, o, shp, n in zip(st_in, st_out, shapes, sizes):
            layout.append({"input": i.name, "output": o.name, "offset": off, "size": n, "shape": shp})
            off += n
        m = dict(manifest)
        m["format"] = MANIFEST_FORMAT
        m["packed_from"] = str(src)
        m["packed_layout"] = layout
        m["states"] = [{"name": "state", "input": "state", "output": "state_next", "file": "step.onnx",
                        "group": "packed", "shape": [total], "dtype": "float32", "init": "zeros"}] + \
                      [s for s in manifest.get("states", []) if s.get("where") == "host"]
        files = dict(m.get("files", {}))
        files["step.onnx"] = {"sha256": sha256_file(tmp / "step.onnx"), **graph_io_entries(tmp / "step.onnx")}
        if "config.ini" in files:
            files["config.ini"] = {"sha256": sha256_file(tmp / "config.ini")}
        m["files"] = files
        m["verification"] = {"max_abs_diff_vs_unpacked": worst, "hops": verify_hops}
        (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    return out


def _verify_packed(orig: Path, packed: Path, st_in, shapes, hops: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    a = ort.InferenceSession(str(orig), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(packed), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    base = {i.name: i.shape for i in a.get_inputs() if i.name in _BASE_IN}
    names = [i.name for i in st_in]
    states = {n: np.zeros(s, _F32) for n, s in zip(names, shapes)}
    flat = np.zeros(int(sum(int(np.prod(s)) for s in shapes)), _F32)
    out_names_a = [o.name for o in a.get_outputs()]
    worst = 0.0
    for _ in range(hops):
        feeds = {k: (rng.standard_normal(s) * 0.3).astype(_F32) for k, s in base.items()}
        ra = dict(zip(out_names_a, a.run(None, {**feeds, **states})))
        enh_b, lsnr_b, flat = b.run(["enh", "lsnr", "state_next"], {**feeds, "state": flat})
        worst = max(worst, float(np.max(np.abs(ra["enh"] - enh_b))), float(np.max(np.abs(ra["lsnr"] - lsnr_b))))
        nxt = np.concatenate([ra[o.name].reshape(-1) for o in a.get_outputs() if o.name not in _BASE_OUT])
        worst = max(worst, float(np.max(np.abs(nxt - flat))))
        st_outs = [o.name for o in a.get_outputs() if o.name not in _BASE_OUT]
        states = {n: ra[o] for n, o in zip(names, st_outs)}
    return worst


