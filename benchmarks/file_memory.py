"""Peak RSS and wall time of `dfnb enhance` on long files, per runtime: flat in the length?

    .venv/bin/python benchmarks/file_memory.py                      # 1 min and 10 min, every runtime
    .venv/bin/python benchmarks/file_memory.py --lengths 1 10 120   # ... and 2 h (offline, step, full)
    .venv/bin/python benchmarks/file_memory.py --lengths 1 --quick  # a smoke run

Inputs are tiled real noisy speech (six VoiceBank clips, 24 s) written block by block as 16-bit wavs into
``benchmarks/results/cache/`` (never a whole file in memory; made once, reused). Each run is the real command
line, ``dfnb enhance IN OUT --quiet ...``, in a child process; its peak RSS is the child's own ``ru_maxrss``
(``os.wait4``), so nothing of this script is counted. Runtimes:

* ``offline`` — ``--runtime offline``: :class:`dfnb.offline.BlockOffline`, the PyTorch model over 5 s blocks
  with every state carried;
* ``stream`` — ``--runtime stream``: the PyTorch streaming step, hop by hop (slow: 2 h only with
  ``--stream-hours``);
* ``step`` — a DeepFilterNet3 ``step`` folder (the fast step host), hop by hop;
* ``full`` — a DeepFilterNet3 ``full`` folder through the general onnxruntime host, hop by hop.

``--fidelity`` also compares the 1-minute offline output with one ``enhance_offline`` over the whole minute
(the reference the blocks must equal; it alone needs ~0.6 GB per minute). Writes
``benchmarks/results/file_memory.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np

import _common  # noqa: F401  (one BLAS thread, set before numpy loads)
from _common import RESULTS

SR = 48000
CLIPS = ("vb_p232_013", "vb_p232_019", "vb_p232_028", "vb_p257_003", "vb_p257_049", "vb_p257_212")
RUNTIMES = ("offline", "stream", "step", "full")


def log(msg: str) -> None:
    print(msg, flush=True)


def long_input(minutes: float) -> Path:
    """``cache/speech_<minutes>min.wav``: the clips tiled to ``minutes``, written 10 s at a time (16-bit)."""
    import soundfile as sf

    from dfnb import clips

    path = RESULTS / "cache" / f"speech_{minutes:g}min.wav"
    n = int(round(minutes * 60 * SR))
    if path.is_file() and sf.info(str(path)).frames == n:
        return path
    base = np.concatenate([clips.load_clip(c)[0] for c in CLIPS]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.wav")
    with sf.SoundFile(str(tmp), "w", SR, 1, subtype="PCM_16") as f:
        for start in range(0, n, 10 * SR):
            idx = np.arange(start, min(n, start + 10 * SR)) % len(base)
            f.write(base[idx])
    tmp.replace(path)
    return path


def dfnb_argv(runtime: str, folders: dict) -> list[str]:
    if runtime in ("offline", "stream"):
        return ["--model", "DeepFilterNet3", "--runtime", runtime]
    return ["--model", str(folders[runtime])]


def run(argv: list[str]) -> dict:
    """One child process: exit code, wall seconds, peak RSS (MB) from its own rusage, last stdout line."""
    exe = Path(sys.executable).parent / "dfnb"
    cmd = ([str(exe)] if exe.is_file() else [sys.executable, "-m", "dfnb.cli"]) + argv
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env={**os.environ, "DFNB_OFFLINE": "1"})
        _, status, ru = os.wait4(p.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().strip(), err.read().strip()
    return {"code": p.returncode, "wall_s": wall, "peak_mb": ru.ru_maxrss / 1024,
            "stdout": stdout.splitlines()[-1:] or [""], "stderr": stderr[-500:]}


def measure(runtime: str, minutes: float, folders: dict, work: Path) -> dict:
    src = long_input(minutes)
    dst = work / f"out_{runtime}_{minutes:g}.wav"
    r = run(["enhance", str(src), str(dst), "--quiet", "--subtype", "PCM_16", *dfnb_argv(runtime, folders)])
    r.update(runtime=runtime, minutes=minutes, rtf=r["wall_s"] / (minutes * 60))
    if r["code"]:
        log(f"  {runtime} {minutes:g} min FAILED (exit {r['code']}): {r['stderr']}")
    if dst.exists() and minutes > 1:
        dst.unlink()  # 2 h of output is 0.7 GB; the 1-minute outputs stay for the fidelity check
    return r


def fidelity(work: Path) -> dict:
    """The 1-minute offline output (5 s blocks, written as FLOAT) against one DfNet.forward over the whole minute."""
    import soundfile as sf

    from dfnb.metrics import snr_of_difference
    from dfnb.models import load_model
    from dfnb.offline import enhance_offline

    src = long_input(1)
    dst = work / "offline_1min_float.wav"
    r = run(["enhance", str(src), str(dst), "--quiet", "--runtime", "offline"])
    assert r["code"] == 0, r
    x, _ = sf.read(str(src), dtype="float32")
    y, _ = sf.read(str(dst), dtype="float32")
    ref = enhance_offline(load_model("DeepFilterNet3"), x).audio
    return {"snr_db": snr_of_difference(ref, y), "max_abs": float(np.max(np.abs(ref - y)))}


def table(rows: list[dict]) -> str:
    lines = ["| runtime | input | peak RSS MB | wall s | RTF |", "|---|---|---|---|---|"]
    for r in rows:
        length = f"{r['minutes'] / 60:g} h" if r["minutes"] >= 60 else f"{r['minutes']:g} min"
        ok = "" if r["code"] == 0 else f" (exit {r['code']})"
        lines.append(f"| {r['runtime']} | {length} | {r['peak_mb']:.0f}{ok} | {r['wall_s']:.0f} | {r['rtf']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", nargs="*", type=float, default=[1, 10], help="input lengths in minutes")
    ap.add_argument("--runtimes", nargs="*", choices=RUNTIMES, default=list(RUNTIMES))
    ap.add_argument("--stream-max", type=float, default=10.0,
                    help="longest input (minutes) for the slow PyTorch stream (default 10)")
    ap.add_argument("--full-max", type=float, default=10.0,
                    help="longest input (minutes) for the general host on a full folder (default 10)")
    ap.add_argument("--fidelity", action="store_true", help="also compare 1-minute offline blocks with whole-file")
    ap.add_argument("--quick", action="store_true", help="only the first length and the two fast runtimes")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    from latency import cached_export

    folders = {"step": cached_export("DeepFilterNet3", "step"), "full": cached_export("DeepFilterNet3", "full")}
    runtimes = ["offline", "step"] if a.quick else a.runtimes
    lengths = a.lengths[:1] if a.quick else a.lengths
    limits = {"stream": a.stream_max, "full": a.full_max}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dfnb-filemem-") as w:
        work = Path(w)
        for minutes in lengths:
            log(f"input {minutes:g} min: {long_input(minutes)}")
            for rt in runtimes:
                if minutes > limits.get(rt, float("inf")):
                    continue
                r = measure(rt, minutes, folders, work)
                rows.append(r)
                log(f"  {rt:8s} {minutes:6g} min: peak RSS {r['peak_mb']:7.1f} MB, {r['wall_s']:7.1f} s "
                    f"(RTF {r['rtf']:.3f}) {r['stdout'][0][:120]}")
        fid = fidelity(work) if a.fidelity else None
    log("")
    log(table(rows))
    if fid:
        log(f"\noffline in 5 s blocks vs one DfNet.forward over the whole minute: SNR of the difference "
            f"{fid['snr_db']:.1f} dB, max abs {fid['max_abs']:.2e}")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "file_memory.json").write_text(json.dumps({"rows": rows, "fidelity": fid}, indent=2) + "\n")
    return 0 if all(r["code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
