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
        valid = _well_formed(x) and (sr is None or _valid_sr(sr))  # sr=None: the model's rate (documented default)
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


# ==========================================================================================================
# Wrong types at every public entry point: a DfnbError that names the argument, never a bare TypeError
# ==========================================================================================================
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=3), st.binary(max_size=2), st.lists(st.integers(0, 3), max_size=2),
                 st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=1), st.just(object()),
                 st.just(np.zeros((2, 2), np.float32)), st.just(np.zeros(5, np.int64)))


@pytest.fixture(scope="module")
def api(m3, full_host, fast_host, exported, tmp_path_factory):
    """Every public entry point with valid arguments: ``name -> (function, args, kwargs)``."""
    import soundfile as sf

    from dfnb import audio, clips, folder, hosts, metrics, runtime
    from dfnb.export import default_folder
    from dfnb.files import enhance_file
    from dfnb.hosts.official import OfficialLikeHost
    from dfnb.offline import BlockOffline

    tmp = tmp_path_factory.mktemp("api")
    wav = tmp / "in.wav"
    sf.write(str(wav), np.zeros(2400, np.float32), 48000)
    full, step = full_host[0], exported("DeepFilterNet3", "step")
    x = np.zeros(2400, np.float32)
    h = full_host[1]
    return tmp, {
        "enhance": (runtime.enhance, [h, x], {"chunk": 1, "progress": None}),
        "enhance_file": (enhance_file, [h, wav, tmp / "out.wav"],
                         {"chunk": 1, "subtype": None, "overwrite": True, "downmix": False, "progress": None,
                          "block_seconds": 1.0}),
        "Feeder": (runtime.Feeder, [h], {"chunk": 1, "total_hops": 0, "progress": None}),
        "Host": (Host, [full], {"threads": 1, "per_call_offline": False, "reset_dsp": False, "probes": False}),
        "FastStepHost": (FastStepHost, [step], {"threads": 1, "lean": True, "session_config": None, "gains": False,
                                                "probes": False}),
        "OfficialLikeHost": (OfficialLikeHost, [step], {"atten_lim_db": 100.0, "post_filter_beta": 0.0,
                                                        "min_db_thresh": -15.0, "silence_hops": 0,
                                                        "tract_start": True}),
        "open_host": (hosts.open_host, [full], {"host": "auto", "threads": 1}),
        "Stream": (Stream, [m3], {"carry": ("stft", "norm"), "probes": False}),
        "BlockOffline": (BlockOffline, [m3], {"probes": False}),
        "enhance_offline": (enhance_offline, [m3, x], {"sr": 48000, "probes": False, "output_sr": 48000,
                                                       "atten_lim_db": None}),
        "inspect_folder": (folder.inspect_folder, [full], {"threads": 1}),
        "check_feeds": (folder.check_feeds, [full / "enc.onnx", {}], {}),
        "open_session": (folder.open_session, [full / "enc.onnx"], {"threads": 1}),
        "Host.set_state": (h.set_state, ["h0", np.zeros((1, 1, 256), np.float32)], {}),
        "FastStepHost.analyse": (fast_host.analyse, [np.zeros(HOP, np.float32)], {}),
        "read_audio": (audio.read_audio, [wav], {"downmix": False}),
        "AudioReader": (audio.AudioReader, [wav], {"downmix": False}),
        "write_audio": (audio.write_audio, [tmp / "w.wav", x, 48000], {"overwrite": True, "subtype": None,
                                                                         "sources": ()}),
        "check_output": (audio.check_output, [tmp / "c.wav"], {"subtype": None, "overwrite": False, "sources": ()}),
        "resample": (audio.resample, [x, 48000, 16000], {}),
        "snr_of_difference": (metrics.snr_of_difference, [x + 1, x + 1], {}),
        "speech_active_hops": (metrics.speech_active_hops, [x + 1], {"hop": 480, "threshold_db": -40.0}),
        "load_clip": (clips.load_clip, ["vb_p232_013"], {}),
        "default_folder": (default_folder, ["DeepFilterNet3", "full"], {"root": "models"}),
    }


