"""What a folder's graphs say about its ``config.ini``: sizes, kernels, lookahead, constants — torch-free.

An ONNX graph of DeepFilterNet carries many of the values its ``config.ini`` declares: the GRU widths and layer
counts, the conv kernels (``conv_kernel_inp``, ``conv_kernel``, ``convt_kernel``, ``df_pathway_kernel_size_t``),
the conv channels, the width of the embedding between encoder and decoders (``conv_ch * nb_erb / 4`` for
deepfilternet3, ``emb_hidden_dim`` for deepfilternet2: the family), the deep-filter order (the ``coefs`` output),
the local-SNR scaling (``lsnr = sigmoid(.) * (lsnr_max - lsnr_min) + lsnr_min``); a ``step`` graph also holds
the inverse ERB filterbank (its band widths follow from ``sr``, ``fft_size``, ``nb_erb`` and
``min_nb_erb_freqs`` through libdf), the warm-up threshold (``conv_lookahead``), the deep-filter window and
buffers (``df_order``, ``df_lookahead``) and the family's buffers (deepfilternet2's ``masked_buf``/``coef_buf``).

:func:`graph_checks` returns one check per fact; :func:`dfnb.folder.inspect_folder` runs them with its own
checks before any audio is processed. Each check returns the problems it found (a
:class:`~dfnb.errors.ModelFolderError` names the key) and confirms the keys it verified; what no check
confirmed is listed in ``FolderInfo.unverified`` with the reason (:data:`WHY_UNVERIFIED`): ``hop_size`` and
``norm_tau`` live only in the host's DSP, and a three-file graph does not hold ``fft_size``,
``min_nb_erb_freqs`` or the lookaheads either.

Explained in notebook 02_stateful_export through :func:`dfnb.folder.inspect_folder`, which runs these checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CONFIG_KEYS", "WHY_UNVERIFIED", "GraphFacts", "graph_checks", "gru_layers", "MODEL_SR", "UNROLLED_GRU"]

MODEL_SR = 48000
"""The rate of every DeepFilterNet release (and of dfnb's hosts and CLI)."""

UNROLLED_GRU = re.compile(r"_gru\d+_split")
"""The gate split of a GRU that :func:`dfnb.precision.unroll_gru` unrolled (prefix ``_gru<k>_``)."""

CONFIG_KEYS = ("model", "sr", "fft_size", "hop_size", "nb_erb", "nb_df", "min_nb_erb_freqs", "norm_tau", "df_order",
               "df_lookahead", "conv_lookahead", "lsnr_min", "lsnr_max", "conv_ch", "emb_hidden_dim",
               "emb_num_layers", "df_hidden_dim", "df_num_layers", "conv_kernel", "conv_kernel_inp", "convt_kernel",
               "df_pathway_kernel_size_t")
"""The config.ini values a folder's output depends on (``model`` is ``[train] model``, the family)."""

WHY_UNVERIFIED = {
    "hop_size": "only the host's STFT uses it; no graph holds it",
    "norm_tau": "only the host's feature normalisation uses it; no graph holds it",
    "fft_size": "the host's STFT and ERB bands; a three-file graph does not hold it (a step graph does)",
    "min_nb_erb_freqs": "the host's ERB band widths; a three-file graph does not hold them (a step graph does)",
    "conv_lookahead": "the host applies the lookahead; a three-file graph does not hold it (a step graph does)",
    "df_lookahead": "the host's deep-filter window; a three-file graph does not hold it (a step graph does)",
    "model": "the family sets where the host's deep filter sits; here both families' graphs have the same widths",
    "lsnr_min": "the lsnr scaling was not found in the encoder graph",
    "lsnr_max": "the lsnr scaling was not found in the encoder graph",
}


def _constant(g: Any, name: str) -> np.ndarray | None:
    """The value of ``name`` in graph ``g`` if it is an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    for i in g.initializer:
        if i.name == name:
            return numpy_helper.to_array(i)
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] == name and n.attribute:
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def gru_layers(g: Any) -> list[tuple[int, int]]:
    """``(node index, hidden_size)`` of every GRU layer of ONNX graph ``g``, in node order: GRU nodes, and GRUs
    unrolled into MatMuls by :func:`dfnb.precision.unroll_gru` (counted at their gate split ``_gru<k>_split`` =
    ``[H, H, H]``). Read by the config checks here and by :mod:`dfnb.graph_sizes`."""
    out = []
    for k, n in enumerate(g.node):
        if n.op_type == "GRU":
            out += [(k, a.i) for a in n.attribute if a.name == "hidden_size"]
        elif n.op_type == "Split" and len(n.input) == 2 and UNROLLED_GRU.fullmatch(n.input[1]) and \
                n.input[0] == n.input[1][: -len("split")] + "gx":
            split = _constant(g, n.input[1])
            out += [(k, int(split[0]))] if split is not None and split.size == 3 else []
    return out


class GraphFacts:
    """The graphs of one folder, read once with the ``onnx`` package (no weights beyond the file itself)."""

    def __init__(self, folder: Path, files: tuple[str, ...]):
        import onnx

        self.graphs = {f: onnx.load(str(folder / f), load_external_data=False).graph for f in files}
        self.step = "step.onnx" in self.graphs

    def _const(self, g: Any, name: str) -> np.ndarray | None:
        return _constant(g, name)

    def kernels(self, f: str) -> list[tuple[int, ...]]:
        """Every Conv/ConvTranspose kernel of file ``f`` other than 1x1, in node (= module) order."""
        out = []
        for n in self.graphs[f].node:
            if n.op_type in ("Conv", "ConvTranspose"):
                k = next((tuple(a.ints) for a in n.attribute if a.name == "kernel_shape"), ())
                if k and any(v != 1 for v in k):
                    out.append(k)
        return out

    def conv_out_channels(self, f: str) -> int | None:
        """The largest output-channel count of the plain convs of ``f`` (the conv width, ``conv_ch``)."""
        g = self.graphs[f]
        shapes = {i.name: tuple(i.dims) for i in g.initializer}
        chans = [shapes[n.input[1]][0] for n in g.node if n.op_type == "Conv" and len(n.input) > 1
                 and len(shapes.get(n.input[1], ())) == 4]
        return max(chans) if chans else None

    def grus(self, f: str) -> list[int]:
        """``hidden_size`` of every GRU layer of ``f``, in node order (:func:`gru_layers`)."""
        return [h for _, h in gru_layers(self.graphs[f])]

    def lsnr_affine(self, f: str) -> tuple[float, float] | None:
        """``(scale, offset)`` of ``lsnr = sigmoid(.) * scale + offset``, traced back from the ``lsnr`` output."""
        g = self.graphs[f]
        made = {o: n for n in g.node for o in n.output}
        name, scale, offset = "lsnr", None, None
        for _ in range(6):
            n = made.get(name)
            if n is None:
                return None
            consts = [c for c in (self._const(g, i) for i in n.input) if c is not None and c.size == 1]
            ins = [i for i in n.input if self._const(g, i) is None]
            if n.op_type == "Add" and consts and offset is None and len(ins) == 1:
                offset = float(consts[0].reshape(-1)[0])
            elif n.op_type == "Mul" and consts and scale is None and len(ins) == 1:
                scale = float(consts[0].reshape(-1)[0])
            elif n.op_type == "Sigmoid":
                return (scale, offset) if scale is not None and offset is not None else None
            elif n.op_type not in ("Reshape", "Squeeze", "Unsqueeze", "Identity"):
                return None
            name = ins[0] if ins else n.input[0]
        return None

    def warmup_threshold(self) -> int | None:
        """The step graph's ``warmup >= L`` constant: the conv lookahead it was exported with."""
        g = self.graphs.get("step.onnx")
        for n in (g.node if g is not None else ()):
            if n.op_type == "GreaterOrEqual" and n.input[0] == "warmup":
                c = self._const(g, n.input[1])
                return None if c is None else int(round(float(c.reshape(-1)[0])))
        return None

    def erb_widths(self, n_bands: int, n_bins: int) -> tuple[int, ...] | None:
        """Band widths of the step graph's inverse ERB filterbank (the ``[nb_erb, F]`` 0/1 matrix of its mask)."""
        from onnx import numpy_helper

        g = self.graphs.get("step.onnx")
        for i in (g.initializer if g is not None else ()):
            if tuple(i.dims) == (n_bands, n_bins) and i.data_type == 1:
                a = numpy_helper.to_array(i)
                if np.isin(a, (0.0, 1.0)).all() and (a.sum(0) == 1).all():
                    return tuple(int(w) for w in a.sum(1))
        return None

    def df_window(self) -> tuple[int, int] | None:
        """``(df_order, nb_df)`` of the step graph's deep filter: the ``[1, O, nb_df]`` sums over the window."""
        import onnx

        g = self.graphs.get("step.onnx")
        if g is None:
            return None
        model = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # noqa: BLE001 -- best effort: the check is then listed as unverified
            return None
        dims = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                for v in inferred.value_info}
        for n in g.node:
            if n.op_type == "ReduceSum":
                d = dims.get(n.input[0])
                if d and len(d) == 3 and None not in d:
                    return d[1], d[2]
        return None


