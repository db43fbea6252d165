"""dfnb.batching + dfnb.hosts.batched: N streams through one batched step graph, each stream's output equal
(≥ 120 dB SNR of the difference) to the same clip through the single-stream host, with streams joining and
leaving mid-run; per-stream reset; the audio gate; the export's manifest, entry points and refusals."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from dfnb import clips, metrics
from dfnb.batching import export_batched
from dfnb.errors import AudioError, ExportError, StateError
from dfnb.export import export_model
from dfnb.hosts.batched import BatchedHost, enhance_many
from dfnb.hosts.fast import FastStepHost
from dfnb.runtime import enhance

SAME_DB = 120.0  # batched vs single-stream host; measured 131-139 dB on the four models (rounding only)
# 1 s with speech from four clips (a quiet stretch alone would show rounding at ~118 dB)
CLIPS = [("vb_p232_013", 0.5, 1.0), ("vb_p232_019", 0.5, 1.0), ("vb_p257_003", 0.5, 1.0), ("dfn_noisy_snr0", 1.0, 1.0)]
# ticks: joins at the start, two in the same tick, one while the others run; leaves: one, then two in the same
# tick (each leave drains its stream and moves the last row) while the stream that joined last keeps going
STARTS = [0, 3, 3, 25]


@pytest.fixture(scope="module")
def audios() -> list[np.ndarray]:
    return [clips.load_clip(n)[0][int(a * 48000) : int((a + s) * 48000)] for n, a, s in CLIPS]


@pytest.fixture(scope="module")
def batched(load, exported, tmp_path_factory):
    """``batched(name)``: (single-stream step folder, batched folder for 4 streams), exported once: DeepFilterNet3
    from its step folder (the model named in its manifest), DeepFilterNet2 from the loaded model."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("batched")

    def get(name: str):
        if name not in cache:
            single = exported(name, "step")
            source = single if name == "DeepFilterNet3" else load(name)
            cache[name] = (single, export_batched(source, root / f"{name}_b4", streams=4))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["DeepFilterNet3", pytest.param("DeepFilterNet2", marks=pytest.mark.slow)])
def test_each_stream_equals_the_single_stream_host(batched, audios, name):
    single, folder = batched(name)
    man = json.loads((folder / "manifest.json").read_text())
    assert man["variant"] == "step" and man["batch"]["streams"] == 4 and man["batch"]["dim"] == "B"
    assert man["verification"]["max_abs_diff_vs_torch"]["step.onnx"] <= 1e-4
    assert man["batch"]["rewrites"]["grouped_linear"] > 0 and man["batch"]["rewrites"]["tap_sum_conv"] == 1
    fh = FastStepHost(single)
    refs = [enhance(fh, x) for x in audios]
    host = BatchedHost(folder)
    outs = enhance_many(host, audios, STARTS)
    assert host.streams == ()  # every stream left
    for (clip, _, _), x, ref, y in zip(CLIPS, audios, refs, outs):
        assert y.shape == x.shape and y.dtype == np.float32
        snr = metrics.snr_of_difference(ref, y)
        print(f"{name} {clip}: batched vs single-stream host {snr:.1f} dB")
        assert snr >= SAME_DB
        assert metrics.snr_of_difference(x, y) < 40  # it did enhance (not a pass-through)
    # a second run through the same host (rows reused after leave) gives the same numbers
    again = enhance_many(host, audios, [0, 0, 0, 0])
    for y, z in zip(outs, again):
        assert metrics.snr_of_difference(y, z) >= SAME_DB


