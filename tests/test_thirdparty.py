"""Third-party model folders (the Rust pipeline shimondoodkin/deepfilter-rt): recognised, run as their own host
runs them, diagnosed, converted to exact exports.

Every folder is built here from the official releases by dfnb's own surgery and exports
(:mod:`dfnb.thirdparty`), once per session, into temporary folders. The emulated feedings are checked against a
second, independent transcription of deepfilter-rt's loop written below with deepfilternet's PyTorch modules.
Clips are 0.7 s of speech, so the per-hop emulations stay quick; notebook 07 and benchmarks/third_party.py run
the same on whole clips. The ``_h0`` folder here comes from torch's legacy (TorchScript) exporter; the same folder
from torch's dynamo exporter (``h0-dynamo``: GRU weights in torch's gate order behind Slice/Concat) costs about
20 s of export alone, so it is recognised, identified and converted (>= 120 dB) by notebook 07's full run and
``benchmarks/third_party.py``, not here.
"""

from __future__ import annotations

import json
import shutil
from collections import deque

import numpy as np
import pytest
import torch

from dfnb import clips, dsp, metrics
from dfnb.convert import convert_folder
from dfnb.diagnose import diagnose, save_diagnosis
from dfnb.errors import ArgumentError, AudioError, DfnbError, ExportError, ModelFolderError
from dfnb.export import export_model
from dfnb.files import enhance_file
from dfnb.fingerprint import identify
from dfnb.formats import graph_roles, recognise, resolve_shape
from dfnb.hosts import open_host
from dfnb.hosts.onnx import Host
from dfnb.hosts.pipeline import PipelineHost, open_folder, open_pipeline
from dfnb.hosts.pipeline_fixes import CAUSES, causes_for, fixable_host, open_exact
from dfnb.offline import enhance_offline
from dfnb.releases import find_release_tarball
from dfnb.runtime import enhance
from dfnb.thirdparty import build_folder

CLIP = "vb_p232_028"
KINDS = {"DeepFilterNet3": ("split-streaming", "combined-streaming", "combined", "h0", "upstream"),
         "DeepFilterNet3_ll": ("split-streaming", "combined-streaming")}
FORMAT = {"split-streaming": "split-streaming", "combined-streaming": "combined-streaming", "combined": "combined",
          "h0": "gru", "h0-dynamo": "h0", "upstream": "stateless"}
OWN_FEED = {"split-streaming": "step", "combined-streaming": "step", "combined": "window", "h0": "h0",
            "h0-dynamo": "h0", "upstream": "frame"}


@pytest.fixture(scope="session")
def rt(load, tmp_path_factory):
    """``rt(model, kind)``: a folder of that layout, built once per session."""
    root = tmp_path_factory.mktemp("thirdparty")
    cache: dict = {}

    def get(name: str, kind: str):
        if (name, kind) not in cache:
            rel, _ = find_release_tarball(name)
            cache[(name, kind)] = build_folder(kind, root / f"{name}_{kind}", release=rel, loaded=load(name))
        return cache[(name, kind)]

    return get


@pytest.fixture(scope="session")
def fmt_of(rt):
    """``fmt_of(model, kind)``: the folder recognised once (weights not compared: test_recognised does that)."""
    cache: dict = {}

    def get(name: str, kind: str):
        if (name, kind) not in cache:
            cache[(name, kind)] = recognise(rt(name, kind), weights=False)
        return cache[(name, kind)]

    return get


@pytest.fixture(scope="session")
def emulated(fmt_of, audio):
    """``emulated(model, kind, feed, T)``: the folder's own graphs fed as deepfilter-rt does, once."""
    cache: dict = {}

    def get(name: str, kind: str, feed: str, T: int):
        if (name, kind, feed, T) not in cache:
            cache[(name, kind, feed, T)] = enhance(open_pipeline(fmt_of(name, kind), feed=feed, window=T), audio)
        return cache[(name, kind, feed, T)]

    return get


@pytest.fixture(scope="session")
def audio():
    """0.3 s to 1.0 s of the clip (speech from 0.6 s on): short, so the per-hop emulations stay quick."""
    return clips.load_clip(CLIP)[0][14400:48000].copy()


