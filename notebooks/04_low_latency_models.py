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
# # 04 · The low-latency models
#
# **Question: DeepFilterNet3_ll and DeepFilterNet2_ll have no lookahead — can they be exported stateful and
# streamed exactly like DeepFilterNet3, and what does giving up the lookahead cost in quality and gain in delay?**
#
# **What you will learn**
#
# - where the `_ll` weights come from (their official ONNX releases, imported into PyTorch — no PyTorch
#   checkpoints of them exist upstream) and how their configs differ (`ModelSpec`);
# - that the same stateful exports (`full`, `step`) make their chunked streams exact (≥ 90 dB), while the
#   stateless export diverges just like DeepFilterNet3's;
# - the quality cost of zero lookahead (PESQ, STOI, SNR improvement on the same clips) against the delay saved
#   (`delay_samples` of the stream);
# - that several model families can be loaded in one Python process without changing each other's output.

# %% tags=["parameters"]
import os

FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: one clip, `full` exports only, temp folders
PAIRS = [("DeepFilterNet3", "DeepFilterNet3_ll"), ("DeepFilterNet2", "DeepFilterNet2_ll")]  # (with, without lookahead)
CLIPS = ["vb_p232_028"] if FAST else ["vb_p232_013", "vb_p232_019", "vb_p232_028", "vb_p257_003", "vb_p257_049",
                                      "vb_p257_212"]
CHUNK = 7  # hops per host call
STATEFUL = ["full"] if FAST else ["full", "step"]  # exact variants exported for the _ll models
EXACT_DB = 90.0

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import dfnb
from dfnb import clips, listen, metrics, plot
from dfnb.folder import inspect_folder
from dfnb.hosts.onnx import Host
from dfnb.layout import delay_samples
from dfnb.models import load_model
from dfnb.offline import enhance_offline
from dfnb.reuse import ensure_export
from dfnb.runtime import enhance
from dfnb.streaming import Stream

torch.set_num_threads(1)  # one hop at a time: a single thread is faster, and far faster on a busy machine
EXPORT_ROOT = (Path(tempfile.gettempdir()) / "dfnb_exports" if FAST
               else Path(dfnb.__file__).resolve().parent.parent / "models")


# %% [markdown]
# ## 1 · Load DeepFilterNet3 first, and remember its output
#
# deepfilternet keeps some configuration process-wide; a kit that loads several model families in one process
# must not let the second one change the first one's output. We load DeepFilterNet3 first, enhance a clip
# offline and with the streaming step, and check the same calls again at the end of section 2.

# %%
noisy0, clean0, sr = clips.load_pair(CLIPS[0])
models = {"DeepFilterNet3": load_model("DeepFilterNet3")}
before_offline = enhance_offline(models["DeepFilterNet3"], noisy0, sr).audio
before_stream = enhance(Stream(models["DeepFilterNet3"]), noisy0, chunk=CHUNK)
print(f"DeepFilterNet3 on {CLIPS[0]}: offline and chunk-{CHUNK} stream computed")

# %% [markdown]
# ## 2 · The four models
#
# All four come from their official ONNX releases (`m.source`), checked by sha256. Their configs differ in the
# lookahead (the `_ll` models have none), and DeepFilterNet3_ll compensates with wider GRUs.

# %%
for low, ll in PAIRS:
    for name in (low, ll):
        if name not in models:
            models[name] = load_model(name)
rows = []
for name, m in models.items():
    s = m.spec
    rows.append({"model": name, "family": s.family, "conv_lookahead": s.conv_lookahead,
                 "df_lookahead": s.df_lookahead, "emb_hidden": s.emb_hidden_dim, "df_hidden": s.df_hidden_dim,
                 "df_layers": s.df_num_layers, "delay (ms)": 1000 * delay_samples(s) / s.sr})
print(metrics.metrics_table(rows, floatfmt=".0f"))
for name, m in models.items():
    print(f"{name:18} {m.source}")
