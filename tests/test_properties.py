"""Property-based hardening: random audio arrays and sample rates through every public entry point.

The specification, for ``dfnb.audio.check_audio``, ``dfnb.offline.enhance_offline`` and
``dfnb.runtime.enhance`` with the PyTorch stream, the onnxruntime host (an exported ``full`` folder) and the
fast step host:

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
from dfnb.hosts.fast import FastStepHost
from dfnb.hosts.onnx import Host
from dfnb.offline import enhance_offline
from dfnb.runtime import enhance
from dfnb.streaming import Stream

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


def _empty_ok(x: np.ndarray) -> bool:
    """A realtime call may be empty (nothing to do), if its dtype is audio."""
    return x.ndim == 1 and x.size == 0 and x.dtype in SUPPORTED


def _valid_sr(sr) -> bool:
    return (not isinstance(sr, bool) and isinstance(sr, numbers.Real) and float(sr).is_integer()
            and 8000 <= sr <= 192000)


def _check(call, x: np.ndarray, valid: bool, n: int, name: str):
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


@pytest.fixture(scope="module")
def fast_host(exported):
    return FastStepHost(exported("DeepFilterNet3", "step"))


def _run_property(examples: int, body, **strategies) -> None:
    """Run ``body`` on ``examples`` derandomized draws; ``body`` returns whether its input was well-formed.
    Each target must have seen at least 5 ill-formed and 5 well-formed inputs, or the test itself fails."""
    counts = [0, 0]

    @settings(max_examples=examples, **SETTINGS)
    @given(**strategies)
    def prop(**kw):
        counts[int(bool(body(**kw)))] += 1

    prop()
    assert counts[0] >= 5 and counts[1] >= 5, f"(ill-formed, well-formed) examples: {counts}"


def test_check_audio():
    def body(x, sr):
        valid = _well_formed(x) and _valid_sr(sr)
        _check(lambda: check_audio(x, sr), x, valid, x.size, "check_audio")
        return valid

    _run_property(400, body, x=audio_arrays(max_len=5000), sr=SAMPLE_RATES)


def test_enhance_offline(m3):
    def body(x, sr):
        valid = _well_formed(x) and _valid_sr(sr)
        _check(lambda: enhance_offline(m3, x, sr).audio, x, valid, x.size, "offline")
        return valid

    _run_property(150, body, x=audio_arrays(), sr=SAMPLE_RATES)


@pytest.mark.parametrize("which", ["host", "fast host", "stream"])
def test_runtime_enhance(m3, full_host, fast_host, which):
    """dfnb.runtime.enhance through each runtime (a fresh PyTorch Stream per example: it is slower)."""
    def body(x):
        rt = {"host": full_host[1], "fast host": fast_host}.get(which) or Stream(m3)
        _check(lambda: enhance(rt, x), x, _well_formed(x), x.size, which)
        return _well_formed(x)

    examples, max_len = (80, 2 * HOP + 60) if which == "stream" else (150, 3 * HOP + 60)
    _run_property(examples, body, x=audio_arrays(max_len=max_len))


@settings(max_examples=100, **SETTINGS)
@given(x=audio_arrays(max_len=3 * HOP), calls=st.integers(1, 3))
def test_realtime_calls(full_host, fast_host, x, calls):
    """The realtime call itself, on both hosts: good audio of any length is taken (a partial hop waits for
    the next call, so out comes every completed hop), bad samples are an AudioError that leaves the stream
    where it was -- and after any refusal the host keeps going."""
    for host in (full_host[1], fast_host):
        host.reset()
        pending = 0
        for _ in range(calls):
            try:
                y = host.process(x)
            except DfnbError as e:
                assert type(e).__name__ == "AudioError", f"{type(e).__name__}: {e}"
                assert not (_well_formed(x) or _empty_ok(x)), f"well-formed block refused: {e}"
            else:
                assert _well_formed(x) or _empty_ok(x), f"ill-formed block accepted: {x.dtype}{list(x.shape)}"
                done = (pending + x.size) // HOP * HOP
                pending = pending + x.size - done
                assert y.dtype == np.float32 and y.shape == (done,) and np.isfinite(y).all()
        y = host.process(np.zeros(HOP, np.float32))
        assert np.isfinite(y).all() and y.shape == ((pending + HOP) // HOP * HOP,)


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