@pytest.fixture(scope="session")
def converted(fmt_of, tmp_path_factory):
    """``converted(model)``: DfNet converted from the split-streaming folder, exported ``full`` (once)."""
    root = tmp_path_factory.mktemp("converted")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = export_model(convert_folder(fmt_of(name, "split-streaming")), "full", root / name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def reference(load, audio):
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = enhance_offline(load(name), audio).audio
        return cache[name]

    return get


CASES = [(m, k) for m, kinds in KINDS.items() for k in kinds]


@pytest.mark.parametrize("name,kind", CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_recognised_from_the_graphs(rt, load, name, kind):
    fmt = recognise(rt(name, kind))
    spec = load(name).spec
    assert fmt.format == FORMAT[kind]
    assert fmt.feeds[0] == OWN_FEED[kind]
    assert ("deepfilter-rt" in fmt.origin) == (kind != "upstream")
    assert fmt.weights.equal and fmt.weights.release == name and fmt.weights.max_abs_diff <= 1e-6
    assert fmt.problems == []
    assert fmt.sizes["emb_hidden_dim"] == spec.emb_hidden_dim and fmt.sizes["df_num_layers"] == spec.df_num_layers
    assert fmt.sizes["nb_erb"] == spec.nb_erb and fmt.sizes["df_order"] == spec.df_order
    want = {"split-streaming": {"h0", "erb_h0", "df_h0"}, "combined-streaming": {"h0", "erb_h0", "df_h0"},
            "combined": set(), "h0": {"h0", "erb_h0", "df_h0"}, "h0-dynamo": {"h0"}, "upstream": set()}[kind]
    assert {s.input for s in fmt.states} == want
    assert fmt.delay(fmt.feeds[0]) == (1440 if spec.conv_lookahead else 480)
    if kind in ("split-streaming", "combined-streaming"):
        assert fmt.sliced and fmt.window["step"] == (40 if kind == "split-streaming" else 3)


def test_symbolic_batch_h0_is_accepted(rt):
    fmt = recognise(rt("DeepFilterNet3", "h0"), weights=False)
    assert fmt.io["enc.onnx"]["inputs"]["h0"] == [1, "B", 256]
    assert next(s for s in fmt.states if s.input == "h0").shape == (1, 1, 256)
    with pytest.raises(ModelFolderError, match="tied to the time axis"):
        resolve_shape([1, "S", 256], "h0", {"S"})


def test_dfnb_exports_are_recognised_as_dfnb(exported):
    assert graph_roles(["spec", "feat_erb", "feat_spec", "erb_buf"], ["enh", "lsnr", "erb_buf_next"]) == "step"
    for variant in ("h0", "full"):  # the step folder's one graph: its role above
        fmt = recognise(exported("DeepFilterNet3", variant))
        assert (fmt.format, fmt.feeds[0]) == (variant, "frame") and fmt.origin.startswith("dfnb export")
        assert fmt.weights.equal and fmt.weights.release == "DeepFilterNet3"


def test_changed_weights_are_not_called_a_release(rt, tmp_path):
    import onnx
    from onnx import numpy_helper

    src = rt("DeepFilterNet3", "split-streaming")
    dst = shutil.copytree(src, tmp_path / "edited")
    m = onnx.load(str(dst / "df_dec_streaming.onnx"))
    t = max(m.graph.initializer, key=lambda i: int(np.prod(i.dims)))
    a = numpy_helper.to_array(t).copy()
    a.flat[0] += 1e-3
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, str(dst / "df_dec_streaming.onnx"))
    w = identify(sorted(dst.glob("*.onnx")))
    assert not w.equal and w.matched == w.total - 1 and "NOT equal" in w.summary()


def test_a_folder_holding_several_layouts_is_run_by_priority_or_by_feed(rt, tmp_path, audio):
    """deepfilter-rt keeps its split files next to the original (h0) files; its host picks split streaming."""
    both = shutil.copytree(rt("DeepFilterNet3", "h0"), tmp_path / "both")
    for f in rt("DeepFilterNet3", "split-streaming").glob("*.onnx"):
        shutil.copy(f, both)
    fmt = recognise(both, weights=False)
    assert fmt.format == "split-streaming" and "gru" in fmt.alternatives
    assert open_pipeline(fmt, feed="h0").graphs.fmt.format == "gru"
    assert recognise(both, weights=False, format="gru").files["enc"] == "enc.onnx"


def test_a_folder_without_deepfilternet_graphs_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "model.onnx"))
    with pytest.raises(ModelFolderError, match="none of"):
        recognise(tmp_path)