for low, ll in PAIRS:
    assert models[ll].spec.conv_lookahead == 0 and models[ll].spec.df_lookahead == 0
    assert models[low].spec.conv_lookahead > 0
assert models["DeepFilterNet3_ll"].spec.emb_hidden_dim > models["DeepFilterNet3"].spec.emb_hidden_dim  # wider GRUs

# %% [markdown]
# Now DeepFilterNet3 again, after three other models were loaded in this process: the same input must give
# bit-identical output, both offline and streamed.

# %%
after_offline = enhance_offline(models["DeepFilterNet3"], noisy0, sr).audio
after_stream = enhance(Stream(models["DeepFilterNet3"]), noisy0, chunk=CHUNK)
print("max |before - after|: offline", float(np.abs(after_offline - before_offline).max()),
      "stream", float(np.abs(after_stream - before_stream).max()))
assert np.array_equal(after_offline, before_offline) and np.array_equal(after_stream, before_stream)

# %% [markdown]
# ## 3 · Stateful exports of the `_ll` models are exact
#
# Same procedure as notebook 02: export, then run the onnxruntime host in calls of `CHUNK` hops and compare with
# the offline PyTorch output. Without lookahead there is no warm-up and the stream lags only by the STFT overlap
# (10 ms), but the GRU states, the convolutions' context, the STFT overlap and the normalisation still have to
# be carried: the stateless export diverges just as much.

# %%
fidelity = []
ll_outputs = {}
for _, ll in PAIRS:
    m = models[ll]
    ref = enhance_offline(m, noisy0, sr).audio
    for v in ["stateless", *STATEFUL]:
        folder = ensure_export(m, v, EXPORT_ROOT)
        y = enhance(Host(folder), noisy0, chunk=CHUNK)
        ll_outputs[ll, v] = y
        fidelity.append({"model": ll, "variant": v,
                         f"SNR diff vs offline, chunk {CHUNK} (dB)": metrics.snr_of_difference(ref, y),
                         "host delay (ms)": 1000 * inspect_folder(folder).delay_samples / sr})
print(f"on {CLIPS[0]}")
print(metrics.metrics_table(fidelity, floatfmt=".1f"))
col = f"SNR diff vs offline, chunk {CHUNK} (dB)"
assert all(r[col] >= EXACT_DB for r in fidelity if r["variant"] in STATEFUL)
assert all(r[col] < 30.0 for r in fidelity if r["variant"] == "stateless")

# %%
ll = PAIRS[0][1]
ll_delay = inspect_folder(ensure_export(models[ll], "full", EXPORT_ROOT, say=lambda _: None)).delay_samples
fig = plot.plot_error_vs_time(enhance_offline(models[ll], noisy0, sr).audio,
                              {v: ll_outputs[ll, v] for v in ["stateless", *STATEFUL]}, sr, chunk_hops=CHUNK,
                              delay_samples=ll_delay, exact_db=EXACT_DB,
                              title=f"{ll} on {CLIPS[0]}: onnxruntime host vs offline")

# %% [markdown]
# ## 4 · What zero lookahead costs, and what it saves
#
# Each model enhances the same clips offline; PESQ, STOI and the SNR improvement are measured against the clean
# recordings. The delay is what a stream of that model lags behind its input (`delay_samples`). This section uses
# several clips (one in FAST mode) instead of the one clip of the rest of the notebooks, because a quality
# difference between two models on one three-second clip says little; the per-clip table shows the spread.
#
# First, listen on the notebooks' clip: DeepFilterNet3 with and without lookahead, and their difference — what
# 20 ms of lookahead changes (one gain for all players, `normalize=False`).

# %%
with_la, without_la = (enhance_offline(models[n], noisy0, sr).audio for n in PAIRS[0])
listen.players({"noisy": noisy0, PAIRS[0][0]: with_la, PAIRS[0][1]: without_la}, sr, residuals=[PAIRS[0]],
               title=f"offline, {CLIPS[0]}")