def test_wrong_types_at_every_entry_point_are_dfnb_errors(api):
    """Any argument of any public entry point replaced by junk (None, bools, numbers, NaN, strings, bytes, lists,
    dicts, objects, arrays): the call succeeds (the junk happened to be valid) or raises a DfnbError with a
    one-line message, never another exception. Runs in a scratch folder: junk strings are paths too."""
    import os

    tmp, entries = api
    slots = [(name, slot) for name, (_, args, kw) in entries.items() for slot in [*range(len(args)), *kw]]
    seen: set = set()

    def attempt(name, slot, junk):
        fn, args, kw = entries[name]
        args, kw = list(args), dict(kw)
        if isinstance(slot, int):
            args[slot] = junk
        else:
            kw[slot] = junk
        try:
            fn(*args, **kw)
        except DfnbError as e:
            assert str(e).strip() and "\n" not in str(e).strip(), (name, slot, junk, str(e))
            seen.add(name)

    @settings(max_examples=400, **SETTINGS)
    @given(which=st.sampled_from(slots), junk=JUNK)
    def prop(which, junk):
        attempt(*which, junk)

    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        prop()
        for name, slot in slots:  # and every slot meets one junk for certain, whatever hypothesis drew
            attempt(name, slot, object())
    finally:
        os.chdir(cwd)
    assert seen == set(entries), f"entry points never refusing junk: {sorted(set(entries) - seen)}"


@pytest.mark.parametrize("call,error,phrase", [
    ("enhance(None, x)", "ArgumentError", "enhance() needs a dfnb runtime"),
    ("Host(full, threads='2')", "ModelFolderError", "threads must be a positive int, got '2'"),
    ("FastStepHost(step, threads='2')", "ModelFolderError", "threads must be a positive int, got '2'"),
    ("open_host(full, threads=2.0)", "ModelFolderError", "threads must be a positive int, got 2.0"),
    ("open_host(123)", "ModelFolderError", "folder must be the path of a model folder"),
    ("Stream(None)", "ArgumentError", "Stream needs a loaded model"),
    ("Host(full, probes=5)", "ArgumentError", "probes must be True/False or a list of state names"),
    ("enhance(host, x, chunk='7')", "ArgumentError", "chunk must be a positive int, got '7'"),
    ("inspect_folder(None)", "ModelFolderError", "folder must be the path of a model folder"),
    ("fast.analyse(np.zeros(479, np.float32))", "AudioError", "analyse() takes one hop of 480 float32 samples"),
    ("enhance_offline(None, x)", "ArgumentError", "enhance_offline() needs a loaded model"),
    ("load_model(None)", "ModelError", "load_model() takes a model name"),
    ("export_model(m, 'full', None)", "ExportError", "out must be the path of the folder to export to"),
    ("pack_states(None, tmp)", "ModelFolderError", "step_folder must be the path of a step folder"),
    ("write_audio(None, x, 48000)", "AudioError", "output path must be the path of an audio file"),
    ("check_feeds(None, {})", "StateError", "model must be an onnxruntime session or the path of an .onnx file"),
    ("Host(full).set_state('h0', None)", "StateError", "state 'h0' must be a float32 array, got NoneType"),
    ("load_clip(['x'])", "AssetNotFoundError", "unknown clip ['x']"),
])
def test_the_issue_examples_name_the_argument(call, error, phrase, m3, full_host, fast_host, exported, tmp_path):
    from dfnb import errors
    from dfnb.clips import load_clip
    from dfnb.export import export_model
    from dfnb.folder import check_feeds, inspect_folder
    from dfnb.hosts import open_host
    from dfnb.models import load_model
    from dfnb.surgery import pack_states

    env = {"x": np.zeros(480, np.float32), "full": full_host[0], "step": exported("DeepFilterNet3", "step"),
           "host": full_host[1], "fast": fast_host, "m": m3, "tmp": tmp_path, "np": np, "Host": Host,
           "FastStepHost": FastStepHost, "Stream": Stream, "enhance": enhance, "enhance_offline": enhance_offline,
           "open_host": open_host, "inspect_folder": inspect_folder, "load_model": load_model,
           "export_model": export_model, "pack_states": pack_states, "check_feeds": check_feeds,
           "load_clip": load_clip, "write_audio": __import__("dfnb.audio", fromlist=["write_audio"]).write_audio}
    with pytest.raises(getattr(errors, error)) as e:
        eval(call, env)
    assert phrase in str(e.value) and "\n" not in str(e.value)
