"""dfnb.hosts.fast: the lean DSP is bit-identical to dfnb.dsp; FastStepHost is exact (≥ 90 dB against offline
PyTorch on a real clip, bit-identical to dfnb.hosts.onnx.Host) for DeepFilterNet3 and DeepFilterNet3_ll; the
lean graph (dfnb.surgery), a packed-state folder and resets change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from dfnb import clips, dsp, metrics
from dfnb.errors import ExportError, ModelFolderError
from dfnb.hosts.fast import FastStepHost, LeanDsp
from dfnb.hosts.onnx import Host
from dfnb.runtime import enhance
from dfnb.surgery import lean_step_model, pack_states

EXACT_DB = 90.0
SECONDS = 2.5  # of the real clip: enough speech for every state to matter, short enough for the time budget


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    x, sr = clips.load_clip("vb_p232_013")
    assert sr == 48000
    return x[: int(SECONDS * sr)]


@pytest.fixture(scope="module")
def models(load):
    return load  # conftest: each model loaded once per session


@pytest.fixture(scope="module")
def step_folder(exported):
    return lambda name: exported(name, "step")  # conftest: exported once per session, in a temp dir


def test_lean_dsp_is_bit_identical_to_dsp(clip):
    cfg = dsp.DspConfig.build(48000, 960, 480, 32, 96)
    ref, lean = dsp.DspState.initial(cfg), LeanDsp(cfg)
    spec = np.zeros(cfg.freq_bins, np.complex64)
    fe = np.zeros(cfg.nb_erb, np.float32)
    fs = np.zeros((cfg.nb_df, 2), np.float32)
    for i in range(len(clip) // 480):
        x = clip[i * 480 : (i + 1) * 480]
        s_ref = dsp.analysis(cfg, ref, x)
        lean.analysis_into(x, spec)
        assert np.array_equal(s_ref, spec)
        e_ref, d_ref = dsp.features(cfg, ref, s_ref)
        lean.features_into(spec, fe, fs)
        assert np.array_equal(e_ref, fe)
        assert np.array_equal(d_ref, fs[:, 0] + 1j * fs[:, 1])
        y_ref = dsp.synthesis(cfg, ref, s_ref * 0.5)
        assert np.array_equal(y_ref, lean.synthesis(spec * 0.5))
    for name in ("analysis_mem", "synthesis_mem", "erb_norm", "unit_norm"):
        assert np.array_equal(getattr(ref, name), getattr(lean.state, name))


@pytest.mark.parametrize("name", ["DeepFilterNet3", "DeepFilterNet3_ll"])
def test_fast_host_is_exact(models, step_folder, clip, name):
    from dfnb.offline import enhance_offline

    folder = step_folder(name)
    host = FastStepHost(folder, probes=True)
    assert host.lean_report["gates_removed"] > 0 and host.lean_report["einsum_to_matmul"] > 0
    y = enhance(host, clip)
    assert y.shape == clip.shape and y.dtype == np.float32
    off = enhance_offline(models(name), clip).audio
    snr = metrics.snr_of_difference(off, y)
    print(f"{name}: FastStepHost vs offline PyTorch: SNR of difference {snr:.1f} dB")
    assert snr >= EXACT_DB
    # the same numbers as the reference host, bit for bit (same graph arithmetic, same DSP arithmetic)
    assert np.array_equal(y, enhance(Host(folder), clip))
    # the unmodified graph (warm-up inside the graph) gives the same output too
    assert np.array_equal(y, enhance(FastStepHost(folder, lean=False), clip))
    # reset: a second run on the same host is identical
    lsnr = host.trace.lsnr
    assert np.array_equal(y, enhance(host, clip))
    # lsnr: one finite value per model frame, the same again after the reset
    assert len(lsnr) > 0 and np.isfinite(lsnr).all() and np.array_equal(lsnr, host.trace.lsnr)


def test_hop_calls_odd_calls_and_stages_agree(step_folder, clip):
    """One hop per call, calls of odd lengths (partial hops wait for the next call) and the three public stages
    (analyse, run_model, synthesise) all give the same stream."""
    folder = step_folder("DeepFilterNet3")
    a, b, c = FastStepHost(folder), FastStepHost(folder), FastStepHost(folder)
    n = 40 * 480
    ya = np.concatenate([a.process(clip[i : i + 480]) for i in range(0, n, 480)] + [a.flush()])
    cuts = [0, 100, 579, 580, 5000, 9601, n]
    yb = np.concatenate([b.process(clip[i:j]) for i, j in zip(cuts, cuts[1:])] + [b.flush()])
    assert np.array_equal(ya, yb)
    assert a.delay_samples == 1440 and np.all(ya[: a.delay_frames * 480] == 0)
    yc = []
    for i in range(0, n, 480):
        c.analyse(clip[i : i + 480])
        yc.append(c.synthesise().copy() if c.run_model() else np.zeros(480, np.float32))
    assert np.array_equal(ya[:n], np.concatenate(yc))
    assert len(b.process(np.zeros(100, np.float32))) == 0  # a partial hop waits
    assert len(b.flush()) == 480 + b.delay_frames * 480  # completed with zeros, then drained


def test_packed_states_equal_unpacked(step_folder, clip, tmp_path):
    folder = step_folder("DeepFilterNet3")
    packed = pack_states(folder, tmp_path / "dfn3_packed")
    with pytest.raises((ModelFolderError, ExportError)):
        pack_states(folder, packed)  # exists, no force
    x = clip[: 100 * 480]
    y = enhance(FastStepHost(folder), x)
    assert np.array_equal(y, enhance(FastStepHost(packed), x))  # FastStepHost runs the packed graph as is
    assert np.array_equal(y, enhance(Host(packed), x))  # and so does the reference host


def test_lean_graph_report(step_folder):
    folder = step_folder("DeepFilterNet3")
    model, rep = lean_step_model(folder / "step.onnx")
    assert "warmup" not in [i.name for i in model.graph.input]
    assert not any(n.op_type == "Einsum" for n in model.graph.node)
    assert rep["gates_removed"] == 6


def test_rejects_non_step_folder(tmp_path):
    (tmp_path / "config.ini").write_text("[df]\n")
    with pytest.raises(ModelFolderError):
        FastStepHost(tmp_path)