# %%
quality = []
for clip in CLIPS:
    noisy, clean, sr = clips.load_pair(clip)
    base = {"PESQ": metrics.pesq_wb(clean, noisy, sr), "STOI": metrics.stoi(clean, noisy, sr)}
    for name, m in models.items():
        y = enhance_offline(m, noisy, sr).audio
        quality.append({"clip": clip, "model": name, "PESQ": metrics.pesq_wb(clean, y, sr),
                        "STOI": metrics.stoi(clean, y, sr), "SNR impr. (dB)": metrics.snr_improvement(noisy, y, clean),
                        "noisy PESQ": base["PESQ"]})
print(metrics.metrics_table(quality))
assert all(r["SNR impr. (dB)"] > 0 and r["PESQ"] > r["noisy PESQ"] for r in quality)  # every model helps every clip

# %%
mean = {name: {k: float(np.mean([r[k] for r in quality if r["model"] == name]))
               for k in ("PESQ", "STOI", "SNR impr. (dB)")}
        for name in models}
summary = []
for low, ll in PAIRS:
    for name in (low, ll):
        summary.append({"model": name, **mean[name], "delay (ms)": 1000 * delay_samples(models[name].spec) / sr})
    summary.append({"model": f"  {low} - {ll}", **{k: mean[low][k] - mean[ll][k] for k in mean[low]},
                    "delay (ms)": 1000 * (delay_samples(models[low].spec) - delay_samples(models[ll].spec)) / sr})
print(f"mean over {len(CLIPS)} clip(s)")
print(metrics.metrics_table(summary, floatfmt=".3f"))
for low, ll in PAIRS:
    d_pesq = mean[low]["PESQ"] - mean[ll]["PESQ"]
    saved_ms = 1000 * (delay_samples(models[low].spec) - delay_samples(models[ll].spec)) / sr
    print(f"{ll}: {saved_ms:.0f} ms less delay for {d_pesq:+.3f} PESQ (positive = the lookahead model is better)")
    assert abs(d_pesq) < 0.25  # small: less than a quarter of a PESQ point on average
    ms_ll = models[ll].spec
    assert delay_samples(ms_ll) == ms_ll.fft_size - ms_ll.hop_size  # only the STFT overlap is left
    assert saved_ms >= 20.0

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for ax, key in zip(axes, ("PESQ", "SNR impr. (dB)")):
    for i, name in enumerate(models):
        d_ms = 1000 * delay_samples(models[name].spec) / sr + 0.8 * (i - 1.5)  # both _ll models sit at 10 ms
        vals = [r[key] for r in quality if r["model"] == name]
        (mean_marker,) = ax.plot(d_ms, np.mean(vals), "D", ms=9, label=f"{name} (mean {np.mean(vals):.2f})")
        ax.scatter([d_ms] * len(vals), vals, alpha=0.4, color=mean_marker.get_color())
    ax.set_xlabel("stream delay (ms)")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
fig.suptitle(f"quality vs delay, {len(CLIPS)} VoiceBank-DEMAND clip(s) (dots: clips, diamonds: means; models "
             "offset by ≤ 1.2 ms so that equal delays stay visible)");

# %% [markdown]
# ## Summary
#
# - The `_ll` models load from their official ONNX releases like the others, and several model families live
#   side by side in one process: DeepFilterNet3's output is bit-identical before and after loading the others.
# - Their stateful exports are exact (≥ 90 dB) under chunked streaming; their stateless exports diverge like
#   DeepFilterNet3's — lookahead is only one of the six kinds of memory.
# - Zero lookahead cuts the stream delay to the STFT overlap alone (10 ms, against 30 ms for DeepFilterNet3 and
#   50 ms for DeepFilterNet2 — see the table); on these clips the average quality cost is small (under a quarter
#   of a PESQ point; the numbers are above); per clip the differences are larger and go either way (the per-clip table).
#
# ## Where to go next
#
# - **05_realtime** — per-hop latency of each variant, including the fast step host.
# - **02_stateful_export** — the export procedure in detail.
