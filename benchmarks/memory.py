"""Memory of a long stream through the fast path, and drift of the stream against offline at its end.

    .venv/bin/python benchmarks/memory.py              # 10-minute stream: RSS at 1 min and 10 min, growth
    .venv/bin/python benchmarks/memory.py --hours 1    # 1-hour stream: RSS every 10 minutes (flat?)
    .venv/bin/python benchmarks/memory.py --minutes 2  # a short smoke run

The input is a real noisy clip (``dfn_noisy_snr0``, 10.6 s) tiled endlessly and generated hop by hop, so the
audio itself takes no memory; only the last minute of output is kept (preallocated). RSS comes from psutil,
the peak from ``getrusage``. Growth = RSS at the end − RSS after the first minute (target < 10 MB).

Drift: the stream has seen the whole history; offline PyTorch on the last minute alone starts from zero
state. We compare the stream's last minute with ``enhance_offline`` run on the last minute plus ``W`` seconds
of the preceding input as warm-up context (the context's output is dropped), for several ``W``, and (streams
≤ 15 min) with offline on the *whole* stream — the exact reference: if that agrees to ≥ 90 dB, nothing drifts
numerically in the stream, and any lower number for finite ``W`` is the model's memory (GRU states and the
feature norms carry the history; the norms forget with a 1 s time constant, the GRUs much more slowly).
Writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (one BLAS thread, set before numpy loads)

# isort: split
import argparse
import json
import resource
import time

import numpy as np

from _common import RESULTS

SR, HOP = 48000, 480


def log(msg: str) -> None:
    print(msg, flush=True)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Tiled:
    """An endless signal: ``clip`` (whole hops) repeated; hop ``i`` and any sample range, without copies."""

    def __init__(self, clip: np.ndarray):
        self.clip = np.ascontiguousarray(clip[: len(clip) // HOP * HOP], dtype=np.float32)
        self.hops = len(self.clip) // HOP

    def hop(self, i: int) -> np.ndarray:
        k = i % self.hops
        return self.clip[k * HOP : (k + 1) * HOP]

    def samples(self, start: int, stop: int) -> np.ndarray:
        idx = np.arange(start, stop) % len(self.clip)
        return self.clip[idx]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="stream length in minutes (default 10)")
    ap.add_argument("--hours", type=float, default=None, help="stream length in hours (prints RSS every 10 min)")
    ap.add_argument("--model", default="DeepFilterNet3")
    ap.add_argument("--contexts", nargs="*", type=float, default=[0, 2, 5, 10, 30],
                    help="warm-up context lengths W (s) for the drift check")
    ap.add_argument("--full-history", choices=("auto", "yes", "no"), default="auto",
                    help="also run offline on the whole stream (the exact reference; auto: streams ≤ 15 min)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    from dfnb import clips, metrics
    from dfnb.export import SHORT_NAMES
    from dfnb.hosts.fast import FastStepHost
    from latency import cached_export

    minutes = a.hours * 60 if a.hours else a.minutes
    report_every = 10.0 if a.hours else 1.0  # minutes
    folder = cached_export(a.model, "step")
    sig = Tiled(clips.load_clip("dfn_noisy_snr0")[0])
    rss0 = rss_mb()
    host = FastStepHost(folder)
    d = host.delay_samples
    n_hops = int(round(minutes * 60 * SR / HOP))
    keep = 60 * SR + d  # the last minute of output plus the delay
    tail = np.zeros(keep, np.float32)
    pos = 0  # samples written into the ring
    log(f"{a.model} fast path ({SHORT_NAMES.get(a.model, a.model)}_step), {minutes:g} min stream "
        f"({n_hops} hops); RSS before the host {rss0:.1f} MB, after loading {rss_mb():.1f} MB")
    samples_rss = []
    t0 = time.time()
    next_report = int(report_every * 60 * SR / HOP)
    for i in range(n_hops):
        y = host.process(sig.hop(i))
        j = pos % keep
        tail[j : j + HOP] = y  # keep is a multiple of HOP
        pos += HOP
        if i + 1 == next_report or i + 1 == n_hops:
            m = (i + 1) * HOP / SR / 60
            samples_rss.append({"minute": m, "rss_mb": rss_mb(), "peak_mb": peak_mb()})
            if a.hours or m in (1.0,) or i + 1 == n_hops:
                last = samples_rss[-1]
                log(f"  {m:6.1f} min: RSS {last['rss_mb']:.1f} MB (peak {last['peak_mb']:.1f} MB), "
                    f"{(time.time() - t0) / (i + 1) * 1e6:.0f} µs/hop so far")
            next_report += int(report_every * 60 * SR / HOP)
    # end of stream as offline ends a file: fft_size zeros through the stream, then the lookahead flush
    pad = np.zeros(host.cfg.fft_size, np.float32)
    for k in range(0, len(pad), HOP):
        j = pos % keep
        tail[j : j + HOP] = host.process(pad[k : k + HOP])
        pos += HOP
    for k in range(0, len(fl := host.flush()), HOP):
        j = pos % keep
        tail[j : j + HOP] = fl[k : k + HOP]
        pos += HOP
    wall = time.time() - t0
    stream_peak = peak_mb()
    first = next((s for s in samples_rss if s["minute"] >= 1.0 - 1e-9), samples_rss[0])
    growth = samples_rss[-1]["rss_mb"] - first["rss_mb"]
    log(f"RSS at {first['minute']:.1f} min {first['rss_mb']:.1f} MB, at {samples_rss[-1]['minute']:.1f} min "
        f"{samples_rss[-1]['rss_mb']:.1f} MB: growth {growth:+.2f} MB (target < 10 MB); peak {stream_peak:.1f} MB; "
        f"{wall:.0f} s wall ({wall / (n_hops * HOP / SR):.3f} x realtime)")

    # drift: the stream's output for the last minute of input, against offline with W s of context
    from dfnb.models import load_model
    from dfnb.offline import enhance_offline

    total_in = n_hops * HOP
    out = np.roll(tail, -(pos % keep))  # oldest first: output samples [pos - keep, pos)
    out_start = pos - keep
    last_in = (total_in - 60 * SR, total_in)
    stream_min = out[last_in[0] + d - out_start : last_in[1] + d - out_start]
    loaded = load_model(a.model)
    drift = []
    contexts = list(a.contexts)
    if a.full_history == "yes" or (a.full_history == "auto" and minutes <= 15):
        contexts.append(total_in / SR - 60)  # the whole history: offline sees exactly what the stream saw
    for w in contexts:
        ws = int(round(w * SR)) // HOP * HOP
        start = max(0, last_in[0] - ws)
        seg = sig.samples(start, last_in[1])
        ref = enhance_offline(loaded, seg).audio[last_in[0] - start :]
        snr = metrics.snr_of_difference(ref, stream_min)
        e = metrics.error_per_hop(ref, stream_min)
        drift.append({"context_s": w, "snr_db": snr, "first_second_median_db": float(np.nanmedian(e[:100])),
                      "rest_median_db": float(np.nanmedian(e[100:]))})
        log(f"  drift, offline on the last minute + {w:g} s context: SNR of difference {snr:.1f} dB "
            f"(per-hop median: first second {drift[-1]['first_second_median_db']:.1f} dB, "
            f"rest {drift[-1]['rest_median_db']:.1f} dB)")
    a.out.mkdir(parents=True, exist_ok=True)
    res = {"model": a.model, "minutes": minutes, "rss": samples_rss, "rss_before_host_mb": rss0,
           "growth_mb": growth, "stream_peak_mb": stream_peak, "wall_s": wall, "drift": drift,
           "peak_mb_after_drift_check": peak_mb()}  # the whole-history offline reference is the big one
    name = "memory_1h.json" if a.hours else "memory.json"
    (a.out / name).write_text(json.dumps(res, indent=2) + "\n")
    log(f"wrote {a.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
