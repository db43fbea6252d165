"""Fill deepfilternet's own PyTorch ``DfNet`` with every weight of an official DeepFilterNet ONNX release.

A release (``*_onnx.tar.gz`` or its unpacked folder) holds ``enc.onnx``, ``erb_dec.onnx``, ``df_dec.onnx``
and ``config.ini``. The model is built from that ``config.ini`` by deepfilternet itself
(:func:`dfnb.models.build_model`), every float entry of its ``state_dict`` is set to NaN, then filled here.
An import that leaves one NaN behind fails, so nothing keeps a random or default value by accident.

How ONNX tensors are matched to PyTorch parameters
--------------------------------------------------
Node scope names differ between exports (``/erb_conv1/0/Conv`` vs ``/erb_conv2/Conv`` vs
``/erb_conv0/erb_conv0.1/Conv``) and folded tensors are called ``onnx::Conv_282``; only the graph
(``enc``/``erb_dec``/``df_dec``) is reliable. So matching is by structure, order and shape:

* Each graph is reduced to its weight-carrying ops in node (= traced execution) order, in four kinds:
  ``conv`` (Conv/ConvTranspose), ``gru`` (one GRU node per layer), ``einsum`` (GroupedLinearEinsum) and
  ``linear`` (MatMul + Add, or Gemm). Tensors are read from graph initializers *and* ``Constant`` nodes,
  through Identity/Reshape/Transpose/Squeeze/Unsqueeze/Cast of constants.
* The PyTorch side is the same list, recorded with forward pre-hooks while ``DfNet.forward`` runs on
  zeros, then split by top-level submodule. Modules the forward never calls (DFN3's ``df_fc_a``, still in
  its ``df_dec.onnx``) are appended at the end of their kind, in definition order.
* The two lists are zipped per kind; count, weight shape, groups, kernel and stride must agree, or a
  :class:`~dfnb.errors.ModelError` names the first parameter that differs, with both shapes.

Conversions:

* Conv + BatchNorm were folded by the exporter into the conv that precedes the BN, i.e. the LAST conv of
  a separable group (depthwise conv -> 1x1 conv -> BN): the depthwise weight is raw, the 1x1 weight and
  the ONNX bias are the fused ones. The fused weight goes into that conv; the BN becomes identity plus
  bias: weight 1, bias = fused bias, running_mean 0, running_var ``1 - eps`` (float32(1-1e-5) + 1e-5 is
  exactly 1.0 in float32, so BN(x) = x + b to rounding; the test measures < 1e-6).
* GRU: ONNX ``W``/``R`` are ``[1, 3H, I]`` in gate order z, r, h; torch wants r, z, n. ``B`` is
  ``[Wb | Rb]`` and becomes ``bias_ih``/``bias_hh``. ``linear_before_reset=1`` is torch's GRU.
* Einsum weights are permuted to ``[groups, in, out]`` by reading the equation's subscripts.
* MatMul weights are ``[in, out]``, torch Linear wants ``[out, in]``.
* Buffers come from config + libdf: ``erb_fb`` / ``mask.erb_inv_fb`` via ``df.modules.erb_fb`` of the
  release's ``DF(...).erb_widths()``; BN ``num_batches_tracked`` = 0.

Not in any graph: the conv-lookahead feature shift (``pad_feat`` in DFN3, ``pad`` in DFN2) is done by the
caller before ``enc.onnx``; it has no weights. Float tensors that are not weights are accounted for in the
report's ``ignored`` (the ``Pad`` fill value 0, and the lsnr scale/offset, which are checked against
``lsnr_max - lsnr_min`` / ``lsnr_min`` of the config). Integer tensors are shape constants and not listed.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfnb.errors import AssetNotFoundError, ModelError

__all__ = ["ONNX_PARTS", "read_release", "fill_from_onnx", "fill_from_graphs", "poison_"]

ONNX_PARTS = ("enc", "erb_dec", "df_dec")
_FILES = ("config.ini",) + tuple(f"{p}.onnx" for p in ONNX_PARTS)
_FOLDABLE = {"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Cast", "Slice", "Concat"}


def read_release(path: Path) -> dict[str, bytes]:
    """Return ``{"config.ini": ..., "enc.onnx": ..., ...}`` (bytes) from a release tarball or folder.

    Files are found by name anywhere inside (releases use ``tmp/export/``); nothing is extracted to disk.
    """
    path = Path(path)
    if not path.exists():
        raise AssetNotFoundError(f"ONNX release not found at {path}. Pass an official *_onnx.tar.gz or its unpacked "
                                 "folder.")
    try:
        if path.is_dir():
            hits: dict[str, list[Any]] = {f: sorted(path.rglob(f)) for f in _FILES}
            data = {f: h[0].read_bytes() for f, h in hits.items() if len(h) == 1}
        else:
            with tarfile.open(path) as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                hits = {f: [m for m in members if m.name.rsplit("/", 1)[-1] == f] for f in _FILES}
                data = {f: tar.extractfile(h[0]).read() for f, h in hits.items() if len(h) == 1}
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ModelError(f"Cannot read {path} ({e.__class__.__name__}: {e}). Copy the official release again.") from e
    bad = {f: len(h) for f, h in hits.items() if len(h) != 1}
    if bad:
        raise ModelError(f"{path} is not a DeepFilterNet ONNX release: expected exactly one of each of "
                         f"{', '.join(_FILES)}, found {bad}. Pass an official *_onnx.tar.gz or its unpacked folder.")
    return data


def poison_(net: Any) -> None:
    """Set every float entry of ``net.state_dict()`` to NaN, in place."""
    import torch

    with torch.no_grad():
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.fill_(float("nan"))


# ---------------------------------------------------------------- ONNX side
@dataclass
class _Op:
    kind: str
    node: str
    tensors: list[str]                          # original tensor names (for the report)
    values: dict[str, Any]                      # role -> numpy array
    attrs: dict[str, Any] = field(default_factory=dict)


def _graph_ops(model: Any, part: str, ignored: dict[str, str], lsnr: tuple[float, float]) -> tuple[list[_Op], set[str]]:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    g = model.graph
    vals = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    origin = {k: {k} for k in vals}
    for n in g.node:
        ins = [i for i in n.input if i]
        if n.op_type == "Constant":
            a = n.attribute[0]
            vals[n.output[0]] = (numpy_helper.to_array(a.t) if a.name == "value"
                                 else np.asarray(onnx.helper.get_attribute_value(a)))
            origin[n.output[0]] = {n.output[0]}
        elif n.op_type in _FOLDABLE and ins and all(i in vals for i in ins):
            x, at = vals[ins[0]], {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            if n.op_type == "Reshape":
                x = x.reshape([d if d else x.shape[i] for i, d in enumerate(vals[ins[1]].tolist())])
            elif n.op_type == "Transpose":
                x = np.transpose(x, at.get("perm"))
            elif n.op_type in ("Squeeze", "Unsqueeze"):
                axes = at.get("axes", vals[ins[1]].tolist() if len(ins) > 1 else None)
                sq = n.op_type == "Squeeze"
                x = np.squeeze(x, tuple(axes) if axes else None) if sq else np.expand_dims(x, tuple(axes))
            elif n.op_type == "Cast":
                x = x.astype(onnx.helper.tensor_dtype_to_np_dtype(at["to"]))
            elif n.op_type == "Slice":  # torch's dynamo exporter reorders GRU gates with Slice + Concat
                st, en = vals[ins[1]].tolist(), vals[ins[2]].tolist()
                ax = vals[ins[3]].tolist() if len(ins) > 3 else list(range(len(st)))
                sp = vals[ins[4]].tolist() if len(ins) > 4 else [1] * len(st)
                cut = {a: slice(b, e, k) for a, b, e, k in zip(ax, st, en, sp)}
                x = x[tuple(cut.get(a, slice(None)) for a in range(x.ndim))]
            elif n.op_type == "Concat":
                x = np.concatenate([vals[i] for i in ins], axis=at["axis"])
            vals[n.output[0]] = x
            origin[n.output[0]] = set().union(*(origin.get(i, set()) for i in ins))
    floats = {k for k in origin if len(origin[k]) == 1 and k in origin[k] and vals[k].dtype.kind == "f"}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def src(name: str) -> list[str]:
        return sorted(origin.get(name, ()))

    ops: list[_Op] = []
    for n in g.node:
        at = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        ins = list(n.input)
        if n.op_type in ("Conv", "ConvTranspose") and ins[1] in vals:
            v = {"W": vals[ins[1]]}
            if len(ins) > 2 and ins[2]:
                v["B"] = vals[ins[2]]
            ops.append(_Op("conv", n.name, sum((src(i) for i in ins[1:] if i), []), v,
                           {"transposed": n.op_type == "ConvTranspose", "group": at.get("group", 1),
                            "kernel": tuple(at.get("kernel_shape", v["W"].shape[2:])),
                            "strides": tuple(at.get("strides", (1, 1)))}))
        elif n.op_type == "GRU":
            if at.get("linear_before_reset", 0) != 1 or at.get("direction", b"forward") not in (b"forward", "forward"):
                raise ModelError(f"{part}.onnx GRU {n.name} is not a forward GRU with linear_before_reset=1; torch's "
                                 "nn.GRU cannot hold it.")
            h = at["hidden_size"]
            b = vals[ins[3]] if len(ins) > 3 and ins[3] else np.zeros((1, 6 * h), np.float32)  # B is optional
            ops.append(_Op("gru", n.name, sum((src(i) for i in ins[1:4] if i), []),
                           {"W": vals[ins[1]], "R": vals[ins[2]], "B": b}, {"hidden": h}))
        elif n.op_type == "Einsum":
            wi = next(i for i, x in enumerate(ins) if x in vals)
            subs, out = at["equation"].decode().replace(" ", "").split("->")
            subs = subs.split(",")
            x_s, w_s = subs[1 - wi], subs[wi]
            gl = next(c for c in w_s if c in x_s and c in out)
            il = next(c for c in w_s if c in x_s and c not in out)
            hl = next(c for c in w_s if c in out and c not in x_s)
            w = np.transpose(vals[ins[wi]], [w_s.index(gl), w_s.index(il), w_s.index(hl)])
            ops.append(_Op("einsum", n.name, src(ins[wi]), {"W": w}))
        elif n.op_type in ("MatMul", "Gemm") and ins[1] in vals and vals[ins[1]].ndim == 2:
            w = vals[ins[1]]
            w = w if (n.op_type == "Gemm" and at.get("transB", 0)) else w.T
            names, v = src(ins[1]), {"W": w}
            if n.op_type == "Gemm" and len(ins) > 2 and ins[2]:
                v["B"], names = vals[ins[2]], names + src(ins[2])
            else:
                for c in consumers.get(n.output[0], []):
                    b = [i for i in c.input if i in vals]
                    if c.op_type == "Add" and b:
                        v["B"], names = vals[b[0]], names + src(b[0])
            ops.append(_Op("linear", n.name, names, v))
    # float constants that are not weights: Pad fill values and the lsnr scale/offset (checked)
    for n in g.node:
        for idx, i in enumerate(n.input):
            if i not in floats or vals[i].size != 1:
                continue
            x = float(vals[i].reshape(()))
            if n.op_type == "Pad" and idx == 2 and x == 0.0:
                ignored[f"{part}:{i}"] = "Pad fill value 0.0 (ConstantPad2d), not a weight"
            elif part == "enc" and n.op_type in ("Mul", "Add") and not any(i in op.tensors for op in ops):
                want = lsnr[0] if n.op_type == "Mul" else lsnr[1]
                if abs(x - want) > 1e-6 * max(1.0, abs(want)):
                    raise ModelError(f"enc.onnx lsnr {'scale' if n.op_type == 'Mul' else 'offset'} is {x}, config.ini "
                                     f"gives {want}: the config.ini does not belong to these weights. Use the "
                                     "release's own config.ini.")
                what = "scale (lsnr_max - lsnr_min)" if n.op_type == "Mul" else "offset (lsnr_min)"
                ignored[f"{part}:{i}"] = f"lsnr {what} = {x}, equals config.ini"
    return ops, {f"{part}:{k}" for k in floats}


# ---------------------------------------------------------------- torch side
def _kind(m: Any) -> str | None:
    from torch import nn

    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        return "conv"
    if isinstance(m, nn.GRU):
        return "gru"
    if isinstance(m, nn.Linear):
        return "linear"
    if type(m).__name__ == "GroupedLinearEinsum":
        return "einsum"
    return None


def _torch_ops(net: Any, spec: Any) -> dict[str, dict[str, list[tuple[str, Any, bool]]]]:
    """Per part and kind: (name, module, called) in forward execution order, never-called modules last."""
    import torch

    names = {m: n for n, m in net.named_modules()}
    order: list[Any] = []
    hooks = [m.register_forward_pre_hook(lambda m, _i: order.append(m) if m not in order else None)
             for m in names if _kind(m)]
    t = 3 + max(spec.conv_lookahead, spec.df_lookahead, spec.df_order)
    try:
        with torch.no_grad():
            net(torch.zeros(1, 1, t, spec.freq_bins, 2), torch.zeros(1, 1, t, spec.nb_erb),
                torch.zeros(1, 1, t, spec.nb_df, 2))
    finally:
        for h in hooks:
            h.remove()
    called = set(order)
    order += [m for m in names if _kind(m) and m not in called]
    out: dict[str, dict[str, list[tuple[str, Any, bool]]]] = {p: {} for p in ONNX_PARTS}
    for m in order:
        part = names[m].split(".")[0]
        if part in out:
            out[part].setdefault(_kind(m), []).append((names[m], m, m in called))
    return out


def _next_bn(net: Any, name: str) -> tuple[str, Any] | None:
    from torch import nn

    parent, _, idx = name.rpartition(".")
    seq = net.get_submodule(parent) if parent else None
    if isinstance(seq, nn.Sequential) and idx.isdigit() and str(int(idx) + 1) in seq._modules:
        nxt = seq._modules[str(int(idx) + 1)]
        if isinstance(nxt, nn.BatchNorm2d):
            return f"{parent}.{int(idx) + 1}", nxt
    return None


# ---------------------------------------------------------------- fill
def fill_from_onnx(net: Any, spec: Any, files: dict[str, bytes]) -> dict:
    """Copy every weight from the three graphs of ``files`` (see :func:`read_release`) into ``net``."""
    import onnx

    parts = {}
    for part in ONNX_PARTS:
        try:
            parts[part] = [onnx.load_model_from_string(files[f"{part}.onnx"])]
        except Exception as e:  # protobuf DecodeError and friends
            raise ModelError(f"{part}.onnx of this release is not a readable ONNX model ({e}). Copy the release "
                             "again.") from e
    return fill_from_graphs(net, spec, parts)


def fill_from_graphs(net: Any, spec: Any, parts: dict[str, list[Any]]) -> dict:
    """Copy every weight into ``net`` from ONNX graphs grouped by model part (``enc``/``erb_dec``/``df_dec``;
    a part may span several graphs, e.g. deepfilter-rt's ``enc_conv`` + ``enc_gru``, taken in order)."""
    import numpy as np
    import torch
    from torch import nn

    from dfnb.compat import CONFIG_LOCK, import_df

    new: dict[str, Any] = {}
    mapping, ignored = {}, {}  # parameter -> "part.onnx:tensor...", tensor -> why it is not a weight
    used, all_floats, zero_filled, bn_identity = set(), set(), [], []
    tops = _torch_ops(net, spec)
    lsnr = (spec.lsnr_max - spec.lsnr_min, spec.lsnr_min)

    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}

    def put(pname: str, value: Any, part: str, op: _Op, how: str = "") -> None:
        want = shapes[pname]
        got = tuple(np.shape(value))
        if got != want:
            raise ModelError(f"config.ini and ONNX weights disagree at {pname}: the model built from config.ini "
                             f"expects {want}, {part}.onnx ({op.node}, {', '.join(op.tensors)}) has {got}. "
                             "Use the config.ini that came with these ONNX files.")
        new[pname] = torch.from_numpy(np.array(value, dtype=np.float32, order="C", copy=True))
        mapping[pname] = f"{part}.onnx:{'+'.join(op.tensors)}{how}"

    for part in ONNX_PARTS:
        ops = []
        for model in parts[part]:
            more, floats = _graph_ops(model, part, ignored, lsnr)
            ops += more
            all_floats |= floats
        for kind in ("conv", "gru", "einsum", "linear"):
            o_list = [op for op in ops if op.kind == kind]
            t_list = tops[part].get(kind, [])
            if kind == "gru":  # one ONNX node per torch layer
                t_list = [(f"{n}@{layer}", m, c) for n, m, c in t_list for layer in range(m.num_layers)]
            extra = t_list[len(o_list):]
            if len(o_list) > len(t_list) or any(c for _, _, c in extra):
                raise ModelError(f"config.ini and ONNX weights disagree in {part}: the model built from config.ini "
                                 f"has {len(t_list)} {kind} layers ({', '.join(n for n, _, _ in t_list) or 'none'}), "
                                 f"{part}.onnx has {len(o_list)}. Use the config.ini that came with these ONNX files.")
            for tname, m, _ in extra:  # modules DfNet.forward never calls and the graph does not hold
                for pn, p in m.named_parameters():
                    new[f"{tname}.{pn}"] = torch.zeros_like(p)
                    zero_filled.append(f"{tname}.{pn}")
            for i, (tname, m, _) in enumerate(t_list[:len(o_list)]):
                op = o_list[i]
                used.update(f"{part}:{t}" for t in op.tensors)
                if kind == "conv":
                    put(f"{tname}.weight", op.values["W"], part, op, ".W")
                    have = {"transposed": isinstance(m, nn.ConvTranspose2d), "group": m.groups,
                            "kernel": tuple(m.kernel_size), "strides": tuple(m.stride)}
                    if have != op.attrs:
                        raise ModelError(f"config.ini and ONNX weights disagree at {tname}: the model built from "
                                         f"config.ini has {have}, {part}.onnx {op.node} has {op.attrs}. Use the "
                                         "config.ini that came with these ONNX files.")
                    bias = op.values.get("B", np.zeros(m.out_channels, np.float32))
                    bn = _next_bn(net, tname)
                    if bn is not None:
                        bname, bmod = bn
                        put(f"{bname}.bias", bias, part, op, ".B (folded BN)")
                        put(f"{bname}.weight", np.ones_like(bias), part, op, " (BN identity)")
                        put(f"{bname}.running_mean", np.zeros_like(bias), part, op, " (BN identity)")
                        var = np.full_like(bias, np.float32(1.0) - np.float32(bmod.eps))
                        put(f"{bname}.running_var", var, part, op, " (BN identity)")
                        bn_identity.append(bname)
                        if m.bias is not None:
                            put(f"{tname}.bias", np.zeros_like(bias), part, op, " (bias moved to BN)")
                    elif m.bias is not None:
                        put(f"{tname}.bias", bias, part, op, ".B")
                    elif "B" in op.values:
                        raise ModelError(f"{part}.onnx {op.node} has a bias but {tname} has neither a bias nor a "
                                         "BatchNorm after it.")
                elif kind == "gru":
                    gname, layer = tname.split("@")
                    h = op.attrs["hidden"]
                    zrh = lambda a, h=h: np.concatenate([a[h:2 * h], a[:h], a[2 * h:3 * h]], 0)  # noqa: E731  z,r,h -> r,z,n
                    put(f"{gname}.weight_ih_l{layer}", zrh(op.values["W"][0]), part, op, ".W[z,r,h->r,z,n]")
                    put(f"{gname}.weight_hh_l{layer}", zrh(op.values["R"][0]), part, op, ".R[z,r,h->r,z,n]")
                    put(f"{gname}.bias_ih_l{layer}", zrh(op.values["B"][0][:3 * h]), part, op, ".B[:3H]")
                    put(f"{gname}.bias_hh_l{layer}", zrh(op.values["B"][0][3 * h:]), part, op, ".B[3H:]")
                elif kind == "einsum":
                    put(f"{tname}.weight", op.values["W"], part, op)
                else:
                    put(f"{tname}.weight", op.values["W"], part, op, ".T")
                    if m.bias is not None:
                        put(f"{tname}.bias", op.values.get("B", np.zeros(m.out_features, np.float32)), part, op, ".B")

    import_df()
    from df.modules import erb_fb

    with CONFIG_LOCK:  # erb_fb reads deepfilternet's config (device)
        widths = np.asarray(spec.erb_widths)
        new["erb_fb"] = erb_fb(widths, spec.sr, inverse=False).cpu()
        new["mask.erb_inv_fb"] = erb_fb(widths, spec.sr, inverse=True).cpu()
    mapping["erb_fb"] = mapping["mask.erb_inv_fb"] = "df.modules.erb_fb(libdf DF(...).erb_widths()) from config.ini"

    state = net.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            if k.endswith("num_batches_tracked"):
                v.zero_()
            elif k in new:
                v.copy_(new[k])
    left = [k for k, v in state.items() if v.is_floating_point() and (k not in new or torch.isnan(v).any())]
    if left:
        raise ModelError(f"ONNX import left {len(left)} state entries unfilled ({', '.join(left[:5])}...). "
                         "The release does not match what this deepfilternet builds from its config.ini.")
    net.eval()
    return {"mapping": mapping, "used": sorted(used), "ignored": ignored,
            "unused": sorted(all_floats - used - set(ignored)), "zero_filled": zero_filled, "bn_identity": bn_identity}
