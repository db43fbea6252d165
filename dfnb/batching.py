"""A step graph for many streams at once: the batched export behind ``dfnb export --variant step --streams N``.

One ``step.onnx`` call advances one hop of *every* active stream: each GRU's weights are read from memory
once per hop and multiply a ``[B, H]`` matrix of hidden states instead of one vector, so the cost per stream
falls far below the single-stream weight-bandwidth floor (``benchmarks/latency.py --streams``).

The graph is :class:`dfnb.streaming.StepModel`'s hop with a batch axis ``B`` (dynamic: any number of streams
per call), and what a multi-stream host needs:

* **batch-leading states**: every state is ``[B, ...]`` (the GRU hidden states, ``[layers, 1, H]`` for one
  stream, become ``[B, layers, H]`` and are transposed inside the graph), so stream ``i``'s state is the
  contiguous row ``i`` of every buffer: a host keeps its active streams in rows ``0..k-1``, runs the graph on
  those rows only, and moves one row when a stream leaves;
* **no warm-up input**: the first ``conv_lookahead`` hops of a stream only fill its spectrum buffer (the
  single-stream graph gates this with its ``warmup`` counter). Streams join at different hops, so the host
  does it per row: after the call it puts back every state but ``spec_buf`` for rows still warming up
  (:class:`dfnb.hosts.batched.BatchedHost`) — what the gated graph computes.

and four rewrites that compute the same numbers with kernels that scale with ``B`` (onnxruntime's generic
Einsum, depthwise ConvTranspose and last-axis broadcasting are slow on batches; a ``[B, 64, 4, 96]`` past
buffer costs a large Concat + Slice per hop):

* grouped linear layers (``einsum btgi,gih->btgh``) → one MatMul over the groups (same dot products);
* the depthwise stride-2 transposed convs → two products and one two-term sum per output (bit-identical:
  each output of that ConvTranspose is a sum of at most two products);
* the ERB mask → the inverse filterbank with every column doubled, applied to the ``[re, im]`` pairs
  without broadcasting (bit-identical);
* the DF pathway conv (time kernel ``k``, deepfilternet's ``df_convp``) → *running partial sums*: each hop
  multiplies the new frame by all ``k`` taps once and adds it into ``k - 1`` partial outputs, so the state
  is ``[B, k-1, C_out, 1, F]`` instead of ``[B, C_in, k-1, F]``. Rounding differs from the one-shot conv
  (five partial dot products instead of one), far below the exactness bar: the verification and the tests
  measure it.

:func:`export_batched` writes such a folder (``step.onnx``, ``config.ini``, ``manifest.json`` with a
``batch`` section) through :func:`dfnb.export.export_model`, verified stream by stream against the
single-stream PyTorch step.

Notebook: 05_realtime
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError

__all__ = ["BATCH_DIM", "BatchedStepModel", "write_batched_step", "batch_manifest", "export_batched",
           "model_of_step_folder"]

BATCH_DIM = "B"
_VERIFY_TICKS = 24
"""Hops the export compares, stream by stream, with the single-stream PyTorch step (longer than every state's
memory: conv pasts, lookahead and the deep-filter buffer all turn over several times)."""
_GRU_GROUPS = ("gru_enc", "gru_erb", "gru_df")


def _rewrites():
    """The torch modules that replace deepfilternet's slow-on-batches layers (see the module docstring)."""
    import torch

    nn = torch.nn

    class GroupedMatMul(nn.Module):
        def __init__(self, lin):
            super().__init__()
            self.weight, self.groups, self.ws = lin.weight, lin.groups, lin.ws

        def forward(self, x):  # [B, T, G*I] -> [G, BT, I] @ [G, I, H] -> [B, T, G*H]
            b, t, _ = x.shape
            y = torch.matmul(x.reshape(b * t, self.groups, self.ws).transpose(0, 1), self.weight)
            return y.transpose(0, 1).reshape(b, t, -1)

    class DepthwiseUp2(nn.Module):
        """``ConvTranspose2d(C, C, (1, 3), stride (1, 2), padding (0, 1), output_padding (0, 1), groups=C)``:
        ``y[2i] = w1 x[i]``, ``y[2i+1] = w2 x[i] + w0 x[i+1]``."""

        def __init__(self, ct):
            super().__init__()
            w = ct.weight.detach()[:, 0, 0, :]  # [C, 3]
            self.w0, self.w1, self.w2 = (w[:, k].reshape(1, -1, 1, 1).clone() for k in range(3))

        def forward(self, x):  # [B, C, T, W] -> [B, C, T, 2W]
            nxt = torch.cat([x[..., 1:], torch.zeros_like(x[..., :1])], dim=-1)
            even, odd = x * self.w1, x * self.w2 + nxt * self.w0
            return torch.stack([even, odd], dim=-1).flatten(-2)

    class TapSumConv(nn.Module):
        """A ConvWithPast whose first layer is ``Conv2d(Cin, Cout, (k, 1), groups=g, bias=False)``, streamed as
        running partial sums: ``.past`` is ``[B, k-1, Cout, 1, F]`` (``past[:, m]``: the part of output
        ``t+1+m`` that frames up to ``t`` contribute)."""

        def __init__(self, wrapper):
            super().__init__()
            conv = wrapper.body[0]
            k, g, cout = conv.kernel_size[0], conv.groups, conv.out_channels
            w = conv.weight.detach()  # [Cout, Cin/g, k, 1]
            cpg = cout // g
            # the k taps as output channels of one grouped 1x1 conv: group gi, tap j, channel o
            self.register_buffer("w_taps", w.reshape(g, cpg, -1, k, 1).permute(0, 3, 1, 2, 4)
                                 .reshape(g * k * cpg, -1, 1, 1).clone())
            self.k, self.g, self.cpg, self.cout = k, g, cpg, cout
            self.rest = nn.Sequential(*list(wrapper.body)[1:])
            self.name = wrapper.name
            self.past = None

        def forward(self, x):  # x [B, Cin, 1, F]
            b, f = x.shape[0], x.shape[-1]
            p = nn.functional.conv2d(x, self.w_taps, groups=self.g)  # [B, g*k*cpg, 1, F]
            p = p.reshape(b, self.g, self.k, self.cpg, 1, f).transpose(1, 2).reshape(b, self.k, self.cout, 1, f)
            k, acc = self.k, self.past
            y = acc[:, 0] + p[:, k - 1]  # sum over taps in order 0..k-1
            nxt = [acc[:, m + 1] + p[:, k - 2 - m] for m in range(k - 2)] + [p[:, 0]]
            self.past = torch.stack(nxt, dim=1)
            return self.rest(y)

    return GroupedMatMul, DepthwiseUp2, TapSumConv


