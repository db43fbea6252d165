"""dfnb.metrics: numbers checked against analytical values and tolerances."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dfnb import metrics as m
from dfnb.errors import AudioError, DfnbError

DATA = Path("/work/shared/data/voicebank-demand")
SR = 48000


@pytest.fixture(scope="module")
def pair():
    sf = pytest.importorskip("soundfile")
    clean_path, noisy_path = DATA / "p232_013_clean.wav", DATA / "p232_013_noisy.wav"
    if not clean_path.exists():
        pytest.skip(f"{clean_path} not available")
    clean, sr = sf.read(clean_path, dtype="float32")
    noisy, sr2 = sf.read(noisy_path, dtype="float32")
    assert sr == sr2 == SR
    return clean, noisy


def test_public_api_is_explicit():
    for name in m.__all__:
        assert hasattr(m, name)


def test_snr_of_difference_matches_analytic_value():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(48000)
    noise = rng.standard_normal(48000) * 0.01
    expected = 10 * np.log10(np.sum(x**2) / np.sum(noise**2))
    assert m.snr_of_difference(x, x + noise) == pytest.approx(expected, abs=0.01)
    # Exactly 20 dB: noise scaled to 1/10 of the reference's RMS.
    noise *= np.sqrt(np.sum(x**2) / np.sum(noise**2)) / 10
    assert m.snr_of_difference(x, x + noise) == pytest.approx(20.0, abs=0.01)


def test_snr_of_difference_identical_is_inf_and_float32_ok():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    assert m.snr_of_difference(x, x.copy()) == math.inf
    assert m.max_abs_error(x, x) == 0.0


def test_length_mismatch_names_both_lengths():
    with pytest.raises(AudioError, match=r"100.*99.*align"):
        m.snr_of_difference(np.ones(100), np.ones(99))


@pytest.mark.parametrize(
    "bad, what",
    [(np.zeros(0), "empty"), (np.array([1.0, np.nan]), "non-finite"), (np.ones((2, 5)), "1-D"), ("abc", "numeric")],
)
def test_bad_audio_is_audio_error(bad, what):
    with pytest.raises(AudioError, match=what):
        m.max_abs_error(bad, bad)


def test_column_vector_accepted():
    x = np.arange(1.0, 11.0)
    assert m.max_abs_error(x[:, None], x + 0.5) == pytest.approx(0.5)


def test_max_abs_error():
    assert m.max_abs_error([0.0, 1.0, -2.0], [0.0, 1.5, -3.0]) == pytest.approx(1.0)


def test_si_sdr_scale_invariant_and_known_value():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(16000)
    x -= x.mean()
    n = rng.standard_normal(16000)
    n -= n.mean()
    n -= (n @ x) / (x @ x) * x          # orthogonal to x: SI-SDR is exactly the SNR
    n *= np.sqrt((x @ x) / (n @ n)) / 10 ** (15 / 20)
    est = x + n
    assert m.si_sdr(x, est) == pytest.approx(15.0, abs=0.01)
    assert m.si_sdr(x, 0.1 * est) == pytest.approx(m.si_sdr(x, est), abs=1e-9)
    assert m.si_sdr(x, -3.0 * est) == pytest.approx(m.si_sdr(x, est), abs=1e-9)
    assert m.si_sdr(x, x) == math.inf
    assert m.si_sdr(x, 2.5 * x) > 250  # exact up to rounding
    with pytest.raises(AudioError, match="constant"):
        m.si_sdr(np.ones(100), np.ones(100))


def test_snr_improvement():
    rng = np.random.default_rng(3)
    clean = rng.standard_normal(8000)
    noise = rng.standard_normal(8000)
    noisy = clean + noise                # 0 dB
    enhanced = clean + 0.1 * noise       # 20 dB
    assert m.snr_improvement(noisy, enhanced, clean) == pytest.approx(20.0, abs=0.01)
    with pytest.raises(AudioError):
        m.snr_improvement(noisy[:-1], enhanced, clean)


def test_estimate_delay_recovers_1440_on_real_speech(pair):
    clean, noisy = pair
    delayed = np.concatenate([np.zeros(1440, np.float32), noisy])[: noisy.size]
    assert m.estimate_delay(clean, delayed, max_lag=4800) == 1440
    # The other direction: reference lags.
    assert m.estimate_delay(delayed, clean, max_lag=4800) == -1440


def test_estimate_delay_on_noise_and_respects_max_lag():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(20000)
    y = np.concatenate([np.zeros(1440), x])[:20000] + 0.3 * rng.standard_normal(20000)
    assert m.estimate_delay(x, y, max_lag=2000) == 1440
    assert abs(m.estimate_delay(x, y, max_lag=100)) <= 100
    with pytest.raises(AudioError, match="max_lag"):
        m.estimate_delay(x, y, max_lag=-1)
    with pytest.raises(AudioError, match="all-zero"):
        m.estimate_delay(np.zeros(10), y, max_lag=5)


def test_align_makes_signals_identical():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(5000)
    y = np.concatenate([np.zeros(1440), x])
    a, b = m.align(x, y, 1440)
    assert a.size == b.size == 5000
    assert m.snr_of_difference(a, b) == math.inf
    b2, a2 = m.align(y, x, -1440)
    assert a2.size == b2.size and np.array_equal(a2, b2)
    with pytest.raises(AudioError, match="nothing to compare"):
        m.align(x, y, 10_000)


def test_error_per_hop_length_cap_and_silence():
    rng = np.random.default_rng(6)
    x = rng.standard_normal(480 * 10 + 100)        # 11 hops, the last partial
    x[480 * 2 : 480 * 3] = 0.0                    # hop 2 silent
    y = x.copy()
    y[480 * 5 : 480 * 6] += 0.1 * rng.standard_normal(480)   # hop 5 has error
    e = m.error_per_hop(x, y, hop=480)
    assert e.shape == (11,)
    assert np.isnan(e[2])
    assert np.all(e[[0, 1, 3, 4, 6, 7, 8, 9, 10]] == m.SNR_CAP_DB)
    assert e[5] == pytest.approx(m.snr_of_difference(x[2400:2880], y[2400:2880]), abs=1e-9)
    assert 15 < e[5] < 25
    assert np.nanmax(e) <= 200.0


def test_speech_active_hops(pair):
    clean, _ = pair
    active = m.speech_active_hops(clean, hop=480, threshold_db=-40)
    assert active.dtype == bool and active.shape == (-(-clean.size // 480),)
    assert 0.2 < active.mean() < 0.95
    x = np.zeros(4800)
    x[960:1440] = 1.0
    x[2880:3360] = 0.001                           # -60 dB: below a -40 dB threshold
    assert m.speech_active_hops(x, threshold_db=-40).tolist() == [False, False, True] + [False] * 7
    assert m.speech_active_hops(x, threshold_db=-80)[6]
    assert not m.speech_active_hops(np.zeros(960)).any()


def test_lsnr_error():
    assert m.lsnr_error([1.0, 2.0, 3.0], [1.0, 2.5, 2.0]) == pytest.approx(1.0)
    with pytest.raises(DfnbError, match="shape"):
        m.lsnr_error([1.0], [1.0, 2.0])


def test_pesq_clean_vs_clean_and_noisy(pair):
    pytest.importorskip("pesq")
    clean, noisy = pair
    assert m.pesq_wb(clean, clean, SR) > 4.4
    assert m.pesq_wb(clean, noisy, SR) < 3.5


def test_pesq_of_silence_is_nan_with_warning():
    pytest.importorskip("pesq")
    z = np.zeros(SR)
    with pytest.warns(RuntimeWarning, match="PESQ"):
        assert math.isnan(m.pesq_wb(z, z, SR))


def test_stoi(pair):
    pytest.importorskip("pystoi")
    clean, noisy = pair
    assert m.stoi(clean, clean, SR) >= 0.99
    assert m.stoi(clean, noisy, SR) < m.stoi(clean, clean, SR)


def test_metrics_table_formats_inf_nan_and_aligns():
    rows = [
        {"variant": "stateless", "snr_db": 12.3456, "pesq": float("nan"), "hops": 4},
        {"variant": "gru", "snr_db": float("inf"), "pesq": 4.5, "hops": 1},
        {"variant": "full", "snr_db": -float("inf")},
    ]
    text = m.metrics_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["variant", "snr_db", "pesq", "hops"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["stateless", "12.35", "-", "4"]
    assert lines[3].split() == ["gru", "inf", "4.50", "1"]
    assert lines[4].split() == ["full", "-inf"]
    # numbers are right-aligned: the columns end at the same place
    assert lines[2].index("12.35") + 5 == lines[3].index("inf") + 3
    assert m.metrics_table(rows, columns=["snr_db"], floatfmt=".1f").splitlines()[2].strip() == "12.3"
    assert m.metrics_table([]) == ""
    with pytest.raises(DfnbError, match="dict"):
        m.metrics_table([1, 2])
