"""A model's sizes read from its ONNX graphs alone: feature sizes, deep-filter order, GRU layers and hidden sizes,
conv time kernels -- and where they contradict ``config.ini``. No torch.

GRUs and convs are given to the model part (``enc``, ``erb_dec``, ``df_dec``) whose outputs they feed: in a
three-file or split folder that is the file's part; in one merged graph a node that feeds the outputs of more
than one part belongs to the encoder.

Explained in notebook 07_third_party_folders through :func:`dfnb.formats.recognise`, which reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .graphcheck import gru_layers

__all__ = ["node_parts", "graph_sizes", "config_problems"]

_PARTS = ("enc", "erb_dec", "df_dec")


def node_parts(graph: Any, part_of_output: dict[str, str]) -> list[str]:
    """The model part of every node (graph order): the part of the outputs it feeds, ``enc`` when it feeds the
    outputs of more than one part (or none)."""
    prod = {o: i for i, n in enumerate(graph.node) for o in n.output}
    parts_of: dict[int, set[str]] = {}
    for out, part in part_of_output.items():  # a backward walk from each output marks its ancestors
        todo, seen = [out], set()
        while todo:
            i = prod.get(todo.pop())
            if i is None or i in seen:
                continue
            seen.add(i)
            parts_of.setdefault(i, set()).add(part)
            todo.extend(graph.node[i].input)
    parts = (parts_of.get(i, set()) for i in range(len(graph.node)))
    return [next(iter(ps)) if len(ps) == 1 else "enc" for ps in parts]


def _gru_and_conv_sizes(path: Path, part_of_output: dict[str, str] | None) -> dict[str, dict[str, list[int]]]:
    """Per model part (enc/erb_dec/df_dec): GRU hidden sizes and conv time kernels, from the graph's nodes.

    In a one-graph model a node belongs to the encoder when it feeds the outputs of more than one part. With
    ``part_of_output=None`` (a step graph, whose outputs mix the parts) a node's part is the first component of
    its name (``/erb_dec/emb_gru/...``), as torch's exporter writes it; nodes named otherwise are not counted."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    if part_of_output is None:
        part_of = [n.name.lstrip("/").split("/")[0] for n in g.node]
    else:
        part_of = node_parts(g, part_of_output)
    inits = {i.name: list(i.dims) for i in g.initializer}
    out: dict[str, dict[str, list[int]]] = {}
    for i, hidden in gru_layers(g):  # GRU nodes and unrolled (reduced-precision) GRUs alike
        if part_of[i] in _PARTS:
            out.setdefault(part_of[i], {"gru": [], "conv_t": []})["gru"].append(int(hidden))
    for i, n in enumerate(g.node):
        if n.op_type not in ("Conv", "ConvTranspose") or part_of[i] not in _PARTS:
            continue
        at = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        ks = at.get("kernel_shape") or inits.get(n.input[1], [0, 0, 1])[2:]
        out.setdefault(part_of[i], {"gru": [], "conv_t": []})["conv_t"].append(int(ks[0]))
    return out


def graph_sizes(folder: Path, files: dict[str, str], shapes: dict[str, dict]) -> dict[str, Any]:
    """Model sizes read from the graphs: nb_erb, nb_df, df_order, GRU layers/hidden sizes, conv time kernels."""
    parts: dict[str, dict[str, list[int]]] = {}
    part_out = {"lsnr": "enc", "h1": "enc", "emb_out": "enc", "e0": "enc", "c0": "enc", "emb": "enc",
                "m": "erb_dec", "erb_h1": "erb_dec", "coefs": "df_dec", "df_h1": "df_dec"}
    for role, f in files.items():
        own = {"enc_conv": "enc", "enc_gru": "enc"}.get(role, role)
        mapping = (None if role == "step" else part_out if role == "combined" else {o: own for o in shapes[f]})
        for part, d in _gru_and_conv_sizes(folder / f, mapping).items():
            tgt = parts.setdefault(part, {"gru": [], "conv_t": []})
            tgt["gru"] += d["gru"]
            tgt["conv_t"] += d["conv_t"]
    allshapes = {k: v for f in files.values() for k, v in shapes[f].items()}
    s: dict[str, Any] = {"parts": parts}
    if "coefs" in allshapes:
        s["df_order"] = int(allshapes["coefs"][-1]) // 2
        s["nb_df"] = int(allshapes["coefs"][-2])
    if "m" in allshapes:
        s["nb_erb"] = int(allshapes["m"][-1])
    for p, (hid, layers) in {"enc": ("emb_hidden_dim", None), "erb_dec": (None, "erb_layers"),
                             "df_dec": ("df_hidden_dim", "df_num_layers")}.items():
        g = parts.get(p, {}).get("gru", [])
        if g and hid:
            s[hid] = g[0]
        if g and layers:
            s[layers] = len(g)
    if "erb_layers" in s:
        s["emb_num_layers"] = s.pop("erb_layers") + 1
    enc_k = parts.get("enc", {}).get("conv_t", [])
    if enc_k:
        s["conv_kernel_inp_t"] = enc_k[0]
    df_k = [k for k in parts.get("df_dec", {}).get("conv_t", []) if k > 1]
    if df_k:
        s["df_pathway_kernel_size_t"] = max(df_k)
    return s


def config_problems(cfg: Any, sizes: dict[str, Any]) -> list[str]:
    """Where the sizes read from the graphs contradict ``config.ini``."""
    if cfg is None:
        return []
    want = {"nb_erb": cfg.nb_erb, "nb_df": cfg.nb_df, "df_order": cfg.df_order, "emb_hidden_dim": cfg.emb_hidden_dim,
            "df_hidden_dim": cfg.df_hidden_dim, "df_num_layers": cfg.df_num_layers,
            "emb_num_layers": cfg.emb_num_layers, "conv_kernel_inp_t": cfg.conv_kernel_inp[0],
            "df_pathway_kernel_size_t": cfg.df_pathway_kernel_size_t}
    return [f"the graphs have {k}={sizes[k]} but config.ini says {v}" for k, v in want.items()
            if k in sizes and sizes[k] != v]
