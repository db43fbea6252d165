# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: dfnb (DeepFilterNet kit)
#     language: python
#     name: dfnb
# ---

# %% [markdown]
# # 01 · Why a chunked host diverges from offline
#
# **Question: a realtime host feeds DeepFilterNet's released ONNX models a few hops at a time and the output
# sounds choppy, although the same model over the whole file sounds clean. What exactly does the host lose at
# each chunk boundary, and how much does each loss cost?**
#
# **What you will learn**
#
# - how to reproduce the choppy output of a naive chunked host, both with the PyTorch streaming step
#   (`enhance(Stream(m, carry=()), x, chunk=N)`) and with onnxruntime on a stateless export
#   (`enhance(Host(folder, per_call_offline=True, reset_dsp=True), x, chunk=N)`) — they agree;
# - where the error lives: in time, right after each chunk boundary (`plot_error_vs_time(..., chunk_hops=N)`);
# - the six kinds of memory the offline model keeps and a stateless call throws away — STFT overlap, feature
#   normalisation, GRU states (per sub-model), convolution context, lookahead, deep-filter buffer — and the error
#   each one *alone* causes (`Stream(m, carry=set(STATE_GROUPS) - {group})`);
# - how the error depends on the chunk size.
#
# The yardstick everywhere is the **SNR of the difference** against the offline output:
# 10·log10(Σ ref² / Σ (ref − test)²). Identical outputs give +∞; float32 round-off gives about 130 dB; anything
# below ~30 dB is audible as an artifact.

# %% tags=["parameters"]
import os

MODEL = "DeepFilterNet3"
FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: shorter clip, fewer chunk sizes
CLIP = "vb_p232_028" if FAST else "vb_p232_013"
CHUNK = 7  # hops per host call (70 ms): the chunk size used for the cause-by-cause breakdown
CHUNKS = [2, 7, 32] if FAST else [1, 2, 4, 7, 16, 32]  # chunk sizes for the error-vs-chunk sweep
EXACT_DB = 90.0  # SNR of the difference above which we call two outputs equal (float32 round-off ≈ 130 dB)

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Audio, display

from dfnb import clips, metrics, plot
from dfnb.export import export_model
from dfnb.hosts.onnx import Host
from dfnb.layout import STATE_GROUPS
from dfnb.models import load_model
from dfnb.offline import enhance_offline
from dfnb.runtime import enhance
from dfnb.streaming import Stream

torch.set_num_threads(1)  # one hop at a time: a single thread is faster, and far faster on a busy machine
assert CHUNK in CHUNKS
m = load_model(MODEL)
noisy, clean, sr = clips.load_pair(CLIP)
reference = enhance_offline(m, noisy, sr).audio  # the full-sequence output everything is compared with
print(f"{MODEL} on {CLIP}: {len(noisy) / sr:.2f} s, {len(noisy) // m.spec.hop_size} hops")

# %% [markdown]
# ## 1 · The naive host: every call is a fresh file
#
# The released ONNX models take a whole sequence of frames and start every call from zero: zero GRU states, zero
# convolution padding, no future frames. A host that calls them on `CHUNK` hops at a time — and, like a Python host
# calling libdf's `analysis()` per chunk, also restarts the STFT and the feature normalisation — effectively runs the
# offline model on each chunk as if it were a separate file.
#
# We reproduce this two ways: the PyTorch streaming step with **no** state carried across chunk boundaries
# (`carry=()`), and the onnxruntime host on a stateless export (upstream's ONNX layout) in its naive mode. They
# should be the same computation.

# %%
naive_torch = enhance(Stream(m, carry=()), noisy, chunk=CHUNK)
stateless_dir = export_model(m, "stateless", Path(tempfile.mkdtemp(prefix="dfnb01_")) / "stateless")
naive_onnx = enhance(Host(stateless_dir, per_call_offline=True, reset_dsp=True), noisy, chunk=CHUNK)
exact_torch = enhance(Stream(m), noisy, chunk=CHUNK)  # carry everything: the exact stream

snr_naive = metrics.snr_of_difference(reference, naive_torch)
snr_onnx = metrics.snr_of_difference(reference, naive_onnx)
snr_torch_vs_onnx = metrics.snr_of_difference(naive_torch, naive_onnx)
snr_exact = metrics.snr_of_difference(reference, exact_torch)
print(f"naive PyTorch stream vs offline : {snr_naive:6.2f} dB")
print(f"naive ONNX host vs offline      : {snr_onnx:6.2f} dB")
print(f"naive PyTorch vs naive ONNX     : {snr_torch_vs_onnx:6.1f} dB  (same computation)")
print(f"carry every state vs offline    : {snr_exact:6.1f} dB  (exact)")
assert snr_naive < 20.0 and snr_onnx < 20.0  # far from the reference
assert snr_torch_vs_onnx > EXACT_DB  # the PyTorch emulation IS the ONNX host
assert snr_exact >= EXACT_DB