# ---------------------------------------------------------------- a second, independent transcription
def _erb_dec(d, emb, e3, e2, e1, e0, h):
    b, _, t, f8 = e3.shape
    x, h = d.emb_gru(emb, h)
    x = x.view(b, t, f8, -1).permute(0, 3, 1, 2)
    e3 = d.convt3(d.conv3p(e3) + x)
    e2 = d.convt2(d.conv2p(e2) + e3)
    e1 = d.convt1(d.conv1p(e1) + e2)
    return d.conv0_out(d.conv0p(e0) + e1), h


def _df_dec(d, emb, c0, h):
    b, t, _ = emb.shape
    c, h = d.df_gru(emb, h)
    c = c + d.df_skip(emb) if d.df_skip is not None else c
    return d.df_out(c).view(b, t, d.df_bins, d.df_out_ch) + d.df_convp(c0).permute(0, 2, 3, 1), h


@torch.no_grad()
def transcribed(loaded, x, feed: str, T: int, carry_decoders: bool = True) -> np.ndarray:
    """deepfilter-rt's process_frame, written again from its source with the PyTorch modules (DeepFilterNet3)."""
    net, s = loaded.net, loaded.spec
    cfg = dsp.DspConfig.from_spec(s)
    L, o, hop = max(s.conv_lookahead, s.df_lookahead), s.df_order, s.hop_size
    n = (len(x) + s.fft_size) // hop
    spec, fe, fs = dsp.offline_features(cfg, np.concatenate([x, np.zeros(n * hop - len(x), np.float32)]))
    spec = np.concatenate([spec, np.zeros((L, spec.shape[1]), np.complex64)])  # the drain: zero frames
    fe = np.concatenate([fe, np.zeros((L, fe.shape[1]), np.float32)])
    fs = np.concatenate([fs, np.zeros((L, fs.shape[1]), np.complex64)])
    inv = np.repeat(np.eye(s.nb_erb, dtype=np.float32), cfg.erb_widths, axis=1)
    ring, pending, h, out = deque([None] * T, maxlen=T), [], (None, None, None), []
    for k in range(len(spec)):
        if feed == "window":
            pending.append(k)
            if len(pending) <= L:
                out.append(np.zeros_like(spec[0]))
                continue
            ring.append(pending[L])
            pending = pending[-(L + 1):]
        else:
            ring.append(k)
        e = torch.tensor(np.stack([fe[i] if i is not None else np.zeros_like(fe[0]) for i in ring]))[None, None]
        c = np.stack([fs[i] if i is not None else np.zeros_like(fs[0]) for i in ring])
        c = torch.tensor(np.stack([c.real, c.imag]), dtype=torch.float32)[None]
        enc = net.enc
        e0 = enc.erb_conv0(e)
        e1 = enc.erb_conv1(e0)
        e2 = enc.erb_conv2(e1)
        e3 = enc.erb_conv3(e2)
        c0 = enc.df_conv0(c)
        cemb = enc.df_fc_emb(enc.df_conv1(c0).permute(0, 2, 3, 1).flatten(2))
        pre = enc.combine(e3.permute(0, 2, 3, 1).flatten(2), cemb)
        if feed == "step":  # sliced to the newest frame before the GRUs
            e0, e1, e2, e3, c0 = (t[:, :, -1:] for t in (e0, e1, e2, e3, c0))
            pre = pre[:, -1:]
        keep = feed != "window"
        emb, h_enc = enc.emb_gru(pre, h[0] if keep else None)
        lsnr = enc.lsnr_fc(emb) * enc.lsnr_scale + enc.lsnr_offset
        m, h_erb = _erb_dec(net.erb_dec, emb, e3, e2, e1, e0, h[1] if keep and carry_decoders else None)
        coefs, h_df = _df_dec(net.df_dec, emb, c0, h[2] if keep and carry_decoders else None)
        h = (h_enc, h_erb, h_df)
        j = 0 if feed == "h0" else -1
        ls = float(lsnr[0, j, 0])
        y = spec[k - L].copy() if k >= L else np.zeros_like(spec[0])
        if ls <= 35:
            y = y * (0.0 if ls < -15 else m[0, 0, j].numpy() @ inv)
        if ls <= 35 and not ls < -15:
            cf = coefs[0, j].numpy().reshape(s.nb_df, o, 2)
            win = np.stack([spec[i][: s.nb_df] if i >= 0 else np.zeros(s.nb_df, np.complex64)
                            for i in range(k - o + 1, k + 1)])
            y[: s.nb_df] = np.sum(win * (cf[..., 0] + 1j * cf[..., 1]).T, axis=0)
        out.append(y.astype(np.complex64))
    d = (s.fft_size - hop) + L * hop
    return dsp.offline_synthesis(cfg, np.stack(out))[d : d + len(x)]