def test_reset_leave_and_capacity(batched, audios):
    single, folder = batched("DeepFilterNet3")
    x = audios[0]
    ref = enhance(FastStepHost(single), x)
    host = BatchedHost(folder, capacity=2)
    a, b = host.join(), host.join()
    with pytest.raises(StateError, match="in use"):
        host.join()
    noise = np.random.default_rng(0).standard_normal((30, 480)).astype(np.float32) * 0.1
    for t in range(30):  # a carries other audio first, then is reset and must behave like a fresh stream
        host.process({a: noise[t], b: noise[t] * 0.5})
    host.reset(a)
    padded = np.concatenate([x, np.zeros(960, np.float32)])
    outs = [host.process({a: padded[t * 480 : (t + 1) * 480], b: noise[t % 30]})[a].copy()
            for t in range(len(padded) // 480)]
    assert host.leave(b, flush=False).size == 0 and host.streams == (a,)
    y = np.concatenate(outs + [host.leave(a)])[host.delay_samples : host.delay_samples + len(x)]
    assert metrics.snr_of_difference(ref, y) >= SAME_DB
    with pytest.raises(StateError, match="not active"):
        host.reset(a)


def _bad_hops(hop: np.ndarray) -> dict[str, object]:
    """What one stream may send instead of a float32 hop: each is refused by the runtimes' gate."""
    nan = hop.copy()
    nan[7] = np.nan
    return {"NaN": nan, "Inf": np.where(np.arange(len(hop)) == 3, np.inf, hop).astype(np.float32),
            "unscaled int16 values as float": np.round(hop * 32767).astype(np.float32) + 200.0,
            "short hop": hop[:100], "2-D hop": hop.reshape(2, -1), "text": "hop", "None": None}


def test_bad_hop_reaches_no_stream(batched, audios):
    """The same gate as every runtime, stream by stream: a bad hop of one stream is an AudioError naming it (and
    its stream time), nothing of that tick reaches any stream, and every stream goes on exactly as without it;
    integer PCM is scaled like a file, as every runtime does."""
    _, folder = batched("DeepFilterNet3")
    x = [a[: 40 * 480].reshape(40, 480) for a in audios[:2]]
    clean, host = BatchedHost(folder), BatchedHost(folder)
    ids = [clean.join() for _ in x], [host.join() for _ in x]
    want = [clean.process_rows(np.stack([x[0][t], x[1][t]])).copy() for t in range(40)]
    got = []
    for t in range(40):
        if t == 20:
            bad = np.stack([x[0][t], x[1][t]])
            bad[1, 7] = np.nan
            with pytest.raises(AudioError, match=rf"batched host stream {ids[1][1]}: stream sample 9607 \(at 0\.200 s"):
                host.process_rows(bad)
            for what, hop in _bad_hops(x[1][t]).items():
                with pytest.raises(AudioError, match=f"stream {ids[1][1]}") as e:
                    host.process({ids[1][0]: x[0][t], ids[1][1]: hop})
                assert e.value.stream == ids[1][1], what
        got.append(host.process_rows(np.stack([x[0][t], x[1][t]])).copy())
    assert np.array_equal(np.stack(want), np.stack(got))  # the refused ticks changed nothing, in no stream
    with pytest.raises(StateError, match="every active stream"):
        host.process({ids[1][0]: x[0][0]})
    with pytest.raises(AudioError, match=r"\[2, 480\]"):
        host.process_rows(x[0][:1])
    # integer PCM, per stream or as rows, is scaled exactly as every runtime scales it
    pcm = np.round(np.stack([x[0][0], x[1][0]]) * 32767).astype(np.int16)
    a, b = BatchedHost(folder), BatchedHost(folder)
    sa = [a.join() for _ in x]
    for _ in x:
        b.join()
    for _ in range(8):  # past the model delay, so the outputs are not zeros
        ya = a.process({sa[0]: pcm[0], sa[1]: pcm[1]})
        yb = b.process_rows(pcm.astype(np.float32) / 32768)
    assert np.array_equal(np.stack([ya[sa[0]], ya[sa[1]]]), yb) and np.abs(yb).max() > 1e-4
    assert np.array_equal(a.process_rows(pcm), b.process_rows(pcm.astype(np.float32) / 32768))


def test_one_thread_at_a_time(batched, audios):
    """A second thread inside the host (or while enhance_many holds it) gets StateError; nothing changes."""
    _, folder = batched("DeepFilterNet3")
    host = BatchedHost(folder)
    sid = host.join()
    hop = audios[0][:480]
    host._threads.busy.acquire()  # as if another thread were inside process()
    try:
        for call in (lambda: host.process({sid: hop}), host.join, lambda: host.leave(sid), lambda: host.reset(sid)):
            with pytest.raises(StateError, match="another thread is inside this host"):
                call()
    finally:
        host._threads.busy.release()
    assert host.streams == (sid,)
    host.leave(sid)
    done = threading.Event()
    with host.exclusive():  # what enhance_many holds: any other thread is refused
        t = threading.Thread(target=lambda: (pytest.raises(StateError, host.join), done.set()))
        t.start()
        t.join(30)
    assert done.is_set() and host.streams == ()


def test_export_entry_points_and_refusals(batched, exported, load, tmp_path):
    single, out = batched("DeepFilterNet3")  # exported from the step folder
    man = json.loads((out / "manifest.json").read_text())
    assert man["batch"]["streams"] == 4 and man["states"][0]["shape"][0] == "B"
    assert BatchedHost(out).capacity == 4 and BatchedHost(out, capacity=2).capacity == 2
    with pytest.raises(ExportError, match="step folder"):
        export_batched(exported("DeepFilterNet3", "full"), tmp_path / "nope", streams=2)
    with pytest.raises(ExportError, match="variant 'step'"):
        export_model(load("DeepFilterNet3"), "h0", tmp_path / "nope", streams=2)
    with pytest.raises(ExportError, match="positive"):
        export_model(load("DeepFilterNet3"), "step", tmp_path / "nope", streams=0)
    from dfnb.errors import ModelFolderError

    with pytest.raises(ModelFolderError, match="not a batched step folder"):
        BatchedHost(single)
    import shutil

    edited = shutil.copytree(out, tmp_path / "edited")
    (edited / "config.ini").write_text((edited / "config.ini").read_text().replace("nb_df = 96", "nb_df = 64"))
    with pytest.raises(ModelFolderError, match="config.ini is missing or not the file exported"):
        BatchedHost(edited)
    from dfnb.hosts import open_host

    with pytest.raises(ModelFolderError, match="BatchedHost"):  # the single-stream hosts refuse it by name
        open_host(out)
    import soundfile as sf

    from dfnb import cli

    sf.write(tmp_path / "in.wav", np.zeros(4800, np.float32), 48000)  # and so does `dfnb enhance`, in one line
    assert cli.main(["enhance", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"), "--model", str(out)]) == 7
    assert not (tmp_path / "out.wav").exists()