def _io_dim(info: Any, f: str, kind: str, name: str, axis: int) -> int | None:
    for n, shape, _ in info.io.get(f, {}).get(kind, ()):
        if n == name and len(shape) > axis and isinstance(shape[axis], int) and shape[axis] > 0:
            return shape[axis]
    return None


def graph_checks(info: Any) -> list[Callable[[Any], list[str]]]:
    """One check per fact the folder's graphs hold (see the module docstring), sharing one read of the graphs.
    Each takes the :class:`~dfnb.folder.FolderInfo`, returns problems and confirms keys (``info.confirm``)."""
    facts: dict = {}

    def g() -> GraphFacts:
        if "g" not in facts:
            facts["g"] = GraphFacts(info.path, info.files)
        return facts["g"]

    c = info.config

    def rate(info) -> list[str]:
        if c.sr != MODEL_SR:
            return [f"config.ini says sr = {c.sr}, but every DeepFilterNet model (and dfnb's hosts) runs at "
                    f"{MODEL_SR} Hz"]
        info.confirm("sr")
        return []

    def sizes(info) -> list[str]:
        """nb_erb / nb_df / fft_size from the graphs' inputs (the I/O check compares every shape)."""
        f = "step.onnx" if g().step else "enc.onnx"
        keys = [("nb_erb", _io_dim(info, f, "inputs", "feat_erb", 3), c.nb_erb),
                ("nb_df", _io_dim(info, f, "inputs", "feat_spec", 3), c.nb_df)]
        if g().step:
            keys.append(("fft_size", _io_dim(info, f, "inputs", "spec", 3), c.fft_size // 2 + 1))
        out = []
        for key, have, want in keys:
            if have is None:
                continue
            if have != want:
                shown = f"fft_size = {c.fft_size} ({want} bins)" if key == "fft_size" else f"{key} = {want}"
                out.append(f"config.ini says {shown}, but {f} takes {have}"
                           f"{' bins (fft_size ' + str(2 * (have - 1)) + ')' if key == 'fft_size' else ''}")
            else:
                info.confirm(key)
        return out

    def family(info) -> list[str]:
        if g().step:
            names = {i[0] for i in info.io["step.onnx"]["inputs"]}
            fam = "deepfilternet2" if {"masked_buf", "coef_buf"} <= names else "deepfilternet3"
            if fam != c.family:
                return [f"config.ini says model = {c.family}, but step.onnx is a {fam} model (its deep-filter "
                        f"buffers are {'masked_buf/coef_buf' if fam == 'deepfilternet2' else 'spec_buf only'})"]
            info.confirm("model")
            return []
        width = _io_dim(info, "erb_dec.onnx", "inputs", "emb", 2) or _io_dim(info, "df_dec.onnx", "inputs", "emb", 2)
        want = {"deepfilternet3": c.conv_ch * c.nb_erb // 4, "deepfilternet2": c.emb_hidden_dim}
        if width is None:
            return []
        other = "deepfilternet2" if c.family == "deepfilternet3" else "deepfilternet3"
        if width != want[c.family]:
            why = "conv_ch*nb_erb/4" if c.family == "deepfilternet3" else "emb_hidden_dim"
            fits = f"; {width} is what a {other} with this config.ini has" if width == want[other] else ""
            return [f"config.ini says model = {c.family}, whose embedding between encoder and decoders is {why} = "
                    f"{want[c.family]} wide, but the graphs' is {width}{fits}"]
        if want[other] != width:
            info.confirm("model")  # otherwise both families fit: listed as unverified
        info.confirm("conv_ch" if c.family == "deepfilternet3" else "emb_hidden_dim")
        return []

    def kernels(info) -> list[str]:
        k, kin, kt, kp = c.conv_kernel, c.conv_kernel_inp, c.convt_kernel, (c.df_pathway_kernel_size_t, 1)
        want = {"enc.onnx": [("conv_kernel_inp", kin), ("conv_kernel", k), ("conv_kernel", k), ("conv_kernel", k),
                             ("conv_kernel_inp", kin), ("conv_kernel", k)],
                "erb_dec.onnx": [("conv_kernel", k), ("convt_kernel", kt), ("convt_kernel", kt), ("conv_kernel", k)],
                "df_dec.onnx": [("df_pathway_kernel_size_t", kp)]}
        if g().step:
            want = {"step.onnx": want["enc.onnx"] + want["erb_dec.onnx"] + want["df_dec.onnx"]}
        out, bad = [], set()
        for f, rows in want.items():
            rows = [(key, tuple(v)) for key, v in rows if any(x != 1 for x in v)]
            have = g().kernels(f)
            if len(have) != len(rows):
                out.append(f"{f} has {len(have)} convs with a kernel larger than 1x1 ({have}) but config.ini's "
                           f"kernels give {len(rows)} ({[v for _, v in rows]})")
                bad |= {key for key, _ in rows}
                continue
            for (key, v), h in zip(rows, have):
                if tuple(v) != tuple(h) and key not in bad:
                    shown_v = ",".join(map(str, v if key != "df_pathway_kernel_size_t" else v[:1]))
                    shown_h = ",".join(map(str, h if key != "df_pathway_kernel_size_t" else h[:1]))
                    out.append(f"config.ini says {key} = {shown_v}, but {f} has a {shown_h} kernel there")
                    bad.add(key)
        info.confirm(*({"conv_kernel", "conv_kernel_inp", "convt_kernel", "df_pathway_kernel_size_t"} - bad))
        return out

    def channels(info) -> list[str]:
        have = g().conv_out_channels("step.onnx" if g().step else "enc.onnx")
        if have is None:
            return []
        if have != c.conv_ch:
            return [f"config.ini says conv_ch = {c.conv_ch}, but the encoder's convs have {have} channels"]
        info.confirm("conv_ch")
        return []

    def grus(info) -> list[str]:
        per = {"enc.onnx": [("emb_hidden_dim", c.emb_hidden_dim)],
               "erb_dec.onnx": [("emb_hidden_dim", c.emb_hidden_dim)] * (c.emb_num_layers - 1),
               "df_dec.onnx": [("df_hidden_dim", c.df_hidden_dim)] * c.df_num_layers}
        if g().step:
            per = {"step.onnx": per["enc.onnx"] + per["erb_dec.onnx"] + per["df_dec.onnx"]}
        out = []
        for f, rows in per.items():
            have = g().grus(f)
            if len(have) != len(rows):
                layers = {"erb_dec.onnx": "emb_num_layers - 1", "df_dec.onnx": "df_num_layers",
                          "enc.onnx": "1", "step.onnx": "1 + (emb_num_layers - 1) + df_num_layers"}[f]
                out.append(f"{f} has {len(have)} GRU layers but config.ini gives {layers} = {len(rows)} "
                           f"(emb_num_layers = {c.emb_num_layers}, df_num_layers = {c.df_num_layers})")
                continue
            for key, units in set(rows):
                mine = [h for (k2, _), h in zip(rows, have) if k2 == key]
                if set(mine) != {units}:
                    out.append(f"{f} has GRUs of {sorted(set(mine))} units but config.ini says {key}={units} "
                               "(files of different models)")
        if not out:
            info.confirm("emb_hidden_dim", "df_hidden_dim", "emb_num_layers", "df_num_layers")
        return out

    def lsnr(info) -> list[str]:
        f = "step.onnx" if g().step else "enc.onnx"
        aff = g().lsnr_affine(f)
        if aff is None:
            return []
        scale, offset = aff
        if abs(offset - c.lsnr_min) > 1e-3 or abs(scale - (c.lsnr_max - c.lsnr_min)) > 1e-3:
            return [f"config.ini says lsnr_min = {c.lsnr_min:g}, lsnr_max = {c.lsnr_max:g}, but {f} scales its "
                    f"local SNR to [{offset:g}, {offset + scale:g}] dB"]
        info.confirm("lsnr_min", "lsnr_max")
        return []

    def df_order(info) -> list[str]:
        if g().step:
            win = g().df_window()
            have = None if win is None else win[0]
        else:
            last = _io_dim(info, "df_dec.onnx", "outputs", "coefs", 3)
            have = None if last is None else last // 2
        if have is None:
            return []
        if have != c.df_order:
            return [f"config.ini says df_order = {c.df_order}, but the deep filter in the graphs has {have} taps"]
        info.confirm("df_order")
        return []

    def step_only(info) -> list[str]:
        """The ERB bands, the warm-up threshold and the deep-filter buffers of a step graph."""
        out = []
        widths = g().erb_widths(c.nb_erb, c.fft_size // 2 + 1)
        if widths is not None:
            if widths != tuple(info.cfg.erb_widths):
                out.append(_erb_diagnosis(c, widths, tuple(info.cfg.erb_widths)))
            else:
                info.confirm("min_nb_erb_freqs", "fft_size", "nb_erb")
        L = g().warmup_threshold()
        if L is not None:
            if L != c.conv_lookahead:
                out.append(f"config.ini says conv_lookahead = {c.conv_lookahead}, but step.onnx waits {L} hops "
                           "before the encoder sees a frame")
            else:
                info.confirm("conv_lookahead")
        shapes = {n: s for n, s, _ in info.io["step.onnx"]["inputs"]}
        buf = shapes.get("coef_buf" if c.family == "deepfilternet2" else "spec_buf")
        if L is not None and buf is not None and isinstance(buf[2], int) and "model" in info.verified:
            have = buf[2] - 1 if c.family == "deepfilternet2" else L + c.df_order - buf[2]
            if have != c.df_lookahead:
                out.append(f"config.ini says df_lookahead = {c.df_lookahead}, but step.onnx's deep-filter buffer is "
                           f"that of df_lookahead = {have}")
            else:
                info.confirm("df_lookahead")
        return out

    checks = [rate, sizes, family, kernels, channels, grus, lsnr, df_order]
    if info.variant == "step":
        checks.append(step_only)
    return checks


def _erb_diagnosis(c: Any, have: tuple[int, ...], want: tuple[int, ...]) -> str:
    """Which of sr / min_nb_erb_freqs (fft_size and nb_erb are checked by the shapes) explains the graph's bands."""
    import libdf

    def widths(sr: int, mn: int) -> tuple[int, ...]:
        try:
            return tuple(int(w) for w in libdf.DF(sr, c.fft_size, c.hop_size, c.nb_erb, mn).erb_widths())
        except BaseException:  # noqa: BLE001 -- libdf panics on impossible layouts
            return ()

    hint = ""
    for mn in range(1, 33):
        if mn != c.min_nb_erb_freqs and widths(c.sr, mn) == have:
            hint = f"; they are the bands of min_nb_erb_freqs = {mn}"
            break
    else:
        for sr in (8000, 16000, 22050, 24000, 32000, 44100, 48000, 96000):
            if sr != c.sr and widths(sr, c.min_nb_erb_freqs) == have:
                hint = f"; they are the bands of sr = {sr}"
                break
    return (f"config.ini's sr = {c.sr}, fft_size = {c.fft_size}, nb_erb = {c.nb_erb}, min_nb_erb_freqs = "
            f"{c.min_nb_erb_freqs} give ERB bands {list(want)[:8]}…, but step.onnx's inverse ERB filterbank has "
            f"{list(have)[:8]}…{hint}")