# the window feeding with T = 8 instead of its 40: the same loop, five times cheaper in the PyTorch transcription
FEEDINGS = [("DeepFilterNet3", "split-streaming", "step", 40), ("DeepFilterNet3", "h0", "h0", 3),
            ("DeepFilterNet3", "combined", "window", 8), ("DeepFilterNet3_ll", "split-streaming", "step", 40)]


@pytest.mark.parametrize("name,kind,feed,T", FEEDINGS, ids=[f"{m}-{k}-{f}" for m, k, f, _ in FEEDINGS])
def test_emulated_feeding_matches_an_independent_transcription(emulated, load, reference, audio, name, kind, feed,
                                                              T):
    y = emulated(name, kind, feed, T)
    y2 = transcribed(load(name), audio, feed, T)
    ref = reference(name)
    a, b = metrics.snr_of_difference(ref, y), metrics.snr_of_difference(ref, y2)
    assert abs(a - b) <= 1.0, (a, b)
    assert metrics.snr_of_difference(y2, y) >= 60.0
    assert len(y) == len(audio)


@pytest.mark.parametrize("name", ["DeepFilterNet3", "DeepFilterNet3_ll"])
def test_replay_on_an_exact_export_equals_the_folder_and_each_fix_helps(fmt_of, emulated, exported, converted,
                                                                         reference, audio, name):
    fmt = fmt_of(name, "split-streaming")
    full, ref = (exported(name, "full") if name == "DeepFilterNet3" else converted(name)), reference(name)
    base = set(CAUSES) - set(causes_for("step", fmt.carries, fmt.config, 40))
    carried = {s.input for s in fmt.states if s.group.startswith("gru")}
    sessions = open_exact(full)

    def replay(fixed):
        return enhance(fixable_host(full, fmt.config, feed="step", window=40, carried=carried, fixed=fixed,
                                    sessions=sessions), audio)

    own = emulated(name, "split-streaming", "step", 40)
    assert metrics.snr_of_difference(own, replay(base)) >= 100.0
    assert metrics.snr_of_difference(ref, replay(set(CAUSES))) >= 120.0
    if name == "DeepFilterNet3":  # the two causes of the issue: df_convp's past frames and the first 2 frames
        assert metrics.snr_of_difference(ref, replay(base | {"conv", "start"})) >= 120.0
    else:  # the zero-prefilled window is itself a cause for the _ll model
        assert metrics.snr_of_difference(ref, replay(base | {"context"})) >= metrics.snr_of_difference(ref, own) + 10


def test_diagnose_names_the_causes_and_writes_json_and_figure(fmt_of, load, exported, audio, tmp_path):
    """On combined streaming (T = 3: the same causes as split streaming, notebook 07, at a tenth of the cost)."""
    import soundfile as sf

    sf.write(tmp_path / "short.wav", audio, 48000)
    d = diagnose(fmt_of("DeepFilterNet3", "combined-streaming"), clip=tmp_path / "short.wav",
                 loaded=load("DeepFilterNet3"), exact_folder=exported("DeepFilterNet3", "full"))
    assert {c.name for c in d.causes if c.needed} == {"conv", "start"}
    assert d.agreement_db >= 100 and d.all_fixed_db >= 120 and d.emulated_db < 60
    assert "df_convp" in d.fix and "2 feature frames" in d.fix and "dfnb export --from" in d.fix
    js, png = save_diagnosis(d, tmp_path / "out")
    data = json.loads(js.read_text())
    assert data["feed"] == "step" and len(data["causes"]) == len(d.causes) and png.stat().st_size > 10_000
    assert [c["name"] for c in data["causes"]] == ["start", "conv", "context", "gating"]
    assert save_diagnosis(d, tmp_path / "out")[0] == js  # its own files are replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "diagnose.json").write_text("{}\n")  # a file dfnb did not write is never replaced
    with pytest.raises(ExportError):
        save_diagnosis(d, mine)
    assert (mine / "diagnose.json").read_text() == "{}\n" and not (mine / "diagnose.png").exists()


def test_every_layout_converts_to_the_release_weights(fmt_of, load):
    want = load("DeepFilterNet3").net.state_dict()
    for kind in ("split-streaming", "combined-streaming", "combined", "h0"):  # upstream's: tests/test_onnx_import.py
        m = convert_folder(fmt_of("DeepFilterNet3", kind))
        got = m.net.state_dict()
        diff = max(float((got[k] - v).abs().max()) for k, v in want.items()
                   if v.is_floating_point() and k not in m.report["zero_filled"])
        assert diff == 0.0, kind