# %% [markdown]
# Listen to the naive host next to the offline output: the chunked one has a rough, periodic flutter at the chunk
# rate (every 70 ms) and lets noise through at the start of every chunk.

# %%
for name, sig in [("noisy", noisy), ("offline reference", reference), (f"naive host, chunk {CHUNK}", naive_onnx)]:
    print(name)
    display(Audio(sig, rate=sr))

# %% [markdown]
# ### What it looks like
#
# Top: offline and naive outputs on one dB scale. Bottom: the spectrogram of their difference — the naive host's
# error shows up as **vertical stripes, one per chunk boundary** (every 70 ms), strongest on the speech. The third
# figure puts a number on it: the per-hop SNR of the difference, with the chunk boundaries as dotted lines; the
# exact stream sits at round-off (~130 dB) for the whole clip.

# %%
fig = plot.plot_spectrograms({"offline reference": reference, f"naive host (chunk {CHUNK} hops)": naive_onnx}, sr,
                             title=f"{MODEL} on {CLIP}")
fig = plot.plot_difference_spectrogram(reference, naive_onnx, sr,
                                       title=f"offline − naive host, chunk {CHUNK} hops")
fig, (ax_all, ax_zoom) = plt.subplots(2, 1, figsize=(9, 6.5), layout="constrained")
tests = {"naive host": naive_onnx, "carry every state": exact_torch}
plot.plot_error_vs_time(reference, tests, sr, chunk_hops=CHUNK, ax=ax_all, title=f"{MODEL} on {CLIP}")
plot.plot_error_vs_time(reference, tests, sr, chunk_hops=CHUNK, ax=ax_zoom, title=f"zoom on 0.5 s of speech")
ax_zoom.set_xlim(1.0, 1.5)

# %% [markdown]
# Is the error really tied to the chunk boundaries? Fold the per-hop error by the hop's position inside its chunk
# (speech hops only, so that silent hops do not dominate): if the boundaries are to blame, some positions are
# consistently much worse than others. A caveat when reading the dotted lines: they mark the boundaries in *input*
# time, while the stream's output lags by `delay_frames` hops plus the STFT overlap (30 ms for DeepFilterNet3)
# before being aligned, so damage done at a boundary shows up a few hops before or after its line.

# %%
hop = m.spec.hop_size
speech = metrics.speech_active_hops(clean, hop, threshold_db=-30.0)


def fold_by_position(test):
    """Median per-hop SNR of the difference (speech hops) at each position 0..CHUNK-1 inside a chunk."""
    e = metrics.error_per_hop(reference, test, hop)
    n = min(len(e), len(speech))
    pos = np.arange(n) % CHUNK
    return np.array([np.nanmedian(e[:n][(pos == p) & speech[:n]]) for p in range(CHUNK)])


naive_profile = fold_by_position(naive_onnx)
print("naive host, median per-hop SNR by position in chunk (dB):", np.round(naive_profile, 1))
print(f"best position {naive_profile.max():.1f} dB, worst {naive_profile.min():.1f} dB, "
      f"spread {np.ptp(naive_profile):.1f} dB")
assert np.ptp(naive_profile) > 10.0

# %% [markdown]
# ## 2 · Six kinds of memory, one at a time
#
# The offline model, run over the whole file, carries information from one frame to the next in six ways
# (`dfnb.streaming.STATE_GROUPS`; the GRU states are split per sub-model, so there are eight groups):
#
# | group | what a fresh call loses |
# |---|---|
# | `stft` | the analysis window's overlap with the previous hop and the synthesis overlap-add tail |
# | `norm` | the running means that normalise the ERB and complex features (restart from their initial values) |
# | `gru_enc`, `gru_erb`, `gru_df` | the hidden state of the encoder GRU, the ERB-decoder GRUs, the DF-decoder GRUs |
# | `conv` | the past input frames of every causal convolution with a time kernel > 1 (zero padding instead) |
# | `lookahead` | the chunk's last frames are computed without their future frames (zero padding), output immediately |
# | `df_buffer` | the past (and lookahead) spectra that the deep filter combines |
#
# `Stream(carry=...)` keeps exactly the groups listed and resets the others at every chunk boundary. Dropping
# **one** group at a time isolates the error that group alone causes. We run this for every chunk size of the
# sweep at once (section 4 uses the rest).

