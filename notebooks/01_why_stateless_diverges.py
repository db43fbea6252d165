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
# # 01 · Why a chunked host diverges from offline
#
# **Question: a realtime host feeds DeepFilterNet's released ONNX models a few hops at a time and the output
# sounds choppy, although the same model over the whole file sounds clean. What exactly does the host lose at
# each chunk boundary, and how much does each loss cost?**
#
# **What you will learn**
#
# - why chunking changes the output at all, on a toy network small enough to read (a causal convolution and a
#   GRU, ten lines): a call that starts from zero forgets what the previous call left;
# - how to reproduce the choppy output of a naive chunked host, both with the PyTorch streaming step
#   (`enhance(Stream(m, carry=()), x, chunk=N)`) and with onnxruntime on a stateless export
#   (`enhance(Host(folder, per_call_offline=True, reset_dsp=True), x, chunk=N)`) — they agree;
# - where the error lives: in time, right after each chunk boundary, counted in *output* time (the boundary minus
#   the host's delay: `plot_error_vs_time(..., chunk_hops=N, delay_samples=host.delay_samples)`);
# - the eight state groups the offline model keeps and a stateless call throws away (notebook 00's diagram) —
#   STFT overlap, feature normalisation, the three GRU states (encoder, ERB decoder, DF decoder), convolution
#   context, lookahead, deep-filter buffer — and the error each one *alone* causes
#   (`Stream(m, carry=set(STATE_GROUPS) - {group})`);
# - how the error depends on the chunk size.
#
# The yardstick everywhere is the **SNR of the difference** against the offline output:
# 10·log10(Σ ref² / Σ (ref − test)²). Identical outputs give +∞; float32 round-off gives about 130 dB; anything
# below ~30 dB is audible as an artifact. (Terms — host, hop, call, state group, naive host: notebook 00's glossary.)

# %% tags=["parameters"]
import os

MODEL = "DeepFilterNet3"
FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: shorter clip, fewer chunk sizes
CLIP = "vb_p232_028" if FAST else "vb_p232_013"
CHUNK = 7  # hops per host call (70 ms): the chunk size used for the cause-by-cause breakdown
CHUNKS = [2, 7] if FAST else [1, 2, 4, 7, 16, 32]  # chunk sizes for the error-vs-chunk sweep
SECONDS = 1.5 if FAST else None  # use only the first SECONDS of the clip (None: all of it)
EXACT_DB = 90.0  # SNR of the difference above which we call two outputs equal (float32 round-off ≈ 130 dB)

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from dfnb import clips, listen, metrics, plot
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
if SECONDS is not None:
    noisy, clean = noisy[: int(SECONDS * sr)], clean[: int(SECONDS * sr)]
reference = enhance_offline(m, noisy, sr).audio  # the full-sequence output everything is compared with
print(f"{MODEL} on {CLIP}: {len(noisy) / sr:.2f} s, {len(noisy) // m.spec.hop_size} hops")

# %% [markdown]
# ## 0 · A toy first: a causal convolution and a GRU, whole vs chunked
#
# Two equations hold all the memory a recurrent network has:
#
# - a **causal convolution** with a time kernel of $K$ frames, $y_t = b + \sum_{k=0}^{K-1} W_k\, x_{t-k}$, needs the
#   $K - 1$ previous inputs to compute frame $t$;
# - a **GRU** carries a hidden state from frame to frame:
#   $z_t = \sigma(W_z x_t + U_z h_{t-1} + b_z)$, $r_t = \sigma(W_r x_t + U_r h_{t-1} + b_r)$,
#   $n_t = \tanh(W_n x_t + b_n + r_t \odot (U_n h_{t-1} + b_{hn}))$, $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$.
#
# Run one tiny conv + GRU over 100 frames at once, then in calls of 10 frames — once starting every call from
# zero (what a stateless ONNX export does: zero padding, $h = 0$), once carrying the conv's last $K - 1$ inputs and
# the GRU's $h$ from call to call.

# %%
torch.manual_seed(0)
conv, gru = torch.nn.Conv1d(1, 8, kernel_size=3), torch.nn.GRU(8, 8, batch_first=True)


@torch.no_grad()
def toy(x, past=None, h=None):
    """One call: frames x [T] -> (output [T], the conv's last K-1 = 2 inputs, the GRU state)."""
    xp = torch.cat([torch.zeros(2) if past is None else past, x])  # the 2 previous inputs, then this call
    y, h = gru(conv(xp[None, None]).transpose(1, 2), h)  # conv: [1, 8, T] -> GRU over T frames
    return y[0, :, 0], xp[-2:], h


x = torch.randn(100)
whole = toy(x)[0]
stateless = torch.cat([toy(c)[0] for c in x.split(10)])
past = h = None
carried = []
for c in x.split(10):
    y, past, h = toy(c, past, h)
    carried.append(y)
