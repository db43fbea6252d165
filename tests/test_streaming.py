"""Exact PyTorch streaming (dfnb.streaming) against the offline reference, with the real weights of all four models."""

from __future__ import annotations

import numpy as np
import pytest

from dfnb import clips, metrics
from dfnb.layout import Layout, ModelConfig, delay_samples
from dfnb.offline import enhance_offline
from dfnb.runtime import enhance
from dfnb.streaming import Stream

MODELS = ["DeepFilterNet3", "DeepFilterNet2", "DeepFilterNet3_ll", "DeepFilterNet2_ll"]
# real speech: two VoiceBank-DEMAND speakers (long streams: test_hardening and benchmarks/memory.py)
CLIP_CHUNKS = [("vb_p232_013", 1), ("vb_p232_013", 7), ("vb_p257_212", 7)]
EXACT_DB = 90.0
LSNR_TOL_DB = 1e-3


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("clip,chunk", CLIP_CHUNKS)
def test_stream_equals_offline(load, offline_ref, name, clip, chunk):
    x, off = offline_ref(name, clip)
    s = Stream(load(name), probes=True)
    y = enhance(s, x, chunk=chunk)
    assert y.shape == x.shape and y.dtype == np.float32
    snr = metrics.snr_of_difference(off.audio, y)
    print(f"{name} {clip} chunk {chunk}: SNR of difference {snr:.1f} dB")
    assert snr >= EXACT_DB
    lsnr = s.trace.lsnr[: len(off.lsnr)]
    assert len(lsnr) == len(off.lsnr)
    assert metrics.lsnr_error(off.lsnr, lsnr) <= LSNR_TOL_DB


def test_delays_follow_the_configs(load):
    # DFN3: 2 hops lookahead + STFT; DFN2 filters the masked spectrum: conv + df lookahead; _ll: STFT only
    got = {n: delay_samples(load(n).spec) for n in MODELS}
    assert got == {"DeepFilterNet3": 1440, "DeepFilterNet2": 2400, "DeepFilterNet3_ll": 480, "DeepFilterNet2_ll": 480}


@pytest.mark.parametrize("name", MODELS)
def test_layout_from_config_ini_is_what_pytorch_builds(load, name):
    """The torch-free layout (read from config.ini) equals the states PyTorch's StepModel probes, in order."""
    m = load(name)
    lay = Layout.of(ModelConfig.read(m.folder / "config.ini"))
    assert lay == Layout.of(m.spec)
    probed = Stream(m).step_model.descs
    assert [(d.name, d.shape) for d in probed] == [(d.name, d.shape) for d in lay.model_states]
    assert lay.delay_samples == delay_samples(m.spec)


def test_state_sizes_come_from_the_config(load):
    for name in ("DeepFilterNet3", "DeepFilterNet3_ll"):
        m = load(name)
        s = Stream(m)
        shapes = {d.name: d.shape for d in s.step_model.descs}
        h = m.spec.emb_hidden_dim
        assert shapes["enc_emb_gru"] == (1, 1, h)
        assert shapes["erb_dec_emb_gru"] == (m.spec.emb_num_layers - 1, 1, h)
        assert shapes["df_dec_df_gru"] == (m.spec.df_num_layers, 1, m.spec.df_hidden_dim)
        assert shapes["enc_erb_conv0"][2] == m.spec.conv_kernel_inp[0] - 1
        assert shapes["df_dec_df_convp"][2] == m.spec.df_pathway_kernel_size_t - 1
    ll = {d.name for d in Stream(load("DeepFilterNet3_ll")).step_model.descs}
    # conv_kernel (2,3) in DFN3_ll: the encoder's later convs need one past frame too
    assert {"enc_erb_conv1", "enc_erb_conv2", "enc_erb_conv3", "enc_df_conv1"} <= ll


def test_reset_returns_to_the_initial_state(load):
    m = load("DeepFilterNet3")
    x, _ = clips.load_clip("vb_p232_028")
    s = Stream(m)
    first = s.process(x[: 480 * 60])
    s.reset()
    second = s.process(x[: 480 * 60])
    assert np.array_equal(first, second)


def test_gru_trajectories_match_offline_probes(load):
    """The hidden-state trajectories Notebook 03 plots: streamed (Stream.trace) == offline probes (res.gru)."""
    m = load("DeepFilterNet3")
    x, _ = clips.load_clip("vb_p232_028")
    off = enhance_offline(m, x, probes=True)
    names = ["enc_emb_gru", "erb_dec_emb_gru", "df_dec_df_gru"]
    s = Stream(m, probes=names)
    enhance(s, x)
    assert set(off.gru) == set(s.trace.states) == set(names)
    for name, h in off.gru.items():
        tr = s.trace.states[name][: len(h), -1, 0]  # top layer
        assert tr.shape == h.shape
        assert float(np.max(np.abs(tr - h))) <= 1e-4, name