# %%
CARRY_ALL = frozenset(STATE_GROUPS)
runs = {"naive (nothing carried)": CARRY_ALL - CARRY_ALL, **{f"drop {g}": CARRY_ALL - {g} for g in STATE_GROUPS}}
outputs = {}  # outputs at CHUNK, for the plots
snrs = {name: [] for name in runs}  # SNR of the difference for every chunk size in CHUNKS
for chunk in CHUNKS:
    for name, carry in runs.items():
        y = enhance(Stream(m, carry=carry), noisy, chunk=chunk)
        snrs[name].append(metrics.snr_of_difference(reference, y))
        if chunk == CHUNK:
            outputs[name] = y

k = CHUNKS.index(CHUNK)
at_chunk = {name: v[k] for name, v in snrs.items()}
rows = [{"state dropped at each boundary": name.removeprefix("drop "), f"SNR of diff (dB), chunk {CHUNK}": v}
        for name, v in sorted(at_chunk.items(), key=lambda kv: kv[1])]
rows.append({"state dropped at each boundary": "(none: carry everything)", f"SNR of diff (dB), chunk {CHUNK}": snr_exact})
print(metrics.metrics_table(rows, floatfmt=".1f"))

single = {name: v for name, v in at_chunk.items() if name.startswith("drop ")}
worst_single = min(single, key=single.get)
print(f"\nevery single group costs error: max {max(single.values()):.1f} dB < {EXACT_DB} dB")
print(f"naive {at_chunk['naive (nothing carried)']:.1f} dB < worst single cause ({worst_single}) {single[worst_single]:.1f} dB")
assert all(v < EXACT_DB for v in single.values())
assert at_chunk["naive (nothing carried)"] < min(single.values())

# %%
names = [r["state dropped at each boundary"] for r in rows]
values = np.minimum([r[f"SNR of diff (dB), chunk {CHUNK}"] for r in rows], metrics.SNR_CAP_DB)
fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
colors = ["tab:red" if nm.startswith("naive") else "tab:green" if nm.startswith("(none") else "tab:blue" for nm in names]
ax.barh(names, values, color=colors)
for i, v in enumerate(values):
    ax.text(v + 1, i, f"{v:.1f}", va="center", fontsize="small")
ax.axvline(EXACT_DB, color="0.4", ls="--", lw=1, label=f"exact ({EXACT_DB:g} dB)")
ax.set_xlabel("SNR of the difference vs offline (dB) — higher is closer")
ax.set_title(f"{MODEL} on {CLIP}: error caused by dropping one state group, chunk {CHUNK} hops "
             f"({CHUNK * 10} ms)")
ax.legend(loc="center right", fontsize="small")
ax.invert_yaxis()

# %% [markdown]
# Reading the bars (the numbers are in the table above; the ranking shifts a little from clip to clip, so the
# cell below checks each statement on this clip):
#
# - **every** group matters: dropping any single one of them leaves the output clearly short of exact;
# - the three biggest single costs come from the **deep-filter buffer**, the **lookahead** and the **STFT
#   overlap** — parts *around* the network that a host must keep even with a perfectly stateful ONNX graph;
# - the GRU states matter too: the DF-decoder GRU and the encoder GRU each cost more than the ERB-decoder GRUs;
# - the mildest are the ERB-decoder GRUs and the feature normalisation (its running mean decays with a 1 s time
#   constant and restarts from a sensible initial value).

# %%
ranked = sorted(single, key=single.get)  # worst first
print("worst three:", ranked[:3], " mildest two:", ranked[-2:])
assert set(ranked[:3]) == {"drop df_buffer", "drop lookahead", "drop stft"}
assert single["drop gru_df"] < single["drop gru_erb"] and single["drop gru_enc"] < single["drop gru_erb"]
assert set(ranked[-2:]) == {"drop gru_erb", "drop norm"}

# %% [markdown]
# ## 3 · Where in time each cause hurts
#
# One panel per dropped group, same axes: the per-hop SNR of the difference, with the chunk boundaries dotted.
# The heatmap after it folds each curve by position inside the chunk (median over speech hops), which makes the
# pattern easy to read:
#
# - the **STFT overlap**, the **lookahead** and the **DF buffer** do sharp, local damage: a few positions of every
#   chunk are hit hard while others are untouched (dropping only the DF buffer leaves some positions at round-off);
# - a dropped **encoder GRU** state or **normalisation** state spreads its error evenly over the whole chunk: the
#   state needs longer than one chunk to re-converge, so no position is clean.

# %%
fig, axes = plt.subplots(4, 2, figsize=(12, 11), sharex=True, sharey=True, layout="constrained")
for ax, g in zip(axes.ravel(), STATE_GROUPS):
    plot.plot_error_vs_time(reference, {f"drop {g}": outputs[f"drop {g}"]}, sr, chunk_hops=CHUNK, ax=ax,
                            title=f"drop {g} ({single[f'drop {g}']:.1f} dB)")
    ax.set_ylim(-10, 150)
    ax.get_legend().remove()  # one curve per panel: the title names it