@pytest.mark.parametrize("name", ["DeepFilterNet3", "DeepFilterNet3_ll"])
def test_converted_export_streams_exactly(rt, converted, reference, audio, tmp_path, capsys, name):
    if name == "DeepFilterNet3":  # through the CLI, from deepfilter-rt's _h0 folder; it also checks the conversion
        from dfnb import cli

        out = tmp_path / "converted"
        assert cli.main(["export", "--from", str(rt(name, "h0")), "--variant", "full", "--out", str(out)]) == 0
        assert "conversion checked" in capsys.readouterr().out
    else:
        out = converted(name)
    assert metrics.snr_of_difference(reference(name), enhance(open_host(out), audio)) >= 120.0


def test_a_pipeline_is_a_runtime_like_every_other(fmt_of, audio, tmp_path):
    """Partial hops, the audio gate, enhance() and the file driver treat deepfilter-rt's feedings as every dfnb
    runtime (dfnb.runtime.Runtime)."""
    import soundfile as sf

    h = open_pipeline(fmt_of("DeepFilterNet3", "combined-streaming"))
    assert isinstance(h, PipelineHost) and h.default_chunk == 1
    x = audio
    whole = np.concatenate([h.process(x), h.flush()])
    h.reset()
    cuts = [0, 1, 479, 480, 1500, 4321, 9000, len(x)]
    parts = [h.process(x[a:b]) for a, b in zip(cuts, cuts[1:])]  # a partial hop waits for the next call
    assert [len(p) for p in parts] == [0, 0, 480, 960, 4320 - 1440, 8640 - 4320, len(x) // 480 * 480 - 8640]
    assert np.array_equal(np.concatenate([*parts, h.flush()]), whole)
    h.reset()
    out = [h.process(x[:4800])]
    bad = x[4800:].copy()
    bad[7] = np.nan
    with pytest.raises(AudioError, match=r"stream sample 4807 \(at 0\.100 s; sample 7 of this call\) is NaN"):
        h.process(bad)
    out += [h.process(x[4800:]), h.flush()]  # the refused block left no trace
    assert np.array_equal(np.concatenate(out), whole)
    y = enhance(h, x)
    assert len(y) == len(x) and np.array_equal(enhance(h, x, chunk=7), y)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    r = enhance_file(h, tmp_path / "in.wav", tmp_path / "out.wav", block_seconds=0.13)
    z, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    assert (sr, r.sr) == (48000, 48000) and np.array_equal(z, y)


def test_open_folder_runs_each_folder_by_its_own_host_or_the_feeding_asked(rt):
    up, comb = rt("DeepFilterNet3", "upstream"), rt("DeepFilterNet3", "combined-streaming")
    assert isinstance(open_folder(up), Host)  # upstream's release layout: dfnb's host (its extra df_dec output)
    h = open_folder(up, feed="window", window=8)
    assert isinstance(h, PipelineHost) and (h.feed, h.T) == ("window", 8) and "T=8" in h.label
    assert isinstance(open_folder(comb), PipelineHost) and open_folder(comb).T == 3
    with pytest.raises(DfnbError, match="add a feed"):
        open_folder(up, window=8)
    with pytest.raises(ArgumentError, match="window must be a positive int"):
        open_pipeline(comb, window=0)
    with pytest.raises(ArgumentError, match="feed must be one of"):
        open_folder(comb, feed="tiles")


def test_cli_runs_each_layout_as_its_own_host(rt, tmp_path, audio):
    import soundfile as sf

    from dfnb import cli

    src = tmp_path / "in.wav"
    sf.write(src, audio[:24000], 48000)
    combined = str(rt("DeepFilterNet3", "combined-streaming"))
    assert cli.main(["enhance", str(src), str(tmp_path / "a.wav"), "--model", combined]) == 0
    assert sf.info(str(tmp_path / "a.wav")).frames == 24000
    assert cli.main(["enhance", str(src), str(tmp_path / "b.wav"), "--model", str(rt("DeepFilterNet3", "upstream")),
                     "--feed", "window", "--window", "8"]) == 0
    assert cli.main(["enhance", str(src), str(tmp_path / "c.wav"), "--model", str(rt("DeepFilterNet3", "h0")),
                     "--feed", "step"]) == 7
    assert cli.main(["inspect", str(rt("DeepFilterNet3", "h0"))]) == 0
