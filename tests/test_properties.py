"""Property-based hardening: random audio arrays and sample rates through every public entry point.

The specification, for ``dfnb.audio.check_audio``, ``dfnb.offline.enhance_offline``,
``dfnb.streaming.stream_enhance`` and ``dfnb.host.host_enhance`` (an exported ``full`` folder):

* well-formed input -- 1-D, at least one sample, float16/32/64 (finite, peak <= 32) or integer PCM
  (int8/16/32, uint8), a sample rate that is an integer in 8000..192000 Hz -- returns finite float32 audio of
  the input's length (for every path: short inputs are padded, not refused);
* anything else raises :class:`~dfnb.errors.AudioError` (a documented ``DfnbError``), never another
  exception and never a result.

Shapes are 0-D, 1-D (0 to 3 hops + 60 samples) and 2-D; values include NaN, +-Inf, huge and denormal floats.
"""

from __future__ import annotations

import numbers

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dfnb.audio import FLOAT_PEAK_LIMIT, check_audio
from dfnb.errors import AudioError, DfnbError
from dfnb.host import Host, host_enhance
from dfnb.offline import enhance_offline
from dfnb.streaming import stream_enhance

HOP = 480
SUPPORTED = {np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.uint8)}
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.uint8, np.bool_, object,
          np.int64, np.complex64]
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])


_SPECIAL = {16: [np.nan, np.inf, -np.inf, 40.0, 6e4, 0.0, 6e-8], 32: [np.nan, np.inf, -np.inf, 40.0, 1e30, 0.0, 1e-45],
            64: [np.nan, np.inf, -np.inf, 40.0, 1e30, 1e300, 0.0, 1e-320]}


def _elements(dtype, dirty: bool):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        width = dt.itemsize * 8
        clean = st.floats(-1.5, 1.5, width=width)
        special = [float(dt.type(v)) for v in _SPECIAL[width]]  # exactly representable in the dtype
        return st.one_of(clean, st.sampled_from(special)) if dirty else clean
    if dtype is object:
        return st.one_of(st.floats(-1, 1), st.just(float("nan")), st.integers(-3, 3))
    if dt.kind == "c":
        return st.complex_numbers(max_magnitude=1, width=64)
    return None  # the dtype's whole range


@st.composite
def audio_arrays(draw, max_len: int = 3 * HOP + 60):
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.sampled_from([1, 1, 1, 1, 2, 0]))
    if ndim == 0:
        shape: tuple = ()
    elif ndim == 1:
        shape = (draw(st.integers(0, max_len)),)
    else:
        shape = (draw(st.integers(1, 3)), draw(st.integers(0, 300)))
    elems = _elements(dtype, dirty=draw(st.booleans()))  # half the float arrays hold no special value at all
    return draw(hnp.arrays(np.dtype(dtype), shape, elements=elems))


GOOD_RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000]
SAMPLE_RATES = st.one_of(
    st.sampled_from(GOOD_RATES), st.sampled_from(GOOD_RATES),
    st.sampled_from([np.int64(16000), np.float64(24000.0), 7999, 192001, 0, -48000, 16000.5, True, None, "16000",
                     float("nan"), float("inf"), 48e3]),
    st.integers(-10**6, 10**6),
)


def _well_formed(x: np.ndarray) -> bool:
    if x.ndim != 1 or x.size == 0 or x.dtype not in SUPPORTED:
        return False
    if x.dtype.kind == "f":
        v = x.astype(np.float64)
        with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, i.e. not well-formed
            return bool(np.isfinite(v).all() and np.max(np.abs(v.astype(np.float32))) <= FLOAT_PEAK_LIMIT)
    return True


def _valid_sr(sr) -> bool:
    return (not isinstance(sr, bool) and isinstance(sr, numbers.Real) and float(sr).is_integer()
            and 8000 <= sr <= 192000)


COUNTS: dict = {}


