"""dfnb.audio: reading, validation (every documented error), integer scaling, resampling, atomic writing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from dfnb import audio
from dfnb.errors import AudioError

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000]


def _sine(sr: int, seconds: float = 1.0, f: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.fixture
def wav(tmp_path):
    """Write a wav into tmp_path and return its path."""
    def make(data, sr=48000, name="x.wav", subtype=None):
        p = tmp_path / name
        sf.write(str(p), data, sr, subtype=subtype)
        return p
    return make


# --- reading ---------------------------------------------------------------------------------------------

def test_read_mono_pcm16(wav):
    x = _sine(48000, 0.1)
    y, sr = audio.read_audio(wav(x, subtype="PCM_16"))
    assert sr == 48000 and y.dtype == np.float32 and y.ndim == 1 and len(y) == len(x)
    assert np.max(np.abs(y - x)) < 1 / 32768 + 1e-7


def test_read_missing_file_names_path(tmp_path):
    p = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="not found.*nope.wav"):
        audio.read_audio(p)


def test_read_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio")
    with pytest.raises(AudioError, match="not an audio file"):
        audio.read_audio(p)


def test_read_directory(tmp_path):
    with pytest.raises(AudioError, match="not a file"):
        audio.read_audio(tmp_path)


def test_read_empty_file(wav):
    with pytest.raises(AudioError, match="empty"):
        audio.read_audio(wav(np.zeros(0, np.float32)))


def test_read_multichannel_needs_downmix(wav):
    st = np.stack([_sine(48000, 0.1), np.zeros(4800, np.float32), np.ones(4800, np.float32) * 0.1], axis=1)
    p = wav(st, subtype="FLOAT")
    with pytest.raises(AudioError, match="has 3 channels.*downmix=True / --downmix"):
        audio.read_audio(p)
    y, sr = audio.read_audio(p, downmix=True)
    np.testing.assert_allclose(y, st.mean(axis=1), atol=1e-7)


def test_read_float_file_unscaled_pcm(wav):
    x = _sine(48000, 0.1, amp=20000.0)
    with pytest.raises(AudioError, match="likely integer PCM stored as float"):
        audio.read_audio(wav(x, subtype="FLOAT"))


def test_read_float_file_loud_but_allowed(wav):
    x = _sine(48000, 0.1, amp=3.0)
    y, _ = audio.read_audio(wav(x, subtype="FLOAT"))
    np.testing.assert_array_equal(y, x)  # no clipping, no rescaling


def test_read_nan_in_file(wav):
    x = _sine(16000, 1.0)
    x[12345] = np.nan
    with pytest.raises(AudioError, match=r"sample 12345 \(at 0\.772 s"):
        audio.read_audio(wav(x, sr=16000, subtype="FLOAT"))


def test_read_rate_out_of_range(wav):
    with pytest.raises(AudioError, match="outside 8000..192000"):
        audio.read_audio(wav(np.zeros(100, np.float32), sr=4000))


# --- check_audio -----------------------------------------------------------------------------------------

def test_check_returns_float32_copy():
    x = np.zeros(10, np.float32)
    y = audio.check_audio(x, 48000)
    assert y.dtype == np.float32 and y is not x
    y[0] = 1
    assert x[0] == 0


@pytest.mark.parametrize("bad,what", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_check_non_finite_names_time_and_index(bad, what):
    x = np.zeros(48000, np.float32)
    x[24001] = bad
    x[30000] = np.nan
    with pytest.raises(AudioError, match=rf"sample 24001 \(at 0\.500 s, 48000 Hz\) is {what}"):
        audio.check_audio(x, 48000, name="clip")


def test_check_empty_and_min_samples():
    with pytest.raises(AudioError, match="empty"):
        audio.check_audio(np.zeros(0), 48000)
    with pytest.raises(AudioError, match="has 100 samples.*at least 480"):
        audio.check_audio(np.zeros(100), 48000, min_samples=480)
    assert len(audio.check_audio(np.zeros(480), 48000, min_samples=480)) == 480


@pytest.mark.parametrize("shape", [(), (2, 100), (100, 2), (1, 100), (2, 2, 2)])
def test_check_wrong_ndim(shape):
    with pytest.raises(AudioError, match="expected a 1-D mono array"):
        audio.check_audio(np.zeros(shape, np.float32), 48000)


def test_check_2d_hint_mentions_downmix():
    with pytest.raises(AudioError, match="downmix"):
        audio.check_audio(np.zeros((2, 100)), 48000)


@pytest.mark.parametrize("sr", [7999, 192001, 0, -48000, 44100.5, "48000", None, True])
def test_check_bad_sample_rate(sr):
    with pytest.raises(AudioError, match="sample rate"):
        audio.check_audio(np.zeros(10), sr)


@pytest.mark.parametrize("sr", [8000, 192000, 48000.0, np.int64(16000)])
def test_check_good_sample_rate(sr):
    audio.check_audio(np.zeros(10), sr)


def test_check_peak_limits():
    x = np.zeros(100, np.float32)
    x[3] = 31.9
    np.testing.assert_array_equal(audio.check_audio(x, 48000), x)  # 1 < peak <= 32: allowed, untouched
    x[3] = -32.5
    with pytest.raises(AudioError, match="far outside"):
        audio.check_audio(x, 48000)


def test_check_unsupported_dtype():
    with pytest.raises(AudioError, match="not supported"):
        audio.check_audio(np.zeros(10, np.complex64), 48000)
    with pytest.raises(AudioError, match="not supported"):
        audio.check_audio(np.array(["a", "b"]), 48000)


# --- to_float32 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,lo,hi,scale", [
    (np.int8, -128, 127, 128.0),
    (np.int16, -32768, 32767, 32768.0),
    (np.int32, -2**31, 2**31 - 1, 2.0**31),
])
def test_to_float32_signed(dtype, lo, hi, scale):
    y = audio.to_float32(np.array([lo, 0, hi], dtype))
    assert y.dtype == np.float32
    assert y[0] == -1.0 and y[1] == 0.0 and y[2] <= 1.0  # int32 full scale rounds to 1.0 in float32
    assert y[2] == np.float32(hi / scale)


def test_to_float32_uint8():
    y = audio.to_float32(np.array([0, 128, 255], np.uint8))
    np.testing.assert_array_equal(y, np.array([-1.0, 0.0, 127 / 128], np.float32))


def test_to_float32_24bit_left_justified_in_int32(wav):
    x = _sine(48000, 0.05)
    p = wav(x, subtype="PCM_24")
    raw, _ = sf.read(str(p), dtype="int32")
    assert (raw & 0xFF == 0).all()  # soundfile returns 24-bit left-justified
    np.testing.assert_allclose(audio.to_float32(raw), x, atol=2.0**-23)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_to_float32_floats_not_rescaled(dtype):
    y = audio.to_float32(np.array([0.5, -2.0], dtype))
    np.testing.assert_array_equal(y, np.array([0.5, -2.0], np.float32))


def test_check_scales_int16():
    y = audio.check_audio(np.array([16384, -32768], np.int16), 16000)
    np.testing.assert_array_equal(y, [0.5, -1.0])


# --- resampling ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sr", RATES)
def test_resample_round_trip_lengths(sr):
    n = 48000 + 13
    x = _sine(48000, n / 48000)
    y = audio.resample(x, 48000, sr)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - round(n * sr / 48000)) <= 1
    z = audio.resample(y, sr, 48000)
    assert abs(len(z) - round(len(y) * 48000 / sr)) <= 1
    # the 1 kHz tone survives every rate (1 kHz < 4 kHz, the lowest Nyquist)
    m = min(len(x), len(z))
    core = slice(2000, m - 2000)
    err = z[core] - x[core]
    assert 10 * np.log10(np.sum(x[core] ** 2) / (np.sum(err ** 2) + 1e-20)) > 40


def test_resample_sine_48k_16k_48k_snr():
    x = _sine(48000, 1.0)
    z = audio.resample(audio.resample(x, 48000, 16000), 16000, 48000)
    assert len(z) == len(x)
    core = slice(1000, len(x) - 1000)
    snr = 10 * np.log10(np.sum(x[core] ** 2) / np.sum((z[core] - x[core]) ** 2))
    assert snr > 40, snr


def test_resample_same_rate_is_copy():
    x = _sine(16000, 0.1)
    y = audio.resample(x, 16000, 16000)
    np.testing.assert_array_equal(x, y)
    assert y is not x


def test_resample_validates():
    with pytest.raises(AudioError, match="sample rate"):
        audio.resample(np.zeros(100, np.float32), 48000, 44100.5)
    with pytest.raises(AudioError, match="NaN"):
        audio.resample(np.full(100, np.nan, np.float32), 48000, 16000)


# --- writing ---------------------------------------------------------------------------------------------

def test_write_float_round_trip_exact(tmp_path):
    x = _sine(48000, 0.1, amp=1.5)  # overs survive FLOAT
    p = audio.write_audio(tmp_path / "out.wav", x, 48000)
    y, sr = audio.read_audio(p)
    assert sr == 48000
    np.testing.assert_array_equal(x, y)


def test_write_pcm16(tmp_path):
    x = _sine(16000, 0.1)
    p = audio.write_audio(tmp_path / "out.wav", x, 16000, subtype="PCM_16")
    assert sf.info(str(p)).subtype == "PCM_16"
    y, _ = audio.read_audio(p)
    assert np.max(np.abs(y - x)) <= 1 / 32768 + 1e-7


def test_write_refuses_overwrite(tmp_path):
    p = tmp_path / "out.wav"
    audio.write_audio(p, np.zeros(100, np.float32), 48000)
    before = p.read_bytes()
    with pytest.raises(AudioError, match="already exists.*overwrite=True.*--force"):
        audio.write_audio(p, np.ones(100, np.float32) * 0.5, 48000)
    assert p.read_bytes() == before
    audio.write_audio(p, np.ones(100, np.float32) * 0.5, 48000, overwrite=True)
    assert audio.read_audio(p)[0][0] == 0.5


def test_write_invalid_audio_leaves_nothing(tmp_path):
    x = np.zeros(100, np.float32)
    x[5] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        audio.write_audio(tmp_path / "out.wav", x, 48000)
    assert os.listdir(tmp_path) == []


def test_write_failure_midway_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(self, data):  # the header is on disk already; the samples fail
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", boom)
    with pytest.raises(AudioError, match="could not write.*disk full"):
        audio.write_audio(tmp_path / "out.wav", np.zeros(100, np.float32), 48000)
    assert os.listdir(tmp_path) == []


def test_write_failure_keeps_existing_file(tmp_path, monkeypatch):
    p = tmp_path / "out.wav"
    audio.write_audio(p, np.zeros(100, np.float32), 48000)
    before = p.read_bytes()
    monkeypatch.setattr(sf.SoundFile, "write", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(AudioError):
        audio.write_audio(p, np.ones(100, np.float32) * 0.1, 48000, overwrite=True)
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["out.wav"]


def test_write_bad_targets(tmp_path):
    x = np.zeros(100, np.float32)
    with pytest.raises(AudioError, match="does not exist; create it"):
        audio.write_audio(tmp_path / "missing" / "out.wav", x, 48000)
    with pytest.raises(AudioError, match="unknown audio format"):
        audio.write_audio(tmp_path / "out.xyz", x, 48000)
    with pytest.raises(AudioError, match="subtype 'PCM_99'"):
        audio.write_audio(tmp_path / "out.wav", x, 48000, subtype="PCM_99")
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(AudioError, match="not a regular file"):
        audio.write_audio(tmp_path / "d.wav", x, 48000, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["d.wav"]
