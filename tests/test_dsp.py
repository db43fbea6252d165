"""dfnb.dsp against libdf itself: per-hop analysis/synthesis/features, chunking, reset, reconstruction."""

from __future__ import annotations

from types import SimpleNamespace

import libdf
import numpy as np
import pytest

from dfnb import dsp
from dfnb.errors import AssetNotFoundError, AudioError, ModelError, StateError

# DeepFilterNet2/3 config.ini values; HOP240 exercises the general (75 % overlap) path.
DFN = dict(sr=48000, fft_size=960, hop_size=480, nb_erb=32, nb_df=96, min_nb_erb_freqs=2, norm_tau=1.0)
HOP240 = dict(DFN, hop_size=240)


@pytest.fixture(scope="module", params=[DFN, HOP240], ids=["fft960_hop480", "fft960_hop240"])
def setup(request):
    p = request.param
    cfg = dsp.DspConfig.build(**p)
    ref = libdf.DF(p["sr"], p["fft_size"], p["hop_size"], p["nb_erb"], p["min_nb_erb_freqs"])
    return cfg, ref


@pytest.fixture(scope="module")
def noisy():
    from dfnb.clips import load_clip

    try:
        x, sr = load_clip("vb_p232_013")
    except AssetNotFoundError as e:
        pytest.skip(f"real clip unavailable: {e}")
    assert sr == 48000
    return x[: len(x) // 480 * 480]  # whole hops for both hop sizes


def _per_hop(fn, cfg, state, xs):
    return [fn(cfg, state, x) for x in xs]


def _hops(cfg, x):
    return x.reshape(-1, cfg.hop_size)


# --- tables ----------------------------------------------------------------------------------------------

def test_window_and_widths_equal_libdf(setup):
    cfg, ref = setup
    np.testing.assert_array_equal(dsp.vorbis_window(cfg.fft_size), ref.fft_window())
    assert cfg.erb_widths == tuple(int(w) for w in ref.erb_widths())
    assert cfg.freq_bins == 481 and sum(cfg.erb_widths) == cfg.freq_bins
    assert cfg.norm_alpha == {480: 0.99, 240: 0.995}[cfg.hop_size]


@pytest.mark.parametrize("sr,hop,tau", [(48000, 480, 1.0), (48000, 240, 1.0), (16000, 160, 1.0),
                                        (48000, 960, 0.5), (8000, 80, 10.0), (48000, 480, 100.0)])
def test_norm_alpha_equals_df_utils(monkeypatch, sr, hop, tau):
    from dfnb.compat import import_df

    import_df()
    import df.utils

    monkeypatch.setattr(df.utils, "ModelParams", lambda: SimpleNamespace(sr=sr, hop_size=hop, norm_tau=tau))
    expected = df.utils.get_norm_alpha(False)
    assert dsp.norm_alpha(sr, hop, tau) == expected
    assert 0 < expected < 1


def test_initial_norm_states_equal_libdf(setup):
    cfg, _ = setup
    st = dsp.DspState.initial(cfg)
    np.testing.assert_array_equal(st.unit_norm, libdf.unit_norm_init(cfg.nb_df)[0])
    # libdf's default erb_norm state s0: feeding zeros with alpha = 1 gives out = (0 - s0) / 40 (float32)
    out = libdf.erb_norm(np.zeros((1, 1, cfg.nb_erb), np.float32), 1.0)
    np.testing.assert_array_equal(out[0, 0], -st.erb_norm / np.float32(40))


# --- equality with libdf on a real clip ------------------------------------------------------------------

def test_analysis_per_hop_equals_libdf(setup, noisy):
    cfg, ref = setup
    expected = ref.analysis(noisy[None])[0]
    got = np.stack(_per_hop(dsp.analysis, cfg, dsp.DspState.initial(cfg), _hops(cfg, noisy)))
    assert got.dtype == np.complex64 and got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-6 * np.max(np.abs(expected))


def test_synthesis_per_hop_equals_libdf(setup, noisy):
    cfg, ref = setup
    spec = ref.analysis(noisy[None])[0]
    expected = ref.synthesis(spec.copy()[None])[0]  # copy: libdf overwrites its input
    got = np.concatenate(_per_hop(dsp.synthesis, cfg, dsp.DspState.initial(cfg), spec))
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-6


def test_features_per_hop_equal_libdf(setup, noisy):
    cfg, _ = setup
    spec, feat_erb, feat_spec = dsp.offline_features(cfg, noisy)
    out = _per_hop(dsp.features, cfg, dsp.DspState.initial(cfg), spec)
    erb = np.stack([e for e, _ in out])
    df = np.stack([d for _, d in out])
    assert erb.dtype == np.float32 and df.dtype == np.complex64
    assert np.max(np.abs(erb - feat_erb)) <= 1e-5
    assert np.max(np.abs(df - feat_spec)) <= 1e-5


def test_offline_features_equal_df_enhance(monkeypatch, noisy):
    """offline_features is what df.enhance.df_features computes, without torch."""
    from dfnb.compat import import_df

    import_df()
    import df.utils
    import torch
    from df.enhance import df_features  # (df.enhance is also the name of a function in df/__init__)

    monkeypatch.setattr(df.utils, "ModelParams", lambda: SimpleNamespace(sr=48000, hop_size=480, norm_tau=1.0))
    cfg = dsp.DspConfig.build(**DFN)
    ref = libdf.DF(48000, 960, 480, 32, 2)
    spec_t, erb_t, specf_t = df_features(torch.from_numpy(noisy[None]), ref, cfg.nb_df)
    spec, erb, specf = dsp.offline_features(cfg, noisy)
    np.testing.assert_array_equal(spec, torch.view_as_complex(spec_t[0, 0]).numpy())
    np.testing.assert_array_equal(erb, erb_t[0, 0].numpy())
    np.testing.assert_array_equal(specf, torch.view_as_complex(specf_t[0, 0].contiguous()).numpy())


def test_offline_synthesis_equals_libdf_and_keeps_input(setup, noisy):
    cfg, ref = setup
    spec = ref.analysis(noisy[None])[0]
    before = spec.copy()
    y = dsp.offline_synthesis(cfg, spec)
    np.testing.assert_array_equal(spec, before)
    np.testing.assert_array_equal(y, ref.synthesis(before.copy()[None])[0])


# --- state semantics -------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_chunked_equals_one_pass(setup, noisy, chunk):
    cfg, _ = setup
    x = noisy[: 40 * 480]

    def run(hops_per_chunk):
        st = dsp.DspState.initial(cfg)
        outs = []
        step = hops_per_chunk * cfg.hop_size
        for i in range(0, len(x), step):
            spec = dsp.analysis_frames(cfg, st, x[i:i + step])
            erb, df = dsp.features_frames(cfg, st, spec)
            outs.append((spec, erb, df, dsp.synthesis_frames(cfg, st, spec)))
        return [np.concatenate(o) for o in zip(*outs)], st

    (one, st1), (chunked, st2) = run(len(x) // cfg.hop_size), run(chunk)
    for a, b in zip(one, chunked):
        np.testing.assert_array_equal(a, b)
    for name in dsp.DspState.shapes(cfg):
        np.testing.assert_array_equal(getattr(st1, name), getattr(st2, name))


def test_per_hop_equals_frames(setup, noisy):
    cfg, _ = setup
    x = noisy[: 20 * 480]
    st_a, st_b = dsp.DspState.initial(cfg), dsp.DspState.initial(cfg)
    spec = np.stack(_per_hop(dsp.analysis, cfg, st_a, _hops(cfg, x)))
    np.testing.assert_array_equal(spec, dsp.analysis_frames(cfg, st_b, x))
    feats = _per_hop(dsp.features, cfg, st_a, spec)
    erb, df = dsp.features_frames(cfg, st_b, spec)
    np.testing.assert_array_equal(np.stack([f[0] for f in feats]), erb)
    np.testing.assert_array_equal(np.stack([f[1] for f in feats]), df)
    y = np.concatenate(_per_hop(dsp.synthesis, cfg, st_a, spec))
    np.testing.assert_array_equal(y, dsp.synthesis_frames(cfg, st_b, spec))


def _run(cfg, st, x):
    spec = dsp.analysis_frames(cfg, st, x)
    erb, df = dsp.features_frames(cfg, st, spec)
    return spec, erb, df, dsp.synthesis_frames(cfg, st, spec)


def test_reset_restores_initial_state_exactly(setup, noisy):
    cfg, _ = setup
    x = noisy[: 30 * 480]
    st = dsp.DspState.initial(cfg)
    arrays = [getattr(st, n) for n in dsp.DspState.shapes(cfg)]
    first = _run(cfg, st, x)
    st.reset(cfg)
    init = dsp.DspState.initial(cfg)
    for name, a in zip(dsp.DspState.shapes(cfg), arrays):
        assert getattr(st, name) is a  # in place
        np.testing.assert_array_equal(a, getattr(init, name))
    for a, b in zip(first, _run(cfg, st, x)):
        np.testing.assert_array_equal(a, b)


def test_copy_is_an_independent_snapshot(setup, noisy):
    cfg, _ = setup
    st = dsp.DspState.initial(cfg)
    _run(cfg, st, noisy[: 10 * 480])
    snap = st.copy()
    tail = noisy[10 * 480: 20 * 480]
    a = _run(cfg, st, tail)
    b = _run(cfg, snap, tail)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_identity_reconstructs_input_delayed(setup, noisy):
    cfg, _ = setup
    st = dsp.DspState.initial(cfg)
    y = dsp.synthesis_frames(cfg, st, dsp.analysis_frames(cfg, st, noisy))
    d = cfg.fft_size - cfg.hop_size
    err = y[d:] - noisy[:-d]
    snr = 10 * np.log10(np.sum(noisy[:-d] ** 2) / np.sum(err ** 2))
    assert snr > 80, snr


# --- libdf's own state behaviour (why this module exists) ------------------------------------------------

def test_libdf_hides_and_resets_its_state(noisy):
    ref = libdf.DF(48000, 960, 480, 32, 2)
    x = noisy[None, : 20 * 480]
    whole = ref.analysis(x)
    assert np.array_equal(ref.analysis(x), whole)  # reset=None (default) resets the hidden STFT buffer
    assert not np.array_equal(ref.analysis(x, reset=False), whole)  # continues from the previous call
    a = ref.analysis(x[:, :4800])
    b = ref.analysis(x[:, 4800:], reset=False)
    np.testing.assert_array_equal(np.concatenate([a, b], axis=1), whole)
    # norm functions take a state but never hand back (or update) the new one
    st = libdf.unit_norm_init(96)
    st0 = st.copy()
    libdf.unit_norm(np.ascontiguousarray(whole[..., :96]), 0.99, st)
    np.testing.assert_array_equal(st, st0)
    # DF.synthesis overwrites its input spectrum (realfft scratch)
    spec = whole.copy()
    ref.synthesis(spec)
    assert not np.array_equal(spec, whole)


# --- config and input validation -------------------------------------------------------------------------

def test_from_spec_duck_typed():
    cfg = dsp.DspConfig.build(**DFN)
    spec = SimpleNamespace(**{k: v for k, v in DFN.items() if k != "min_nb_erb_freqs"}, min_nb_freqs=2)
    assert dsp.DspConfig.from_spec(spec) == cfg
    full = SimpleNamespace(sr=48000, fft_size=960, hop_size=480, nb_erb=32, nb_df=96,
                           erb_widths=list(cfg.erb_widths), norm_alpha=0.99)
    assert dsp.DspConfig.from_spec(full) == cfg and hash(dsp.DspConfig.from_spec(full)) == hash(cfg)
    with pytest.raises(ModelError, match="nb_df"):
        dsp.DspConfig.from_spec(SimpleNamespace(sr=48000, fft_size=960, hop_size=480, nb_erb=32))


@pytest.mark.parametrize("change,match", [(dict(hop_size=600), "2\\*hop_size"), (dict(nb_df=500), "nb_df"),
                                          (dict(norm_alpha=1.0), "norm_alpha"), (dict(nb_erb=31), "erb_widths")])
def test_inconsistent_config(change, match):
    good = dsp.DspConfig.build(**DFN)
    kw = dict(sr=good.sr, fft_size=good.fft_size, hop_size=good.hop_size, nb_erb=good.nb_erb, nb_df=good.nb_df,
              erb_widths=good.erb_widths, norm_alpha=good.norm_alpha)
    kw.update(change)
    with pytest.raises(ModelError, match=match):
        dsp.DspConfig(**kw)


@pytest.mark.parametrize("change", [dict(hop_size=600), dict(fft_size=961), dict(nb_erb=0), dict(nb_erb=300)])
def test_build_refuses_sizes_libdf_cannot_take(change):
    with pytest.raises(ModelError, match="inconsistent DSP config"):
        dsp.DspConfig.build(**dict(DFN, **change))


def test_bad_inputs_and_states():
    cfg = dsp.DspConfig.build(**DFN)
    st = dsp.DspState.initial(cfg)
    with pytest.raises(AudioError, match="dsp.analysis"):
        dsp.analysis(cfg, st, np.zeros(479, np.float32))
    with pytest.raises(AudioError, match="dsp.analysis_frames"):
        dsp.analysis_frames(cfg, st, np.zeros(1000, np.float32))
    with pytest.raises(AudioError, match="dsp.synthesis"):
        dsp.synthesis(cfg, st, np.zeros(481, np.float32))  # real, not complex
    with pytest.raises(AudioError, match="dsp.features"):
        dsp.features(cfg, st, np.zeros(480, np.complex64))
    other = dsp.DspState.initial(dsp.DspConfig.build(**HOP240))
    for fn, arg in [(dsp.analysis, np.zeros(480, np.float32)), (dsp.synthesis, np.zeros(481, np.complex64)),
                    (dsp.analysis_frames, np.zeros(960, np.float32)),
                    (dsp.synthesis_frames, np.zeros((2, 481), np.complex64))]:
        with pytest.raises(StateError, match="analysis_mem|synthesis_mem"):
            fn(cfg, other, arg)
    bad = st.copy()
    bad.erb_norm = bad.erb_norm.astype(np.float64)
    with pytest.raises(StateError, match="erb_norm.*float64"):
        bad.check(cfg)
    with pytest.raises(StateError):
        bad.reset(cfg)
    assert dsp.analysis_frames(cfg, st, np.zeros(0, np.float32)).shape == (0, 481)
    assert dsp.synthesis_frames(cfg, st, np.zeros((0, 481), np.complex64)).shape == (0,)
