"""The PyTorch DfNet filled by dfnb.onnx_import computes what the official ONNX releases compute.

Real weights, real audio: p232_013_noisy.wav through all four releases.
"""

from __future__ import annotations

import copy
import functools
import shutil

import numpy as np
import pytest
import torch

from dfnb import models, onnx_import, releases
from dfnb.compat import import_df
from dfnb.errors import ModelError

NAMES = releases.MODEL_NAMES
ENC_OUT = ("e0", "e1", "e2", "e3", "emb", "c0", "lsnr")


@functools.cache
def release(name: str) -> dict[str, bytes]:
    return onnx_import.read_release(releases.find_release_tarball(name)[0])


@functools.cache
def sessions(name: str) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()  # one thread, no spinning: stays fast when other jobs share the 2 CI cores
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return {p: ort.InferenceSession(release(name)[f"{p}.onnx"], so, providers=["CPUExecutionProvider"])
            for p in onnx_import.ONNX_PARTS}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    mdir = tmp_path_factory.mktemp("models")
    return functools.lru_cache(maxsize=None)(lambda name: models.load_model(name, models_dir=mdir))


def features(lm: models.LoadedModel, audio: np.ndarray):
    """(spec [1,1,T,F,2], feat_erb [1,1,T,E], feat_spec [1,1,T,nb_df,2]) as df.enhance.df_features, with the
    model's alpha."""
    import_df()
    from df.utils import as_real
    from libdf import erb, erb_norm, unit_norm

    s, st = lm.spec, lm.new_df_state()
    x = st.analysis(audio[None].astype(np.float32))
    fe = torch.as_tensor(erb_norm(erb(x, st.erb_widths()), s.norm_alpha)).unsqueeze(1)
    fs = as_real(torch.as_tensor(unit_norm(x[..., : s.nb_df], s.norm_alpha)).unsqueeze(1))
    return as_real(torch.as_tensor(x).unsqueeze(1)), fe, fs


def shifted(net, fe: torch.Tensor, fs: torch.Tensor):
    """The encoder inputs exactly as DfNet.forward makes them (pad_feat in DFN3, pad in DFN2)."""
    shift = net.pad_feat if hasattr(net, "pad_feat") else net.pad
    return shift(fe), shift(fs.squeeze(1).permute(0, 3, 1, 2))


def torch_outputs(net, fe, fs) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = dict(zip(ENC_OUT, net.enc(fe, fs)))
        out["m"] = net.erb_dec(out["emb"], out["e3"], out["e2"], out["e1"], out["e0"])
        d = net.df_dec(out["emb"], out["c0"])
        out["coefs"] = d[0] if isinstance(d, tuple) else d
        c = net.df_dec.df_gru(out["emb"])[0]  # alpha by hand: DFN3's forward never calls df_fc_a
        if net.df_dec.df_skip is not None:
            c = c + net.df_dec.df_skip(out["emb"])
        out["alpha"] = net.df_dec.df_fc_a(c)
    return {k: v.numpy() for k, v in out.items()}


def onnx_outputs(name: str, fe, fs) -> dict[str, np.ndarray]:
    s = sessions(name)
    assert [i.name for i in s["enc"].get_inputs()] == ["feat_erb", "feat_spec"]
    enc_out = s["enc"].run(None, {"feat_erb": fe.numpy(), "feat_spec": fs.numpy()})
    out = dict(zip([o.name for o in s["enc"].get_outputs()], enc_out))
    out["m"] = s["erb_dec"].run(None, {i.name: out[i.name] for i in s["erb_dec"].get_inputs()})[0]
    d = s["df_dec"].run(None, {i.name: out[i.name] for i in s["df_dec"].get_inputs()})
    out["coefs"], out["alpha"] = d[0], d[1]  # second output is unnamed in the releases ('235', '217', '302')
    return out