def _replace(root, match, make) -> int:
    n = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, make(child))
                n += 1
    return n


def BatchedStepModel(step_model: Any):  # a factory with a class's name: keeps the torch import lazy
    """A ``torch.nn.Module``: the hop of ``step_model`` (a :func:`dfnb.streaming.StepModel`) for ``B`` streams.

    ``forward(spec [B,1,1,F,2], feat_erb [B,1,1,E], feat_spec [B,1,1,Fdf,2], *states) -> (enh [B,1,1,F,2],
    lsnr [B,1,1], *next_states)``; ``.states`` lists ``(name, shape without B, group, in, out)`` in graph
    order. Built from a copy of ``step_model``'s modules (deepfilternet's own encoder/decoders); only the
    hop's glue is written again here, because StepModel's glue fixes the batch to 1 (``reshape(1, 1, 1, ...)``).
    """
    import copy

    import torch
    from df.modules import GroupedLinearEinsum

    GroupedMatMul, DepthwiseUp2, TapSumConv = _rewrites()

    class _Batched(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.step = s = copy.deepcopy(step_model)
            self.rewrites = {
                "grouped_linear": _replace(s, lambda m: isinstance(m, GroupedLinearEinsum), GroupedMatMul),
                "convtranspose": _replace(s, lambda m: isinstance(m, torch.nn.ConvTranspose2d) and
                                          m.kernel_size == (1, 3) and m.stride == (1, 2) and m.padding == (0, 1)
                                          and m.output_padding == (0, 1) and m.groups == m.in_channels ==
                                          m.out_channels and m.bias is None, DepthwiseUp2)}
            self.gru_of = {k.replace(".", "_"): w for k, w in s.grus.items()}
            self.conv_of = {k.replace(".", "_"): w for k, w in s.convs.items()}
            tap = s.convs.get("df_dec.df_convp")
            first = tap.body[0] if tap is not None else None
            self.rewrites["tap_sum_conv"] = int(isinstance(first, torch.nn.Conv2d) and first.kernel_size[1] == 1
                                                 and first.bias is None and s.df_dec.df_convp is tap)
            if self.rewrites["tap_sum_conv"]:
                self.conv_of["df_dec_df_convp"] = s.df_dec.df_convp = TapSumConv(tap)
            if s.mask.post_filter:
                raise ExportError("the model's Mask has its post-filter on; the batched export computes the plain "
                                  "mask (as the single-stream step does in eval mode). Export it without.")
            fb = s.mask.erb_inv_fb.detach()
            self.register_buffer("fb2", fb.repeat_interleave(2, dim=1).clone())  # [E, 2F]: columns doubled
            self.states = []
            for d in s.descs:
                if d.name == "warmup":
                    continue
                shape = list(d.shape)
                if d.group in _GRU_GROUPS:
                    shape = [shape[0], *shape[2:]]  # [layers, 1, H] -> [layers, H]
                elif d.name == "df_dec_df_convp" and self.rewrites["tap_sum_conv"]:
                    t = s.df_dec.df_convp
                    shape = [t.k - 1, t.cout, 1, shape[-1]]
                else:
                    shape = shape[1:]
                self.states.append((d.name, tuple(shape), d.group, *d.io))
            self.state_names = [st[0] for st in self.states]

        def forward(self, spec_in, feat_erb, feat_spec, *states):
            s = self.step
            st = dict(zip(self.state_names, states))
            for name, w in self.gru_of.items():
                w.h = st[name].transpose(0, 1)  # [B, layers, H] -> [layers, B, H]
            for name, w in self.conv_of.items():
                w.past = st[name]
            fs = feat_spec.squeeze(1).permute(0, 3, 1, 2)  # [B, 2, 1, nb_df], as DfNet.forward does
            e0, e1, e2, e3, emb, c0, lsnr = s.enc(feat_erb, fs)
            m = s.erb_dec(emb, e3, e2, e1, e0)
            dec = s.df_dec(emb, c0)
            coefs = s.df_out_transform(dec[0] if isinstance(dec, tuple) else dec)  # [B, O, 1, nb_df, 2]
            new = {name: w.h.transpose(0, 1) for name, w in self.gru_of.items()}
            new.update({name: w.past for name, w in self.conv_of.items()})
            spec_buf = torch.cat([st["spec_buf"][:, :, 1:], spec_in], dim=2)
            new["spec_buf"] = spec_buf
            r, L, o, dfl, nb = spec_buf.shape[2], s.L, s.order, s.dfl, s.nb_df
            raw = spec_buf[:, :, r - 1 - L : r - L]  # raw frame at encoder time t, [B, 1, 1, F, 2]
            spec_m = (raw.flatten(3) * m.matmul(self.fb2)).unflatten(3, (-1, 2))  # == Mask()(raw, m)
            if s.family == "deepfilternet3":
                lo = r - 1 - L - (o - 1 - dfl)
                window, c, base = spec_buf[:, :, lo : lo + o], coefs[:, :, 0], spec_m
            else:
                new["masked_buf"] = torch.cat([st["masked_buf"][:, :, 1:], spec_m], dim=2)
                new["coef_buf"] = torch.cat([st["coef_buf"][:, :, 1:], coefs], dim=2)
                window, c = new["masked_buf"], new["coef_buf"][:, :, 0]
                base = window[:, :, o - 1 - dfl : o - dfl]
            w = window[:, 0, :, :nb]  # [B, O, nb_df, 2]; deepfilternet's multiframe.df in real arithmetic
            wr, wi, cr, ci = w[..., 0], w[..., 1], c[..., 0], c[..., 1]
            low = torch.stack([(wr * cr - wi * ci).sum(dim=1), (wr * ci + wi * cr).sum(dim=1)], dim=-1)
            out = torch.cat([low[:, None, None], base[:, :, :, nb:]], dim=3)
            return (out, lsnr.reshape(-1, 1, 1), *[new[n] for n in self.state_names])

    return _Batched().eval()


def write_batched_step(step_model: Any, tmp: Path, feats: dict, streams: int, *, opset: int = 17) -> tuple[dict, Any]:
    """Export the batched graph of ``step_model`` as ``tmp/step.onnx`` and verify it stream by stream.

    Up to 4 streams start at different hops of the real clip's features (``feats``, from the export) and run
    40 hops through the batched graph in onnxruntime (warm-up done per row, as the host does) and, one by one,
    through the single-stream PyTorch step. Returns ``({"step.onnx": max abs difference}, batched module)``.
    """
    import warnings

    import onnxruntime as ort
    import torch

    bm = BatchedStepModel(step_model)
    spec, fe, fs = feats["spec"], feats["fe"], feats["fs"]
    f = spec.shape[1]
    in_names = ["spec", "feat_erb", "feat_spec"] + [s[3] for s in bm.states]
    out_names = ["enh", "lsnr"] + [s[4] for s in bm.states]

    def hops(idx):
        i = np.asarray(idx) % spec.shape[0]
        return (np.stack([spec[i].real, spec[i].imag], -1).astype(np.float32).reshape(len(i), 1, 1, f, 2),
                fe[i].astype(np.float32).reshape(len(i), 1, 1, -1),
                np.stack([fs[i].real, fs[i].imag], -1).astype(np.float32).reshape(len(i), 1, 1, -1, 2))

    b = max(2, min(int(streams), 4))  # traced with B > 1 so that no size is folded to 1
    zeros = [np.zeros((b, *s[1]), np.float32) for s in bm.states]
    args = tuple(torch.from_numpy(a) for a in (*hops(range(b)), *zeros))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(bm, args, str(tmp / "step.onnx"), input_names=in_names, output_names=out_names,
                          dynamic_axes={n: {0: BATCH_DIM} for n in in_names + out_names}, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    import onnx

    onnx.checker.check_model(str(tmp / "step.onnx"), full_check=True)
    sess = ort.InferenceSession(str(tmp / "step.onnx"), providers=["CPUExecutionProvider"])
    starts = [0, 17, 40, 63][:b]
    single = [[torch.zeros(d.shape) for d in step_model.descs] for _ in starts]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one hop is tiny: more threads only spin (20x slower on a loaded 2-core box)
    try:
        worst = _verify(sess, step_model, bm, hops, starts, single, zeros, in_names, out_names)
    finally:
        torch.set_num_threads(threads)
    return {"step.onnx": worst}, bm


def _verify(sess, step_model, bm, hops, starts, single, states, in_names, out_names) -> float:
    import torch

    worst, L, b = 0.0, step_model.L, len(starts)
    for t in range(_VERIFY_TICKS):
        x = hops([s + t for s in starts])
        res = sess.run(out_names, dict(zip(in_names, [*x, *states])))
        new = [n if name == "spec_buf" or t >= L else o for name, n, o in zip(bm.state_names, res[2:], states)]
        states = new
        for k in range(b):
            with torch.no_grad():
                ref = step_model(*(torch.from_numpy(a[k : k + 1]) for a in x), *single[k])
            single[k] = list(ref[2:])
            if t >= L:
                worst = max(worst, float(np.max(np.abs(ref[0].numpy()[0] - res[0][k]))),
                            float(np.max(np.abs(ref[1].numpy().reshape(-1) - res[1][k].reshape(-1)))))
    return worst


def batch_manifest(manifest: dict, bm: Any, streams: int) -> dict:
    """``manifest`` (of a step export) for the batched folder: the ``batch`` section and batched state shapes."""
    m = dict(manifest)
    m["batch"] = {"streams": int(streams), "dim": BATCH_DIM, "axis": 0, "layout": "batch-leading",
                  "warmup": "host: for a stream's first conv_lookahead hops every state but spec_buf is kept",
                  "rewrites": dict(bm.rewrites)}
    host = [s for s in manifest.get("states", []) if s.get("where") == "host"]
    m["states"] = [{"name": n, "input": i, "output": o, "file": "step.onnx", "group": g, "shape": [BATCH_DIM, *shp],
                    "dtype": "float32", "init": "zeros"} for n, shp, g, i, o in bm.states] + host
    return m


def export_batched(source: Any, out: Path | str, *, streams: int, force: bool = False) -> Path:
    """Write a batched step folder for ``streams`` streams from a model or from an existing step folder.

    Parameters
    ----------
    source : LoadedModel or path
        A :class:`dfnb.models.LoadedModel`, or a single-stream ``step`` folder: its manifest names the model,
        which is loaded again (:func:`dfnb.models.load_model`) and must have the same weights (sha256).
    out : path
        The new folder (replaced only with ``force``).
    streams : int
        The host's default capacity (the graph's batch axis is dynamic: any number per call).

    Returns
    -------
    pathlib.Path
        ``out``, holding ``step.onnx``, ``config.ini`` and ``manifest.json`` (with a ``batch`` section).

    Examples
    --------
    >>> export_batched(load_model("DeepFilterNet3"), "models/dfn3_step_b32", streams=32)  # doctest: +SKIP

    Notebook: 05_realtime
    """
    from .export import export_model

    loaded = model_of_step_folder(source) if isinstance(source, (str, Path)) else source
    return export_model(loaded, "step", out, force=force, streams=streams)


def model_of_step_folder(folder: Path | str) -> Any:
    """The :class:`dfnb.models.LoadedModel` a single-stream ``step`` folder was exported from (loaded again by the
    name in its manifest; the weights' sha256 must match), for exports derived from the folder.

    Notebook: 05_realtime
    """
    from .models import load_model

    folder = Path(folder)
    try:
        man = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"{folder} has no readable manifest.json ({e}); pass a dfnb step folder or a model.") \
            from None
    if man.get("variant") != "step" or not man.get("model") or "batch" in man or "precision" in man:
        raise ExportError(f"{folder} is not a single-stream float32 step folder (variant {man.get('variant')!r}); "
                          "start from one written by `dfnb export --variant step`, or from a model name.")
    loaded = load_model(man["model"])
    want = (man.get("weights") or {}).get("sha256")
    if want and want != loaded.source_sha256:
        raise ExportError(f"{folder} was exported from other weights ({want[:12]}…) than {man['model']} has here "
                          f"({str(loaded.source_sha256)[:12]}…); export from the model instead.")
    return loaded