fig.suptitle(f"{MODEL} on {CLIP}: per-hop error of each single cause, chunk {CHUNK} hops")

# %%
profiles = {g: fold_by_position(outputs[f"drop {g}"]) for g in STATE_GROUPS}
profiles["nothing (naive host)"] = naive_profile
fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
grid = np.array(list(profiles.values()))
im = ax.imshow(np.minimum(grid, 60), aspect="auto", cmap="viridis", vmin=0, vmax=60)
for (i, j), v in np.ndenumerate(grid):
    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize="x-small", color="w" if v < 40 else "k")
ax.set_yticks(range(len(profiles)), [f"carry {g}" if g.startswith("nothing") else f"drop {g}" for g in profiles])
ax.set_xticks(range(CHUNK), [str(p) for p in range(CHUNK)])
ax.set_xlabel(f"hop position inside the chunk (output aligned with input; chunk = {CHUNK} hops)")
fig.colorbar(im, ax=ax, label="median SNR of difference (dB, clipped at 60)")
ax.set_title(f"{MODEL} on {CLIP}: error by position in the chunk, speech hops")
spread = {g: float(np.ptp(p)) for g, p in profiles.items()}
print(metrics.metrics_table([{"dropped": g, "best position (dB)": profiles[g].max(),
                              "worst position (dB)": profiles[g].min(), "spread (dB)": spread[g]}
                             for g in profiles], floatfmt=".1f"))
assert all(spread[g] > 10.0 for g in ("stft", "lookahead", "df_buffer"))  # local damage
assert profiles["df_buffer"].max() >= EXACT_DB  # some positions untouched
assert spread["gru_enc"] < 8.0 and spread["norm"] < 8.0  # spread over the whole chunk
assert profiles["gru_enc"].max() < 30.0  # ...and no position is clean

# %% [markdown]
# ## 4 · How the error depends on the chunk size
#
# Bigger chunks mean fewer boundaries per second, so the error shrinks — but it never vanishes, and for the
# chunk sizes a realtime host actually uses (a few hops) it is large. Note the `lookahead` line: with chunks of at
# most `conv_lookahead` hops, *every* output frame is computed without its future frames.

# %%
fig = plot.plot_error_vs_chunk(CHUNKS, snrs, title=f"{MODEL} on {CLIP}, one state group dropped per line")
ax = fig.axes[0]
ax.set_ylim(-5, max(max(v) for v in snrs.values()) + 10)  # nothing here is exact: zoom in below the 200 dB line
ax.legend(loc="upper left", fontsize="x-small", ncol=3)
naive = snrs["naive (nothing carried)"]
print("naive host:", ", ".join(f"chunk {c}: {v:.1f} dB" for c, v in zip(CHUNKS, naive)))
print(f"largest chunk ({CHUNKS[-1]} hops) vs smallest ({CHUNKS[0]}): {naive[-1] - naive[0]:+.1f} dB")
assert naive[-1] > naive[0] + 5.0  # bigger chunks help...
assert max(max(v) for v in snrs.values()) < EXACT_DB  # ...but no chunk size makes a dropped state exact
small = [c for c in CHUNKS if c <= m.spec.conv_lookahead]
print("drop lookahead at chunks <= conv_lookahead:",
      {c: round(snrs["drop lookahead"][CHUNKS.index(c)], 2) for c in small})
assert all(snrs["drop lookahead"][CHUNKS.index(c)] < 1.0 for c in small)

# %% [markdown]
# At the largest chunk sizes the naive host is no longer strictly the worst: dropping the DF buffer alone can
# cost about as much as dropping everything. The errors do not simply add up — once one cause has pushed the
# output away from the reference, the others change it by less.
#
# ## Summary
#
# - A naive chunked host — each call a fresh file — is far from the offline output (about 6 dB SNR of the
#   difference at 70 ms chunks, printed above), and onnxruntime with upstream's stateless ONNX layout reproduces
#   the PyTorch emulation of it exactly.
# - The error repeats with the chunk period: some positions inside every chunk are much worse than others
#   (more than 10 dB apart).
# - Each of the six kinds of memory (eight state groups) costs error on its own; carrying all of them is exact
#   (round-off, ≥ 90 dB). Half of them (STFT overlap, normalisation, lookahead, DF buffer) live *outside* the
#   network, so no ONNX export alone can fix them: the host has to keep them.
# - Larger chunks reduce the error but never remove it.
#
# ## Where to go next
#
# - **02_stateful_export** — export ONNX graphs whose states are inputs and outputs, and a host that keeps the rest.
# - **03_compare_outputs** — stateless vs stateful side by side, including the GRU state trajectories.
