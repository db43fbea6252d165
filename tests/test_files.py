"""dfnb.files.enhance_file: file to file in blocks, for every runtime, equal to enhance() on the whole array.

* the same numbers as :func:`dfnb.runtime.enhance` (bit-identical: one Feeder, same calls) for the PyTorch
  stream, the block offline runtime, the onnxruntime host and the fast step host;
* a file not at 48 kHz: streaming soxr both ways equals resampling the whole array (bit-identical), the
  output has exactly the input's length and rate;
* :class:`~dfnb.offline.BlockOffline` (the offline model over blocks, every state carried) equals one
  ``DfNet.forward`` over the whole clip (>= 90 dB SNR of the difference, several blocks, both families);
* a NaN deep inside a file is named by its time, nothing is written, an existing output stays as it was.

Peak RSS for 1 min / 10 min / 2 h files: ``benchmarks/file_memory.py`` (too slow for a test).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

from dfnb import cli
from dfnb.audio import resample, write_audio
from dfnb.errors import AudioError, StateError
from dfnb.files import enhance_file
from dfnb.hosts.fast import FastStepHost
from dfnb.hosts.onnx import Host
from dfnb.metrics import snr_of_difference
from dfnb.offline import BlockOffline, enhance_offline
from dfnb.runtime import Runtime, enhance
from dfnb.streaming import Stream

SR, HOP = 48000, 480


@pytest.fixture(scope="module")
def make(load, exported):
    m = load("DeepFilterNet3")
    full, step = exported("DeepFilterNet3", "full"), exported("DeepFilterNet3", "step")
    ctor = {"stream": lambda: Stream(m), "block offline": lambda: BlockOffline(m), "host full": lambda: Host(full),
            "fast step": lambda: FastStepHost(step)}
    return lambda kind: ctor[kind]()


def _wav(path, x, sr=SR, subtype="FLOAT"):
    sf.write(str(path), x, sr, subtype=subtype)
    return path


@pytest.mark.parametrize("kind,chunk", [("stream", 1), ("stream", 7), ("block offline", None), ("block offline", 33),
                                        ("host full", 1), ("host full", 20), ("fast step", 1)])
def test_enhance_file_equals_enhance(kind, chunk, make, real_clip, tmp_path):
    x = real_clip[: int(1.3 * SR) + 123].copy()  # not a whole number of hops
    rt = make(kind)
    c = rt.default_chunk if chunk is None else chunk
    r = enhance_file(rt, _wav(tmp_path / "in.wav", x), tmp_path / "out.wav", chunk=chunk, block_seconds=0.37)
    y, sr = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    assert sr == SR and r.samples == len(x) == len(y) and r.subtype == "FLOAT" and r.clipped == 0
    assert np.array_equal(y, enhance(rt, x, chunk=c))


@pytest.mark.parametrize("sr", [16000, 44100])
def test_a_file_not_at_48k(sr, make, real_clip, tmp_path):
    """Streaming resampling in and out equals resampling the whole array; length and rate are the input's."""
    x = resample(real_clip[: int(1.1 * SR)], SR, sr)[:-7]  # an odd length
    rt = make("host full")
    enhance_file(rt, _wav(tmp_path / "in.wav", x, sr), tmp_path / "out.wav", chunk=3, block_seconds=0.25)
    y, sr_out = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    y48 = enhance(rt, resample(x, sr, SR), chunk=3)
    ref = resample(y48, SR, sr)[: len(x)]
    assert sr_out == sr and len(y) == len(x)
    assert np.array_equal(y, ref)


@pytest.mark.parametrize("name", ["DeepFilterNet3", "DeepFilterNet2"])
def test_block_offline_equals_whole_file_offline(name, load):
    """12 s of real speech in blocks of 3 s (every GRU and conv state carried) against one DfNet.forward."""
    from dfnb import clips

    m = load(name)
    x = np.concatenate([clips.load_clip(c)[0] for c in ("vb_p232_013", "vb_p232_019", "vb_p257_003")])[: 12 * SR]
    ref = enhance_offline(m, x).audio
    y = enhance(BlockOffline(m), x, chunk=300)
    snr = snr_of_difference(ref, y)
    print(f"\n{name}: blocks of 3 s vs whole file: {snr:.1f} dB")
    assert snr >= 90


