"""Build the folder layouts of the Rust pipeline ``shimondoodkin/deepfilter-rt`` from an official release, with
our own ONNX surgery (``onnx.utils.Extractor``, ``onnx.compose``) and torch exports -- no file of that project is
copied. They let dfnb test, diagnose and convert those formats without downloading anything.

==========================  =====================================================================================
``build_folder(kind=...)``  what it writes (all with the release's ``config.ini``)
==========================  =====================================================================================
``upstream``                the release's ``enc.onnx``, ``erb_dec.onnx``, ``df_dec.onnx`` unchanged
``split-streaming``         ``enc_conv_streaming.onnx`` (convs only, every output sliced to the newest frame),
                            ``enc_gru_streaming.onnx`` (``emb, h0 -> emb_out, lsnr, h1``), and the decoders with
                            their GRU states as I/O (``erb_dec_streaming.onnx``, ``df_dec_streaming.onnx``):
                            what ``split_encoder_and_patch_decoders.py`` produces
``combined-streaming``      the four split graphs merged into ``combined_streaming.onnx``
                            (``merge_split_models.py``)
``combined``                the three release graphs merged into a stateless ``combined.onnx``
                            (``merge_onnx.py``)
``h0`` / ``h0-dynamo``      ``export_onnx_stateful.py``'s folder, exported from the PyTorch model: ``enc.onnx``
                            with ``h0 [1,'B',H]``; with ``decoder_states`` also ``erb_h0/df_h0 [L,'B',H]``.
                            ``h0-dynamo`` uses torch's dynamo exporter for the encoder (decoders copied
                            from the release)
==========================  =====================================================================================

What each layout holds was read from that project's ``README.md``, ``MODES.md`` and ``scripts/``
(``split_encoder_and_patch_decoders.py``, ``export_onnx_stateful.py``, ``merge_split_models.py``,
``merge_onnx.py``); the code here is dfnb's own. The split point of the encoder is the GRU's input (after
``emb_gru.linear_in``), as the surgery script splits it; deepfilter-rt's PyTorch export splits before
``linear_in``: both are recognised and converted.

Notebook: 07_third_party_folders
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from .errors import DfnbError

__all__ = ["KINDS", "split_encoder", "with_gru_states", "merge", "build_folder"]

KINDS = ("upstream", "split-streaming", "combined-streaming", "combined", "h0", "h0-dynamo")
_E = ["e0", "e1", "e2", "e3"]


def _helper():
    import onnx
    from onnx import helper, numpy_helper

    return onnx, helper, numpy_helper


def _prune(model: Any) -> Any:
    """Drop nodes (and initializers) no graph output depends on."""
    g = model.graph
    prod = {o: i for i, n in enumerate(g.node) for o in n.output}
    keep, todo = set(), [o.name for o in g.output]
    while todo:
        i = prod.get(todo.pop())
        if i is not None and i not in keep:
            keep.add(i)
            todo.extend(g.node[i].input)
    nodes = [n for i, n in enumerate(g.node) if i in keep]
    used = {x for n in nodes for x in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    return model


def _rename(model: Any, old: str, new: str) -> None:
    g = model.graph
    for n in g.node:
        n.input[:] = [new if x == old else x for x in n.input]
        n.output[:] = [new if x == old else x for x in n.output]
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.name == old:
            v.name = new


def with_gru_states(model: Any, h_in: str, h_out: str, *, batch: str | int = 1) -> Any:
    """Expose every GRU's initial state as one input ``h_in [layers, batch, H]`` (layer i = GRU node i in graph
    order) and their final states as ``h_out`` (concatenated)."""
    import numpy as np

    onnx, helper, numpy_helper = _helper()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    grus = [n for n in g.node if n.op_type == "GRU"]
    if not grus:
        raise DfnbError("with_gru_states: the graph has no GRU node.")
    hidden = [next(a.i for a in n.attribute if a.name == "hidden_size") for n in grus]
    finals, nodes = [], []
    for n in list(g.node):
        if n.op_type == "GRU":  # the layer's state slice goes right before its GRU: node order stays the trace's
            i = len(finals)
            while len(n.input) < 6:
                n.input.append("")
            if len(grus) == 1:
                n.input[5] = h_in
            else:
                names = [f"_{h_in}_{k}_{i}" for k in ("start", "end", "axis")]
                for nm, v in zip(names, (i, i + 1, 0)):
                    g.initializer.append(numpy_helper.from_array(np.array([v], "int64"), nm))
                nodes.append(helper.make_node("Slice", [h_in, *names], [f"_{h_in}_layer{i}"]))
                n.input[5] = f"_{h_in}_layer{i}"
            while len(n.output) < 2:
                n.output.append("")
            if not n.output[1]:
                n.output[1] = f"_{h_out}_layer{i}"
            finals.append(n.output[1])
        nodes.append(n)
    nodes.append(helper.make_node("Concat", finals, [h_out], axis=0) if len(finals) > 1
                 else helper.make_node("Identity", finals, [h_out]))
    del g.node[:]
    g.node.extend(nodes)
    g.input.append(helper.make_tensor_value_info(h_in, onnx.TensorProto.FLOAT, [len(grus), batch, hidden[0]]))
    g.output.append(helper.make_tensor_value_info(h_out, onnx.TensorProto.FLOAT, [len(grus), batch, hidden[0]]))
    return _prune(m)  # the old zero initial states are now dangling


def _toposort(model: Any) -> Any:
    """Nodes in a topological order that keeps the original order wherever it already is one (the importer
    pairs weight ops with the PyTorch modules by order)."""
    import heapq

    g = model.graph
    nodes = list(g.node)
    avail = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    prod = {o: i for i, n in enumerate(nodes) for o in n.output}
    need = [{prod[x] for x in n.input if x not in avail and x in prod} for n in nodes]
    users: dict[int, list[int]] = {}
    for i, deps in enumerate(need):
        for d in deps:
            users.setdefault(d, []).append(i)
    ready = [i for i, deps in enumerate(need) if not deps]
    heapq.heapify(ready)
    out = []
    while ready:
        i = heapq.heappop(ready)
        out.append(nodes[i])
        for u in users.get(i, []):
            need[u].discard(i)
            if not need[u]:
                heapq.heappush(ready, u)
    if len(out) != len(nodes):
        raise DfnbError("graph surgery produced a cycle or a dangling input; this is a dfnb bug.")
    del g.node[:]
    g.node.extend(out)
    return model


def _slice_last(model: Any, names: dict[str, tuple[str, int]]) -> None:
    """Output ``new`` = the last time frame of tensor ``old`` (``names = {new: (old, axis)}``)."""
    onnx, helper, numpy_helper = _helper()
    import numpy as np

    g = model.graph
    known = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    known.update({v.name: v for v in g.output})
    g.initializer.extend([numpy_helper.from_array(np.array([-1], "int64"), "_last_start"),
                          numpy_helper.from_array(np.array([np.iinfo(np.int64).max], "int64"), "_last_end")])
    for axis in sorted({a for _, a in names.values()}):
        g.initializer.append(numpy_helper.from_array(np.array([axis], "int64"), f"_last_axis{axis}"))
    del g.output[:]
    for new, (old, axis) in names.items():
        g.node.append(helper.make_node("Slice", [old, "_last_start", "_last_end", f"_last_axis{axis}"], [new]))
        dims = [d.dim_value or d.dim_param or f"{new}_{k}" for k, d in
                enumerate(known[old].type.tensor_type.shape.dim)] if old in known else []
        dims[axis:axis + 1] = [1] if dims else []
        g.output.append(helper.make_tensor_value_info(new, onnx.TensorProto.FLOAT, dims or None))


def split_encoder(enc: Any) -> tuple[Any, Any]:
    """``(enc_conv, enc_gru)`` from an upstream-style ``enc.onnx``: the convs with outputs sliced to the newest
    frame (``emb`` = the GRU's input), and the GRU + lsnr head with ``h0 -> h1``."""
    onnx, helper, _ = _helper()
    g = enc.graph
    prod = {o: n for n in g.node for o in n.output}
    gru = next((n for n in g.node if n.op_type == "GRU"), None)
    if gru is None or prod.get(gru.input[0]) is None or prod[gru.input[0]].op_type != "Transpose":
        raise DfnbError("split_encoder: expected the encoder GRU to read a transposed [B, T, H] embedding.")
    pre = prod[gru.input[0]].input[0]
    enc = onnx.shape_inference.infer_shapes(enc)
    if pre not in {v.name for v in enc.graph.value_info}:  # the Extractor needs a value_info for every cut point
        enc.graph.value_info.append(helper.make_tensor_value_info(pre, onnx.TensorProto.FLOAT, None))
    ex = onnx.utils.Extractor(enc)
    conv = ex.extract_model(["feat_erb", "feat_spec"], [*_E, pre, "c0"])
    for e in [*_E, "c0"]:  # the sliced outputs take the names; the full tensors get a private one
        _rename(conv, e, f"_full_{e}")
    _slice_last(conv, {**{e: (f"_full_{e}", 2) for e in _E}, "emb": (pre, 1), "c0": ("_full_c0", 2)})
    gru_m = ex.extract_model([pre], ["emb", "lsnr"])
    _rename(gru_m, "emb", "emb_out")
    _rename(gru_m, pre, "emb")
    consts = {t.name: t for t in enc.graph.initializer}
    consts.update({n.output[0]: n.attribute[0].t for n in enc.graph.node if n.op_type == "Constant"})
    width = consts[gru.input[1]].dims[-1]  # GRU W is [1, 3H, input]
    emb_in = next(v for v in gru_m.graph.input if v.name == "emb")
    emb_in.CopyFrom(helper.make_tensor_value_info("emb", onnx.TensorProto.FLOAT, [1, "S", width]))
    gru_m = with_gru_states(gru_m, "h0", "h1", batch="B")
    return _toposort(_prune(conv)), gru_m


def merge(parts: list[tuple[str, Any]], wires: list[tuple[str, str]], outputs: list[str]) -> Any:
    """One graph from several: ``parts = [(prefix, model)]``; ``wires = [("a/out", "b/in")]``; graph inputs
    and ``outputs`` lose their prefixes (``onnx.compose`` does the merging)."""
    from onnx import compose

    pre = [(p, compose.add_prefix(m, f"{p}/")) for p, m in parts]
    merged = pre[0][1]
    final = {f"{p}/{o}" for p, _ in parts for o in outputs}
    for k, (_, m) in enumerate(pre[1:], start=1):
        io = [(a, b) for a, b in wires if b in {i.name for i in m.graph.input}]
        later = {a for a, b in wires if b.split("/", 1)[0] in {p for p, _ in parts[k + 1:]}}
        keep = [o.name for o in list(merged.graph.output) + list(m.graph.output) if o.name in final | later]
        merged = compose.merge_models(merged, m, io_map=io, outputs=keep)
    keep = set(outputs)
    g = merged.graph
    short = {v.name: v.name.split("/", 1)[1] for v in list(g.input) + list(g.output)}
    for v in list(g.output):
        if short[v.name] not in keep:
            g.output.remove(v)
    for old, new in short.items():
        _rename(merged, old, new)
    order = {n: i for i, n in enumerate(outputs)}
    outs = sorted(g.output, key=lambda v: order.get(v.name, 99))
    del g.output[:]
    g.output.extend(outs)
    return _prune(merged)


def _release_graphs(source: Path | str) -> tuple[dict[str, Any], bytes]:
    import onnx

    from .onnx_import import ONNX_PARTS, read_release

    files = read_release(Path(source))
    return {p: onnx.load_model_from_string(files[f"{p}.onnx"]) for p in ONNX_PARTS}, files["config.ini"]


def _export_h0(loaded: Any, out: Path, decoder_states: bool, dynamo: bool) -> None:
    """The stateful folder of deepfilter-rt's ``export_onnx_stateful.py``, written by our own wrappers."""
    import torch

    net, spec = loaded.net, loaded.spec
    if spec.family != "deepfilternet3":
        raise DfnbError("the h0 export wrappers follow deepfilternet3's modules; build DeepFilterNet2 layouts "
                        "with the surgery kinds (split-streaming, combined, ...).")

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.e = net.enc

        def forward(self, feat_erb, feat_spec, h0):
            e = self.e
            e0 = e.erb_conv0(feat_erb)
            e1 = e.erb_conv1(e0)
            e2 = e.erb_conv2(e1)
            e3 = e.erb_conv3(e2)
            c0 = e.df_conv0(feat_spec)
            cemb = e.df_fc_emb(e.df_conv1(c0).permute(0, 2, 3, 1).flatten(2))
            emb, h1 = e.emb_gru(e.combine(e3.permute(0, 2, 3, 1).flatten(2), cemb), h0)
            return e0, e1, e2, e3, emb, c0, e.lsnr_fc(emb) * e.lsnr_scale + e.lsnr_offset, h1

    class Erb(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.d = net.erb_dec

        def forward(self, emb, e3, e2, e1, e0, erb_h0):
            d = self.d
            b, _, t, f8 = e3.shape
            x, h1 = d.emb_gru(emb, erb_h0)  # statement order of ErbDecoder.forward (the importer pairs by order)
            x = x.view(b, t, f8, -1).permute(0, 3, 1, 2)
            e3 = d.convt3(d.conv3p(e3) + x)
            e2 = d.convt2(d.conv2p(e2) + e3)
            e1 = d.convt1(d.conv1p(e1) + e2)
            return d.conv0_out(d.conv0p(e0) + e1), h1

    class Df(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.d = net.df_dec

        def forward(self, emb, c0, df_h0):
            d = self.d
            b, t, _ = emb.shape
            c, h1 = d.df_gru(emb, df_h0)
            if d.df_skip is not None:
                c = c + d.df_skip(emb)
            c0 = d.df_convp(c0).permute(0, 2, 3, 1)
            return d.df_out(c).view(b, t, d.df_bins, d.df_out_ch) + c0, h1

    t = 12
    fe, fs = torch.randn(1, 1, t, spec.nb_erb), torch.randn(1, 2, t, spec.nb_df)
    h0 = torch.zeros(1, 1, spec.emb_hidden_dim)
    with torch.no_grad():
        e0, e1, e2, e3, emb, c0, _, _ = Enc()(fe, fs, h0)
    erb_h0 = torch.zeros(spec.emb_num_layers - 1, 1, spec.emb_hidden_dim)
    df_h0 = torch.zeros(spec.df_num_layers, 1, spec.df_hidden_dim)
    jobs = [(Enc(), (fe, fs, h0), "enc", ["feat_erb", "feat_spec", "h0"],
             ["e0", "e1", "e2", "e3", "emb", "c0", "lsnr", "h1"])]
    if decoder_states:
        jobs += [(Erb(), (emb, e3, e2, e1, e0, erb_h0), "erb_dec", ["emb", "e3", "e2", "e1", "e0", "erb_h0"],
                  ["m", "erb_h1"]),
                 (Df(), (emb, c0, df_h0), "df_dec", ["emb", "c0", "df_h0"], ["coefs", "df_h1"])]
    time_axis = {"feat_erb": 2, "feat_spec": 2, "emb": 1, "e0": 2, "e1": 2, "e2": 2, "e3": 2, "c0": 2, "lsnr": 1,
                 "m": 2, "coefs": 1}
    for mod, args, name, ins, outs in jobs:
        dyn = {n: {time_axis[n]: "S"} for n in ins + outs if n in time_axis}
        dyn.update({n: {1: "B"} for n in ins + outs if n.endswith(("h0", "h1"))})
        kw: dict = ({"dynamo": True, "external_data": False} if dynamo and name == "enc"
                    else {"dynamo": False, "opset_version": 14})
        try:
            torch.onnx.export(mod.eval(), args, str(out / f"{name}.onnx"), input_names=ins, output_names=outs,
                              dynamic_axes=dyn, **kw)
        except Exception as e:  # noqa: BLE001 -- torch.export specialises the time axis of some encoders
            why = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[0][:120]
            kind = "dynamo" if kw["dynamo"] else "TorchScript"
            raise DfnbError(f"torch's {kind} exporter cannot export {spec.name}'s {name} with a dynamic time axis "
                            f"({why}); use kind 'h0'.") from None


def build_folder(kind: str, out: Path | str, *, release: Path | str | None = None, loaded: Any = None,
                 decoder_states: bool = True) -> Path:
    """Write a folder of ``kind`` (see the module docstring) into ``out`` (created; must not exist yet).

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    out : path
        The new folder.
    release : path
        The official release tarball (or unpacked folder) the graphs come from.
    loaded : dfnb.models.LoadedModel
        The PyTorch model, for the ``h0`` kinds (torch exports).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> build_folder("split-streaming", "/tmp/dfn3_split", release=tarball)  # doctest: +SKIP

    Notebook: 07_third_party_folders
    """
    import onnx

    if kind not in KINDS:
        raise DfnbError(f"unknown third-party layout {kind!r}; choose one of {', '.join(KINDS)}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=False)
    graphs, config = _release_graphs(release) if release is not None else ({}, b"")
    if kind.startswith("h0"):
        if loaded is None:
            raise DfnbError("the h0 layouts are torch exports: pass loaded= (dfnb.models.load_model(...)).")
        shutil.copyfile(Path(loaded.folder) / "config.ini", out / "config.ini")
        _export_h0(loaded, out, decoder_states and kind == "h0", kind == "h0-dynamo")
        if not (decoder_states and kind == "h0"):
            if not graphs:
                graphs, _ = _release_graphs(release) if release else (None, None)
            if not graphs:
                raise DfnbError("pass release= too: the stateless decoders are copied from the release.")
            for p in ("erb_dec", "df_dec"):
                onnx.save(graphs[p], str(out / f"{p}.onnx"))
        return out
    if not graphs:
        raise DfnbError(f"{kind} is built by surgery on an official release: pass release=<tarball>.")
    (out / "config.ini").write_bytes(config)
    if kind == "upstream":
        for p, m in graphs.items():
            onnx.save(m, str(out / f"{p}.onnx"))
        return out
    if kind == "combined":
        merged = merge([("enc", graphs["enc"]), ("erb", graphs["erb_dec"]), ("df", graphs["df_dec"])],
                       [("enc/emb", "erb/emb"), *[(f"enc/{e}", f"erb/{e}") for e in _E], ("enc/emb", "df/emb"),
                        ("enc/c0", "df/c0")], ["lsnr", "m", "coefs"])
        onnx.save(merged, str(out / "combined.onnx"))
        return out
    conv, gru = split_encoder(graphs["enc"])
    erb = with_gru_states(graphs["erb_dec"], "erb_h0", "erb_h1")
    df = with_gru_states(graphs["df_dec"], "df_h0", "df_h1")
    if kind == "split-streaming":
        for name, m in (("enc_conv", conv), ("enc_gru", gru), ("erb_dec", erb), ("df_dec", df)):
            onnx.save(m, str(out / f"{name}_streaming.onnx"))
        return out
    merged = merge([("conv", conv), ("gru", gru), ("erb", erb), ("df", df)],
                   [("conv/emb", "gru/emb"), ("gru/emb_out", "erb/emb"), *[(f"conv/{e}", f"erb/{e}") for e in _E],
                    ("gru/emb_out", "df/emb"), ("conv/c0", "df/c0")],
                   ["lsnr", "m", "coefs", "h1", "erb_h1", "df_h1"])
    onnx.save(merged, str(out / "combined_streaming.onnx"))
    return out