carried = torch.cat(carried)
err_stateless, err_carried = (whole - stateless).abs().numpy(), (whole - carried).abs().numpy()
after = err_stateless.reshape(10, 10)
print(f"max |whole - chunked|: starting every call from zero {err_stateless.max():.3f}, "
      f"carrying conv context + GRU state {err_carried.max():.1e}")
print(f"stateless error, mean over calls, by frame inside the call: {np.round(after.mean(0), 3)}")
assert err_stateless.max() > 0.05 and err_carried.max() < 1e-5
assert after[1:, 0].mean() > 3 * after[1:, 5:].mean()  # the damage is right after each boundary, then fades

# %%
fig, ax = plot.axes_for(figsize=(8, 3))
ax.semilogy(np.maximum(err_stateless, 1e-9), label="every call starts from zero")
ax.semilogy(np.maximum(err_carried, 1e-9), ls="--", label="conv context + GRU state carried (≤ 1e-9 drawn at 1e-9)")
for b in range(10, 100, 10):
    ax.axvline(b - 0.5, color="0.6", ls=":", lw=0.8)
ax.set_xlabel("frame (dotted: call boundaries, 10 frames per call)")
ax.set_ylabel("|whole − chunked|")
ax.set_title("toy causal conv + GRU: chunked vs whole")
ax.legend(fontsize="x-small", loc="center right");

# %% [markdown]
# Starting a call from zero hurts most right after the boundary — the conv sees zeros instead of the previous
# inputs and the GRU restarts from $h = 0$ — and the error fades as the GRU's state re-converges; carrying both
# makes chunked equal whole (to float round-off). DeepFilterNet has eight such pieces of memory, not two.
#
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
naive_host = Host(stateless_dir, per_call_offline=True, reset_dsp=True)
naive_onnx = enhance(naive_host, noisy, chunk=CHUNK)
exact_stream = Stream(m)  # carry everything: the exact stream
exact_torch = enhance(exact_stream, noisy, chunk=CHUNK)

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
# rate (every 70 ms) and lets noise through at the start of every chunk. The residual (offline − naive) is what
# the naive host gets wrong; all players share one gain (`normalize=False`), so its loudness is real.

# %%
listen.players({"noisy": noisy, "offline": reference, "naive host": naive_onnx}, sr,
               residuals=[("offline", "naive host")], title=f"{MODEL} on {CLIP}, chunk {CHUNK} hops")

# %% [markdown]
# ### What it looks like
#
# Left, each output; right, its difference from the offline output — **on the same dB scale** as the signal, so
# a dark difference is far below the signal (the panel says how far). The naive host's error shows up as
# **vertical stripes, one per chunk boundary** (every 70 ms), strongest on the speech; the cyan ticks are the
# boundaries in *output* time: call $k$ starts at input sample $k \cdot$ `CHUNK` $\cdot H$, and its output, once the
# host's delay $d$ is removed, starts at $k \cdot$ `CHUNK` $\cdot H - d$ (here $d$ = `naive_host.delay_samples`: the
# naive host emits each call at once, so only the STFT overlap delays it). The exact stream's difference is entirely below the scale's floor
# (grey). The second figure zooms on half a second of speech.

# %%
ticks = {"naive host": metrics.boundary_times(len(noisy), sr, chunk_hops=CHUNK, delay_samples=naive_host.delay_samples),
         "carry every state": metrics.boundary_times(len(noisy), sr, chunk_hops=CHUNK,
                                                     delay_samples=exact_stream.delay_samples)}
tests = {"naive host": naive_onnx, "carry every state": exact_torch}
fig = plot.plot_differences(reference, tests, sr, reference_name="offline", with_outputs=True, boundaries=ticks,
                            title=f"{MODEL} on {CLIP}, chunk {CHUNK} hops")
fig = plot.plot_differences(reference, tests, sr, reference_name="offline", with_outputs=True, boundaries=ticks,
                            zoom=(1.0, 1.5), title="zoom on 0.5 s of speech")

# %% [markdown]
# The same in numbers: the per-hop SNR of the difference (top), zoomed on the same half second (bottom). The
# dotted lines are the naive host's call boundaries in output time; the exact stream sits at round-off.

# %%
fig, (ax_all, ax_zoom) = plt.subplots(2, 1, figsize=(10, 6.5), layout="constrained")
for ax, title in ((ax_all, f"{MODEL} on {CLIP}"), (ax_zoom, "zoom on 0.5 s of speech")):
    plot.plot_error_vs_time(reference, tests, sr, chunk_hops=CHUNK, delay_samples=naive_host.delay_samples, ax=ax,
                            title=title, exact_db=EXACT_DB)
ax_zoom.set_xlim(1.0, 1.5);

# %% [markdown]
# Is the error really tied to the chunk boundaries? Fold the per-hop error by the hop's position inside its call,
# counted in output time (position 0 = the first output hop of a call; `metrics.error_by_position`), over speech
# hops only so that silent hops do not dominate: if the boundaries are to blame, some positions are consistently
# much worse than others.