class OrtPart(torch.nn.Module):
    """An ONNX graph standing in for net.enc / net.erb_dec / net.df_dec inside DfNet.forward."""

    def __init__(self, sess, n_out: int):
        super().__init__()
        self.sess, self.n_out = sess, n_out

    def forward(self, *args):
        feeds = {i.name: a.detach().numpy() for i, a in zip(self.sess.get_inputs(), args)}
        out = [torch.from_numpy(o) for o in self.sess.run(None, feeds)][: self.n_out]
        return out[0] if self.n_out == 1 else tuple(out)


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    err = float(np.sum((ref.astype(np.float64) - x) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err)


@pytest.mark.parametrize("name", NAMES)
def test_submodules_match_official_onnx(name, loaded, real_clip):
    lm = loaded(name)
    _, fe, fs = features(lm, real_clip)
    fe, fs = shifted(lm.net, fe, fs)
    got, want = torch_outputs(lm.net, fe, fs), onnx_outputs(name, fe, fs)
    diffs = {k: float(np.abs(got[k] - want[k]).max()) for k in (*ENC_OUT, "m", "coefs", "alpha")}
    print(f"\n{name} max |torch - onnx|: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    assert all(got[k].shape == want[k].shape for k in diffs)
    assert max(diffs.values()) <= 1e-4, diffs


@pytest.mark.parametrize("name", NAMES)
def test_enhance_matches_onnx_pipeline(name, loaded, real_clip):
    """df.enhance.enhance with the imported net vs the same DfNet.forward running the official graphs."""
    import_df()
    from df.enhance import df_features, enhance

    lm = loaded(name)
    lm.activate()  # df_features reads the norm alpha from deepfilternet's config
    x, fe, fs = features(lm, real_clip)
    ref = df_features(torch.from_numpy(real_clip)[None], lm.new_df_state(), lm.spec.nb_df)
    assert all(torch.equal(a, b) for a, b in zip((x, fe, fs), ref))
    ort_net = copy.deepcopy(lm.net)
    s = sessions(name)
    ort_net.enc, ort_net.erb_dec = OrtPart(s["enc"], 7), OrtPart(s["erb_dec"], 1)
    ort_net.df_dec = OrtPart(s["df_dec"], 2 if lm.spec.family == "deepfilternet2" else 1)
    audio = torch.from_numpy(real_clip)[None]
    out = enhance(lm.net, lm.new_df_state(), audio, pad=True).numpy()
    out_onnx = enhance(ort_net, lm.new_df_state(), audio, pad=True).numpy()
    snr = snr_db(out_onnx, out)
    print(f"\n{name} enhance SNR(torch vs onnx pipeline) = {snr:.1f} dB, |out| max {np.abs(out).max():.3f}")
    assert out.shape == audio.shape and np.isfinite(out).all()
    assert snr >= 100, snr


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_filled_and_every_weight_used(name, tmp_path):
    (tmp_path / "config.ini").write_bytes(release(name)["config.ini"])
    net, spec = models.build_model(tmp_path / "config.ini", name=name)
    onnx_import.poison_(net)
    floats = {k: v for k, v in net.state_dict().items() if v.is_floating_point()}
    assert all(torch.isnan(v).all() for v in floats.values())
    report = onnx_import.fill_from_onnx(net, spec, release(name))
    left = [k for k, v in net.state_dict().items() if v.is_floating_point() and torch.isnan(v).any()]
    assert left == []
    assert set(report["mapping"]) == set(floats)
    assert report["unused"] == [] and report["zero_filled"] == []
    # the only float tensors not used as weights: Pad fill values and the checked lsnr scale/offset
    assert all(r.startswith(("Pad fill value 0.0", "lsnr scale", "lsnr offset")) for r in report["ignored"].values())
    assert sum(r.startswith("lsnr") for r in report["ignored"].values()) == 2


def test_buffers_come_from_config_and_libdf(loaded):
    import_df()
    from df.modules import erb_fb

    lm = loaded("DeepFilterNet3")
    w = np.asarray(lm.spec.erb_widths)
    assert torch.equal(lm.net.erb_fb, erb_fb(w, lm.spec.sr))
    assert torch.equal(lm.net.mask.erb_inv_fb, erb_fb(w, lm.spec.sr, inverse=True))
    assert lm.net.erb_inv_fb is lm.net.mask.erb_inv_fb or torch.equal(lm.net.erb_inv_fb, lm.net.mask.erb_inv_fb)


def test_bn_identity_is_exact():
    """weight 1, mean 0, var 1-eps: BN(x) == x + b to < 1e-6 relative (measured: exact in float32)."""
    bn = torch.nn.BatchNorm2d(64).eval()
    b = torch.randn(64)
    with torch.no_grad():
        bn.weight.fill_(1), bn.bias.copy_(b), bn.running_mean.zero_()
        bn.running_var.fill_(float(np.float32(1) - np.float32(bn.eps)))
        x = torch.randn(2, 64, 10, 8) * 100
        err = (bn(x) - (x + b.view(1, -1, 1, 1))).abs().max() / x.abs().max()
    assert float(err) <= 1e-6


def test_config_of_other_model_is_refused(tmp_path):
    for f in ("enc.onnx", "erb_dec.onnx", "df_dec.onnx"):
        (tmp_path / f).write_bytes(release("DeepFilterNet3")[f])
    (tmp_path / "config.ini").write_bytes(release("DeepFilterNet3_ll")["config.ini"])
    with pytest.raises(ModelError, match=r"disagree.*expects \(.*\).*has \("):
        models.import_onnx_release(tmp_path)


def test_release_folder_layout(tmp_path):
    shutil.unpack_archive(str(releases.find_release_tarball("DeepFilterNet2_ll")[0]), tmp_path)
    files = onnx_import.read_release(tmp_path)
    assert files == release("DeepFilterNet2_ll")
    (tmp_path / "tmp" / "export" / "df_dec.onnx").unlink()
    with pytest.raises(ModelError, match="df_dec.onnx"):
        onnx_import.read_release(tmp_path)