class Passthrough(Runtime):
    """A runtime that copies its input (delay 0): the file driver alone, in no time."""

    def __init__(self, sr: int = 8000):
        from dfnb.dsp import DspConfig

        self.cfg = DspConfig.build(sr, 2 * (sr // 100), sr // 100, 16, 8)
        self.delay_samples, self.label, self.seen = 0, "passthrough", 0.0
        super().__init__()

    def _reset(self):
        self.seen = 0.0

    def _hops(self, x):
        self.seen = max(self.seen, float(np.max(np.abs(x))))
        return x.copy()

    def _drain(self):
        return np.zeros(0, np.float32)


def test_a_nan_deep_inside_a_file_is_named_by_its_time_and_nothing_is_written(tmp_path):
    sr = 8000
    n = 75 * sr
    x = (0.1 * np.sin(np.arange(n) / 7)).astype(np.float32)
    x[72 * sr + 4000] = np.nan  # at 72.5 s
    src = _wav(tmp_path / "long.wav", x, sr)
    out = tmp_path / "out.wav"
    write_audio(out, np.ones(10, np.float32), sr)  # an earlier dfnb output, to be replaced only on success
    before = out.read_bytes()
    rt = Passthrough(sr)
    with pytest.raises(AudioError, match=r"sample 580000 \(at 72\.500 s = 0:01:12\.500, 8000 Hz\) is NaN"):
        enhance_file(rt, src, out, overwrite=True)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["long.wav", "out.wav"]
    assert rt.seen < 1.0  # the runtime saw only good samples
    x[72 * sr + 4000] = 0.0
    _wav(src, x, sr)
    r = enhance_file(rt, src, out, overwrite=True)  # the good file replaces it, through the same driver
    y, _ = sf.read(str(out), dtype="float32")
    assert r.samples == n and np.array_equal(y, x)


def test_progress_and_two_threads_on_one_file_runtime(make, real_clip, tmp_path):
    x = real_clip[: 2 * SR].copy()
    src = _wav(tmp_path / "in.wav", x)
    calls: list = []
    enhance_file(make("fast step"), src, tmp_path / "a.wav", chunk=10, progress=lambda d, t: calls.append((d, t)))
    total = (len(x) + 960) // HOP
    assert calls[-1] == (total, total) and all(d1 < d2 for (d1, _), (d2, _) in zip(calls, calls[1:]))
    rt = make("fast step")
    barrier, res = threading.Barrier(2), {}

    def work(i):
        barrier.wait()
        try:
            res[i] = enhance_file(rt, src, tmp_path / f"t{i}.wav", chunk=1)
        except StateError as e:
            res[i] = e

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    [t.start() for t in ts]
    [t.join(120) for t in ts]
    errors = [r for r in res.values() if isinstance(r, StateError)]
    assert len(errors) == 1 and len(res) == 2
    ok = next(i for i, r in res.items() if not isinstance(r, StateError))
    y, _ = sf.read(str(tmp_path / f"t{ok}.wav"), dtype="float32")
    assert np.array_equal(y, sf.read(str(tmp_path / "a.wav"), dtype="float32")[0])
    assert not (tmp_path / f"t{1 - ok}.wav").exists()


def test_cli_offline_is_the_block_runtime(load, real_clip, tmp_path, capsys):
    x = real_clip[: int(2.5 * SR)].copy()
    src = _wav(tmp_path / "in.wav", x)
    assert cli.main(["enhance", str(src), str(tmp_path / "out.wav"), "--runtime", "offline", "--quiet"]) == 0
    assert "PyTorch offline (5 s blocks, every state carried), chunk 500" in capsys.readouterr().out
    y, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    assert snr_of_difference(enhance_offline(load("DeepFilterNet3"), x).audio, y) >= 90