# %%
hop = m.spec.hop_size
speech = metrics.speech_active_hops(clean, hop, threshold_db=-30.0)


def fold_by_position(test, delay):
    """Median per-hop SNR of the difference (speech hops) at each position 0..CHUNK-1 inside a call."""
    return metrics.error_by_position(reference, test, CHUNK, hop=hop, delay_samples=delay, mask=speech)


naive_profile = fold_by_position(naive_onnx, naive_host.delay_samples)
print("naive host, median per-hop SNR by position in the call (dB):", np.round(naive_profile, 1))
print(f"best position {naive_profile.max():.1f} dB, worst {naive_profile.min():.1f} dB, "
      f"spread {np.ptp(naive_profile):.1f} dB")
assert np.ptp(naive_profile) > 10.0

# %% [markdown]
# ## 2 · Eight state groups, one at a time
#
# The offline model, run over the whole file, carries information from one frame to the next in the eight state
# groups of `dfnb.layout.STATE_GROUPS` (notebook 00's diagram; six kinds of memory, with the GRU state split per
# sub-network):
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
delays = {}  # each stream's delay: without the lookahead group, a stream emits every call at once
snrs = {name: [] for name in runs}  # SNR of the difference for every chunk size in CHUNKS
for chunk in CHUNKS:
    for name, carry in runs.items():
        stream = Stream(m, carry=carry)
        delays[name] = stream.delay_samples
        y = enhance(stream, noisy, chunk=chunk)
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
ax.invert_yaxis();

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
# One panel per dropped group, same axes: the per-hop SNR of the difference, with the call boundaries dotted in
# output time (each stream's own delay). The heatmap after it folds each curve by position inside the call (median
# over speech hops, position 0 = first output hop of a call), which makes the pattern easy to read:
#
# - the **STFT overlap**, the **lookahead** and the **DF buffer** do sharp, local damage: a few positions of every
#   chunk are hit hard while others are untouched (dropping only the DF buffer leaves some positions at round-off);
# - a dropped **encoder GRU** state or **normalisation** state spreads its error evenly over the whole chunk: the
#   state needs longer than one chunk to re-converge, so no position is clean.

# %%
fig, axes = plt.subplots(4, 2, figsize=(12, 11), sharex=True, sharey=True, layout="constrained")
for ax, g in zip(axes.ravel(), STATE_GROUPS):
    plot.plot_error_vs_time(reference, {f"drop {g}": outputs[f"drop {g}"]}, sr, chunk_hops=CHUNK,
                            delay_samples=delays[f"drop {g}"], ax=ax, title=f"drop {g} ({single[f'drop {g}']:.1f} dB)",
                            ymax=150)
    ax.get_legend().remove()  # one curve per panel: the title names it
    ax.set_title(ax.get_title().split(" — ")[0])
for ax in axes[:-1].ravel():
    ax.set_xlabel("")
for ax in axes[:, 1]:
    ax.set_ylabel("")
fig.suptitle(f"{MODEL} on {CLIP}: per-hop SNR of the difference when one group is dropped at every call "
             f"(chunk {CHUNK} hops; dotted: call boundaries in output time)");

# %%
profiles = {g: fold_by_position(outputs[f"drop {g}"], delays[f"drop {g}"]) for g in STATE_GROUPS}
profiles["nothing (naive host)"] = naive_profile
fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
grid = np.array(list(profiles.values()))
im = ax.imshow(np.minimum(grid, 60), aspect="auto", cmap="viridis", vmin=0, vmax=60)
for (i, j), v in np.ndenumerate(grid):
    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize="x-small", color="w" if v < 40 else "k")
ax.set_yticks(range(len(profiles)), [f"carry {g}" if g.startswith("nothing") else f"drop {g}" for g in profiles])
ax.set_xticks(range(CHUNK), [str(p) for p in range(CHUNK)])
ax.set_xlabel(f"hop position inside the call, output time (0 = first output hop of a call; chunk = {CHUNK} hops)")
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
fig = plot.plot_error_vs_chunk(CHUNKS, snrs, title=f"{MODEL} on {CLIP}: naive, and one state group dropped per line")
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
# - A toy conv + GRU shows the mechanism: a call that starts from zero is wrong right after the boundary, and
#   carrying the conv's context and the GRU's state makes chunked equal whole.
# - Each of the eight state groups (six kinds of memory) costs error on its own; carrying all of them is exact
#   (round-off, ≥ 90 dB). Half of them (STFT overlap, normalisation, lookahead, DF buffer) live *outside* the
#   network, so no ONNX export alone can fix them: the host has to keep them.
# - Larger chunks reduce the error but never remove it.
#
# ## Where to go next
#
# - **02_stateful_export** — export ONNX graphs whose states are inputs and outputs, and a host that keeps the rest.
# - **03_compare_outputs** — stateless vs stateful side by side, including the GRU state trajectories.