def _check(call, x: np.ndarray, valid: bool, n: int, name: str):
    COUNTS.setdefault(name, [0, 0])[int(bool(valid))] += 1
    try:
        y = call()
    except DfnbError as e:
        assert isinstance(e, AudioError), f"{type(e).__name__}: {e}"
        assert not valid, f"well-formed input refused: {e}"
        assert str(e).strip() and "\n" not in str(e)
        return
    assert valid, f"ill-formed input accepted: dtype {x.dtype}, shape {x.shape}"
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (n,)
    assert np.isfinite(y).all()


@pytest.fixture(scope="module")
def m3(load):
    return load("DeepFilterNet3")


@pytest.fixture(scope="module")
def full_host(exported):
    folder = exported("DeepFilterNet3", "full")
    return folder, Host(folder)


@settings(max_examples=400, **SETTINGS)
@given(x=audio_arrays(max_len=5000), sr=SAMPLE_RATES)
def test_check_audio(x, sr):
    valid = _well_formed(x) and _valid_sr(sr)
    _check(lambda: check_audio(x, sr), x, valid, x.size, "check_audio")


@settings(max_examples=150, **SETTINGS)
@given(x=audio_arrays(), sr=SAMPLE_RATES)
def test_enhance_offline(m3, x, sr):
    valid = _well_formed(x) and (sr is None or _valid_sr(sr))  # sr=None: the model's rate (documented default)
    _check(lambda: enhance_offline(m3, x, sr).audio, x, valid, x.size, "offline")


@settings(max_examples=150, **SETTINGS)
@given(x=audio_arrays())
def test_host_enhance(full_host, x):
    folder, host = full_host
    _check(lambda: host_enhance(folder, x, host=host), x, _well_formed(x), x.size, "host")


@settings(max_examples=40, **SETTINGS)
@given(x=audio_arrays(max_len=2 * HOP + 60))
def test_stream_enhance(m3, x):
    _check(lambda: stream_enhance(m3, x)[0], x, _well_formed(x), x.size, "stream")


@settings(max_examples=100, **SETTINGS)
@given(x=audio_arrays(max_len=3 * HOP), calls=st.integers(1, 3))
def test_host_process_blocks(full_host, x, calls):
    """The realtime call itself: whole hops of good audio are processed (same number of samples out),
    a block that is not whole hops is a StateError, bad samples an AudioError -- and after any refusal the
    host keeps going."""
    _, host = full_host
    host.reset()
    for _ in range(calls):
        try:
            y = host.process(x)
        except DfnbError as e:
            whole_hops = x.ndim == 1 and x.size > 0 and x.size % HOP == 0
            assert type(e).__name__ == ("AudioError" if whole_hops else "StateError"), f"{type(e).__name__}: {e}"
            assert not (whole_hops and _well_formed(x)), f"well-formed hops refused: {e}"
        else:
            assert _well_formed(x) and x.size % HOP == 0
            assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
    y = host.process(np.zeros(HOP, np.float32))
    assert np.isfinite(y).all()


def test_generator_reaches_every_kind_of_input():
    """Guard against a strategy that silently stopped producing the hard cases."""
    seen = set()

    @settings(max_examples=300, **SETTINGS)
    @given(x=audio_arrays(), sr=SAMPLE_RATES)
    def collect(x, sr):
        seen.add(("dtype", x.dtype.kind))
        seen.add(("ndim", x.ndim))
        seen.add(("empty", x.size == 0))
        seen.add(("valid", _well_formed(x) and _valid_sr(sr)))
        if x.dtype.kind == "f" and x.size:
            v = x.astype(np.float64)
            seen.add(("nan", bool(np.isnan(v).any())))
            seen.add(("inf", bool(np.isinf(v).any())))
        seen.add(("short", 0 < x.size < HOP and x.ndim == 1))

    collect()
    for k in [("dtype", c) for c in "fiubOc"] + [("ndim", 0), ("ndim", 1), ("ndim", 2), ("empty", True),
                                                 ("valid", True), ("valid", False), ("nan", True), ("inf", True),
                                                 ("short", True)]:
        assert k in seen, k


def test_some_examples_were_well_formed():
    """Runs after the property tests (file order): each target saw both kinds of input."""
    print(f"\n(ill-formed, well-formed) examples per target: {COUNTS}")
    for name, (bad, good) in COUNTS.items():
        assert good >= 5 and bad >= 5, (name, COUNTS[name])
