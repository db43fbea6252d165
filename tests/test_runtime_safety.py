"""Issue 9, runtimes: one audio gate and one single-stream guard for every runtime, and no NaN state.

Every runtime (the PyTorch :class:`~dfnb.streaming.Stream`, :class:`~dfnb.offline.BlockOffline`, the onnxruntime
:class:`~dfnb.hosts.onnx.Host`, :class:`~dfnb.hosts.fast.FastStepHost` and
:class:`~dfnb.hosts.official.OfficialLikeHost`) is a :class:`dfnb.runtime.Runtime`, so:

* integer PCM given to ``process()`` is scaled like a file (before: the fast and official-like hosts fed int16
  as floats, peak ~17000);
* a block with a NaN is refused before it reaches the model, and the stream goes on as if it had not been
  sent (before: one NaN hop poisoned every later hop);
* ``Host.set_state`` refuses NaN/Inf (before: accepted);
* two threads on one runtime: one gets :class:`~dfnb.errors.StateError`, the other's output is exactly the
  single-threaded one (before: both ran, interleaving their hops, and both outputs were wrong).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dfnb.errors import AudioError, StateError
from dfnb.hosts.fast import FastStepHost
from dfnb.hosts.official import OfficialLikeHost
from dfnb.hosts.onnx import Host
from dfnb.offline import BlockOffline
from dfnb.runtime import enhance
from dfnb.streaming import Stream

SR, HOP = 48000, 480
KINDS = ["stream", "block offline", "host full", "host step", "fast step", "official-like"]


@pytest.fixture(scope="module")
def make(load, exported):
    """``make(kind)``: a fresh runtime of that kind (DeepFilterNet3)."""
    m = load("DeepFilterNet3")
    full, step = exported("DeepFilterNet3", "full"), exported("DeepFilterNet3", "step")
    ctor = {"stream": lambda: Stream(m), "block offline": lambda: BlockOffline(m), "host full": lambda: Host(full),
            "host step": lambda: Host(step), "fast step": lambda: FastStepHost(step),
            "official-like": lambda: OfficialLikeHost(step)}
    return lambda kind: ctor[kind]()


@pytest.fixture(scope="module")
def speech(real_clip):
    return real_clip[SR // 2 : SR // 2 + 40 * HOP].copy()


@pytest.mark.parametrize("kind", KINDS)
def test_integer_pcm_is_scaled_by_every_runtime(kind, make, speech):
    """int16 samples through ``process()`` give what the same samples as float (x / 32768) give."""
    pcm = np.round(speech * 32767).astype(np.int16)
    rt = make(kind)
    y_int = np.concatenate([rt.process(pcm), rt.flush()])
    rt.reset()
    y_float = np.concatenate([rt.process(pcm.astype(np.float32) / 32768), rt.flush()])
    assert np.array_equal(y_int, y_float)
    assert 0.01 < float(np.max(np.abs(y_int))) < 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_a_nan_block_is_refused_and_the_stream_goes_on(kind, make, speech):
    """A NaN in the 11th hop raises, names the stream time, and leaves no trace in the state."""
    a, b = speech[: 10 * HOP], speech[10 * HOP :]
    rt = make(kind)
    ref = np.concatenate([rt.process(a), rt.process(b), rt.flush()])
    rt.reset()
    out = [rt.process(a)]
    bad = b.copy()
    bad[7] = np.nan
    with pytest.raises(AudioError, match=r"stream sample 4807 \(at 0\.100 s; sample 7 of this call\) is NaN"):
        rt.process(bad)
    out += [rt.process(b), rt.flush()]
    y = np.concatenate(out)
    assert np.isfinite(y).all() and np.array_equal(y, ref)


@pytest.mark.parametrize("kind", ["host full", "host step"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_set_state_refuses_non_finite_values(kind, bad, make):
    h = make(kind)
    name = "h0"  # the encoder GRU state of both folders (seed contract name)
    value = np.zeros_like(h.states[name])
    value.reshape(-1)[3] = bad
    with pytest.raises(StateError, match=rf"state '{name}' holds NaN/Inf"):
        h.set_state(name, value)
    assert np.isfinite(h.states[name]).all()


def _race(rt, x, n_threads: int = 2):
    """``n_threads`` threads start ``enhance(rt, x)`` together; their outputs or exceptions."""
    barrier = threading.Barrier(n_threads)
    results: list = [None] * n_threads

    def work(i):
        barrier.wait()
        try:
            results[i] = enhance(rt, x, chunk=4)
        except Exception as e:  # noqa: BLE001 -- recorded and checked below
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


@pytest.mark.parametrize("kind", ["host full", "fast step", "stream", "block offline"])
def test_two_threads_on_one_runtime(kind, make, speech):
    """Two real threads run enhance() on one runtime at once: one gets StateError, the other's output is exactly
    the single-threaded output (never a mix of the two streams' hops)."""
    rt = make(kind)
    ref = enhance(rt, speech, chunk=4)
    results = _race(rt, speech)
    errors = [r for r in results if isinstance(r, Exception)]
    outputs = [r for r in results if isinstance(r, np.ndarray)]
    assert len(errors) == 1 and isinstance(errors[0], StateError), results
    assert "another thread" in str(errors[0])
    assert len(outputs) == 1 and np.array_equal(outputs[0], ref)
    assert np.array_equal(enhance(rt, speech, chunk=4), ref)  # and the runtime is usable afterwards


@pytest.mark.parametrize("kind", ["host full", "fast step", "stream"])
def test_a_call_while_another_thread_is_inside_is_refused(kind, make, speech, monkeypatch):
    """Deterministic: thread A is inside process() (held there) when thread B calls; B gets StateError, A's
    output is what it is without B, and B's call changed nothing."""
    rt = make(kind)
    ref = rt.process(speech)
    rt.reset()
    inside, tried = threading.Event(), threading.Event()
    hops = type(rt)._hops

    def held(self, x):
        inside.set()
        tried.wait(30)
        return hops(self, x)

    monkeypatch.setattr(type(rt), "_hops", held)
    box: dict = {}
    a = threading.Thread(target=lambda: box.setdefault("a", rt.process(speech)))
    a.start()
    assert inside.wait(30)
    with pytest.raises(StateError, match="another thread is inside this runtime"):
        rt.process(speech[:HOP])
    with pytest.raises(StateError, match="another thread is inside this runtime"):
        rt.reset()
    tried.set()
    a.join(60)
    assert np.array_equal(box["a"], ref)


def test_a_runtime_handed_from_thread_to_thread_keeps_streaming(make, speech):
    """Sequential calls from different threads (an audio callback moving between threads) are one stream."""
    rt = make("fast step")
    ref = np.concatenate([rt.process(speech[: 20 * HOP]), rt.process(speech[20 * HOP :])])
    rt.reset()
    out: list = []
    for part in (speech[: 20 * HOP], speech[20 * HOP :]):
        t = threading.Thread(target=lambda p=part: out.append(rt.process(p)))
        t.start()
        t.join(60)
    assert np.array_equal(np.concatenate(out), ref)
