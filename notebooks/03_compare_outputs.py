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
# # 03 · Comparing the outputs side by side
#
# **Question: what do the stateless, `h0`, `gru` and fully stateful hosts actually produce, next to the offline
# reference — in the spectrum, in the model's own local-SNR estimate, and inside its GRUs?**
#
# **What you will learn**
#
# - how to lay out noisy / clean / offline / naive / stateless / h0 / gru / full spectrograms on **one** dB scale,
#   and difference spectrograms against offline **on that same scale** (with the call boundaries ticked in output
#   time, and a zoom), to see chunk-boundary artifacts — and to see that the `full` host's difference is below
#   the scale's floor;
# - how the model's local-SNR estimate (`lsnr`) drifts when state is dropped;
# - what the GRU hidden states do in a stateless host compared with a stateful one: heatmaps over time, state
#   norm, a 2-D PCA path (`Stream(..., probes=[names])` records them per hop);
# - a metrics table: SNR of the difference vs offline, and PESQ, STOI, SI-SDR vs the clean recording — where the
#   stateless and naive hosts turn out to be *worse than the noisy input*.

# %% tags=["parameters"]
import os

MODEL = "DeepFilterNet3"
FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: shorter clip, temp exports
CLIP = "vb_p232_028" if FAST else "vb_p232_013"
CHUNK = 7  # hops per host call (70 ms)
SHOWN = ["stateless", "h0", "gru", "full"]  # export variants compared
EXACT_DB = 90.0

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import dfnb
from dfnb import clips, listen, metrics, plot, plot_states
from dfnb.hosts.onnx import Host
from dfnb.layout import STATE_GROUPS
from dfnb.models import load_model
from dfnb.offline import enhance_offline
from dfnb.reuse import ensure_export
from dfnb.runtime import enhance
from dfnb.streaming import Stream

torch.set_num_threads(1)  # one hop at a time: a single thread is faster, and far faster on a busy machine
EXPORT_ROOT = Path(tempfile.gettempdir()) / "dfnb_exports" if FAST else Path(dfnb.__file__).resolve().parent.parent / "models"


# %% [markdown]
# ## 1 · The outputs
#
# Each variant's export runs through the onnxruntime host (`enhance(Host(folder), ...)`) in calls of `CHUNK` hops. The host
# always keeps the DSP state, the lookahead and the deep-filter buffer; the variants differ in which model states
# their graphs carry (notebook 02). For reference we add the **naive** host of notebook 01: the stateless export
# called as if every chunk were a separate file (`per_call_offline=True, reset_dsp=True`) — what a host that
# knows nothing about streaming does, and the choppiest of all.

# %%
m = load_model(MODEL)
noisy, clean, sr = clips.load_pair(CLIP)
ref = enhance_offline(m, noisy, sr, probes=True)
folders = {v: ensure_export(m, v, EXPORT_ROOT) for v in SHOWN}
hosts = {"naive": Host(folders["stateless"], per_call_offline=True, reset_dsp=True), **{v: Host(folders[v]) for v in SHOWN}}
outputs = {v: enhance(h, noisy, chunk=CHUNK) for v, h in hosts.items()}
NAMES = list(outputs)  # naive, stateless, h0, gru, full
# call boundaries in output time: the naive host emits each call at once, the others after the lookahead
ticks = {v: metrics.boundary_times(len(noisy), sr, chunk_hops=CHUNK, delay_samples=h.delay_samples)
         for v, h in hosts.items()}
snr = {v: metrics.snr_of_difference(ref.audio, outputs[v]) for v in NAMES}
print(f"{MODEL} on {CLIP}, chunk {CHUNK} hops — SNR of the difference vs offline:",
      ", ".join(f"{v} {snr[v]:.1f} dB" for v in NAMES))
assert snr["full"] >= EXACT_DB and max(snr[v] for v in NAMES if v != "full") < 30.0

# %% [markdown]
# Listen (all players at one gain, `normalize=False`, so louder is louder): the naive, `h0` and `full` hosts, and
# what each gets wrong (offline − host). The `full` residual is silent.

# %%
listen.players({"noisy": noisy, "offline": ref.audio, **{f"{v} host": outputs[v] for v in ("naive", "h0", "full")}},
               sr, residuals=[("offline", f"{v} host") for v in ("naive", "h0", "full")],
               title=f"{MODEL} on {CLIP}, calls of {CHUNK} hops")

# %% [markdown]
# ## 2 · Spectrograms on one dB scale
#
# Eight panels, one colour scale (top = loudest bin of all panels, 80 dB range). At this scale the `full` panel is
# indistinguishable from `offline`. The naive panel is striped with **vertical lines every 70 ms** — clicks at the
# chunk boundaries; the `h0` panel shows them too, fainter, and the stateless and `h0` panels let noise through in
# the pauses.

# %%
panels = {"noisy": noisy, "clean": clean, "offline (reference)": ref.audio,
          **{f"{v} (chunk {CHUNK})": outputs[v] for v in NAMES}}
fig = plot.plot_spectrograms(panels, sr, ncols=2, title=f"{MODEL} on {CLIP}")

# %% [markdown]
# ## 3 · Differences against offline — where the chunk-boundary artifacts are
#
# **This is the figure that shows the chunk-boundary artifacts.** Each panel is the spectrogram of
# `offline − variant` on the **same dB scale as the signals** (top = the loudest bin of all outputs, 80 dB range),
# so a bright difference is as loud as speech; cyan ticks mark each host's call boundaries in output time. In the
# **naive** panel the error is a comb of vertical stripes at the chunk period (every `CHUNK` hops, 70 ms) across the
# whole band; in the **stateless** and **h0** panels the error is blocky — it changes abruptly at the same 70 ms
# seams — and strongest where there is speech; `gru` is weaker but still segmented. The **full** panel is grey:
# its difference (float32 round-off, more than 100 dB below the signal, printed on the panel) is entirely below
# the scale's floor — not a broken output, which would look like the signal itself. The second figure zooms on
# half a second of speech, outputs next to their differences.

# %%
fig = plot.plot_differences(ref.audio, outputs, sr, reference_name="offline", boundaries=ticks,
                            title=f"{MODEL} on {CLIP}, chunk {CHUNK}: offline − each host")
zoom = {v: outputs[v] for v in ("naive", "h0", "full")}
fig = plot.plot_differences(ref.audio, zoom, sr, reference_name="offline", with_outputs=True, boundaries=ticks,
                            zoom=(1.0, 1.5), title="zoom on 0.5 s of speech")

# %% [markdown]
# The same in numbers: the per-hop SNR of the difference, call boundaries of the three-file hosts dotted (output
# time; the naive host's fall 20 ms earlier); the `full` curve stays at round-off everywhere. To check that the
# other errors follow the chunk period, fold each curve by the hop's position inside its call, in output time
# (`metrics.error_by_position`, median over speech hops, where the clean recording is within 30 dB of its loudest
# hop): a boundary artifact makes some positions consistently worse than others.

# %%
fig = plot.plot_error_vs_time(ref.audio, outputs, sr, chunk_hops=CHUNK, delay_samples=hosts["full"].delay_samples,
                              exact_db=EXACT_DB, title=f"{MODEL} on {CLIP}")
hop = m.spec.hop_size
speech = metrics.speech_active_hops(clean, hop, threshold_db=-30.0)
folded = {v: metrics.error_by_position(ref.audio, outputs[v], CHUNK, hop=hop, delay_samples=hosts[v].delay_samples,
                                       mask=speech) for v in NAMES}
for v in NAMES:
    print(f"{v:9} median SNR by position: {np.round(folded[v], 1)}  spread {np.ptp(folded[v]):.1f} dB")
assert all(np.ptp(folded[v]) > 10.0 for v in ("naive", "stateless", "h0"))  # periodic with the chunk
assert folded["full"].min() > EXACT_DB and np.ptp(folded["full"]) < 5.0  # no position is hurt

# %% [markdown]
# ## 4 · Looking inside: the PyTorch stream with the same state as each host
#
# onnxruntime only gives us the graphs' outputs. To look at the GRUs' hidden states and the `lsnr` of every hop we
# rerun each variant with the PyTorch streaming step, carrying exactly what that host carries: the host-side
# groups (STFT overlap, normalisation, lookahead, DF buffer) plus the variant's model states. First we check that
# this emulation really reproduces the host's output.

# %%
HOST_KEEPS = {"stft", "norm", "lookahead", "df_buffer"}
CARRY = {"naive": set(), "stateless": HOST_KEEPS, "h0": HOST_KEEPS | {"gru_enc"},
         "gru": HOST_KEEPS | {"gru_enc", "gru_erb", "gru_df"}, "full": set(STATE_GROUPS)}
GRU_NAMES = ["enc_emb_gru", "erb_dec_emb_gru", "df_dec_df_gru"]
streams = {}
for v in NAMES:
    streams[v] = Stream(m, carry=CARRY[v], probes=GRU_NAMES)
    y = enhance(streams[v], noisy, chunk=CHUNK)
    agree = metrics.snr_of_difference(outputs[v], y)
    print(f"{v:9}: PyTorch emulation vs onnxruntime host {agree:6.1f} dB (vs offline: {snr[v]:.1f} dB)")
    assert agree > 30.0 and agree > min(snr[v], EXACT_DB) + 20.0

# %% [markdown]
# The emulations agree with the hosts far better than either agrees with the reference (for the non-exact
# variants the remaining difference is float round-off, amplified where the recurrent layers restart from zero).
#
# ### The local-SNR estimate
#
# Offline, the encoder's `lsnr` follows speech and pauses (notebook 00). The stateless host's encoder restarts at
# every call and its `lsnr` is far off — mostly over-estimating the SNR in the pauses, which is why it lets noise
# through there. `h0` and `gru` carry the encoder's GRU, so their `lsnr` is much closer (and identical to each
# other: the decoders' states do not feed back into the encoder); the full host's trace *is* the offline trace
# (the offline curve is hidden under it).

# %%
lsnr = {"offline": ref.lsnr, **{v: streams[v].trace.lsnr for v in SHOWN}}
over = float(np.max(lsnr["stateless"] - ref.lsnr))
fig = plot.plot_lsnr(lsnr, hop / sr, title=f"{MODEL} on {CLIP}, chunk {CHUNK}")
lsnr_err = {v: metrics.lsnr_error(ref.lsnr, lsnr[v]) for v in SHOWN}
print("largest |lsnr - offline lsnr| (dB):", {v: round(e, 3) for v, e in lsnr_err.items()})
print(f"stateless over-estimates the lsnr by up to {over:.1f} dB")
assert lsnr_err["full"] < 0.01
assert lsnr_err["stateless"] > lsnr_err["h0"] > 1.0
assert lsnr_err["h0"] == lsnr_err["gru"]

# %% [markdown]
# ### GRU hidden states
#
# `stream.trace.states[name]` holds, per hop, the hidden state of each GRU block (we plot the top layer). A GRU
# has 256 units and the clip hundreds of hops — too dense to read whole — so the heatmaps show the first second
# and the 32 units that vary most (over both hosts), with the call starts dotted: time across, unit up, stateless
# (left) vs full (right) for each GRU. In the stateless host every call starts from a zero state, so its states
# are cut into 70 ms segments with a seam at every call start — plainest in the ERB decoder's GRU, whose units
# re-saturate from scratch in every call — while the full host's states evolve continuously.

# %%
gru_names = GRU_NAMES
traces = {v: {g: streams[v].trace.states[g][:, -1, 0] for g in gru_names} for v in SHOWN}
n_trace = len(traces["full"][gru_names[0]])
starts = [i for i in range(1, n_trace) if (i + m.spec.conv_lookahead) % CHUNK == 0]  # the trace starts after the warm-up
WINDOW = (0.0, min(1.0, n_trace * hop / sr))
fig, axes = plt.subplots(len(gru_names), 2, figsize=(13, 2.8 * len(gru_names)), sharex=True, layout="constrained")
for row, g in zip(axes, gru_names):
    units = plot_states.top_units(traces["stateless"][g], traces["full"][g], k=32)
    for ax, v in zip(row, ("stateless", "full")):
        plot.plot_hidden_heatmap(traces[v][g], hop / sr, ax=ax, units=units, window=WINDOW,
                                 boundaries=np.array(starts) * hop / sr, colorbar=False, title=f"{g}, {v}")
for ax in axes[:-1].ravel():
    ax.set_xlabel("")
fig.colorbar(axes[0, 0].images[0], ax=axes, label="activation", shrink=0.6)
fig.suptitle(f"{MODEL} on {CLIP}: GRU hidden states, first second, chunk {CHUNK} (dotted: call starts)");

# %% [markdown]
# The full host's hidden states are the offline model's: the offline probes (`enhance_offline(..., probes=True).gru`)
# record each GRU block's *output*, which for a block without an output projection (here the DF decoder's GRU) is
# exactly the hidden-state sequence we traced. For blocks that project their output (the encoder's and the ERB
# decoder's), the two differ by that linear layer, so we compare only where the shapes agree.

# %%
offline_gru = {k.replace(".", "_"): v for k, v in ref.gru.items()}  # 'df_dec.df_gru' -> 'df_dec_df_gru'
compared = 0
for g in gru_names:
    off, mine = offline_gru.get(g), traces["full"][g]
    if off is not None and off.shape == mine.shape:
        d = float(np.abs(off - mine).max())
        print(f"{g}: offline probe vs full stream, max |diff| = {d:.2e}")
        assert d < 1e-4
        compared += 1
    else:
        print(f"{g}: offline probe is the block output {None if off is None else off.shape}, "
              f"the trace is the hidden state {mine.shape}: not compared")
assert compared >= 1

# %% [markdown]
# Norm and PCA path of each GRU state. The norm of the stateless host's state drops at every call start and climbs
# back (a sawtooth with the chunk period, clearest in the ERB decoder); `h0` follows `full` for the encoder GRU
# it carries (the legend says when one line hides another) and the stateless sawtooth for the decoder GRUs it does
# not. In the PCA plane (fitted on both traces together; first second only, dots = the state at each call start)
# the stateless dots sit in one cluster — every call restarts from the same state, one hop after zero — while the
# full host's dots are spread along its path.

# %%
fig, axes = plt.subplots(1, len(gru_names), figsize=(5.5 * len(gru_names), 3.6), layout="constrained")
for ax, g in zip(np.ravel(axes), gru_names):
    plot.plot_state_norm({v: traces[v][g] for v in ("stateless", "h0", "full")}, hop / sr, ax=ax, title=g,
                         window=WINDOW, boundaries=np.array(starts) * hop / sr)
fig.suptitle(f"{MODEL} on {CLIP}: hidden-state norm, first second, chunk {CHUNK} (dotted: call starts)")
last = int(WINDOW[1] * sr / hop)
fig, axes = plt.subplots(1, len(gru_names), figsize=(5 * len(gru_names), 4.6), layout="constrained")
for ax, g in zip(np.ravel(axes), gru_names):
    plot.plot_pca_path({v: traces[v][g][:last] for v in ("stateless", "full")}, ax=ax, title=g,
                       marks=[i for i in starts if i < last])
fig.suptitle(f"{MODEL} on {CLIP}: hidden-state paths in 2-D PCA, first second, chunk {CHUNK}");

# %%
def at_chunk_starts(states):
    """(norm at the first hop of each chunk / mean norm elsewhere, mean distance of those states from the first one)."""
    norm = np.linalg.norm(states, axis=1)
    pos = (np.arange(len(norm)) + m.spec.conv_lookahead) % CHUNK  # the trace starts after the lookahead warm-up
    starts = (pos == 0) & (np.arange(len(norm)) > 0)
    return float(norm[starts].mean() / norm[pos != 0].mean()), float(np.linalg.norm(states[starts] - states[0], axis=1).mean())


stats = {(v, g): at_chunk_starts(traces[v][g]) for v in ("stateless", "full") for g in gru_names}
for g in gru_names:
    (rs, ds), (rf, df) = stats["stateless", g], stats["full", g]
    print(f"{g:16} norm at chunk start / elsewhere: stateless {rs:.2f}, full {rf:.2f};  "
          f"distance of chunk-start states from the first state: stateless {ds:.2f}, full {df:.2f}")
assert all(stats["stateless", g][0] < stats["full", g][0] for g in gru_names)  # the norm drops at chunk starts
assert all(0.8 < stats["full", g][0] < 1.25 for g in gru_names)  # ...only in the stateless host
assert all(stats["stateless", g][1] < 0.5 * stats["full", g][1] for g in gru_names)  # it snaps back to the start

# %% [markdown]
# ## 5 · Metrics
#
# SNR of the difference vs offline says how far each host is from the reference; PESQ, STOI and SI-SDR against the
# clean recording say how much that matters for quality. The full host keeps all of the offline model's quality.
# Two results stand out (checked below):
#
# - the **stateless and naive hosts are worse than doing nothing**: their PESQ and STOI are *below the noisy
#   input's* — streaming the released models chunk by chunk does not just lose the enhancement, it damages speech;
# - **`h0` is no closer to the reference than `stateless` by the SNR of the difference** (within a couple of dB)
#   **but clearly better by PESQ**: the SNR of the difference counts every error alike, while PESQ rewards the
#   smoother, better-denoised output that the carried encoder state gives. "Closer" and "better" are not the
#   same question; only an exact host answers both.

# %%
rows = []
for name, y in [("noisy", noisy), ("offline", ref.audio), *[(v, outputs[v]) for v in NAMES]]:
    rows.append({"output": name, "SNR diff vs offline (dB)": metrics.snr_of_difference(ref.audio, y),
                 "PESQ": metrics.pesq_wb(clean, y, sr), "STOI": metrics.stoi(clean, y, sr),
                 "SI-SDR (dB)": metrics.si_sdr(clean, y)})
print(f"{MODEL} on {CLIP}, chunk {CHUNK} hops")
print(metrics.metrics_table(rows))
by = {r["output"]: r for r in rows}
assert abs(by["full"]["PESQ"] - by["offline"]["PESQ"]) < 0.01
assert by["stateless"]["SI-SDR (dB)"] < by["offline"]["SI-SDR (dB)"] - 1.0
assert by["h0"]["PESQ"] < by["offline"]["PESQ"] - 0.3
worse = {v: (by[v]["PESQ"] - by["noisy"]["PESQ"], by[v]["STOI"] - by["noisy"]["STOI"]) for v in ("naive", "stateless")}
print("PESQ / STOI change vs the noisy input:", {v: tuple(round(d, 3) for d in w) for v, w in worse.items()})
assert all(d_pesq < 0 and d_stoi < 0 for d_pesq, d_stoi in worse.values())  # worse than doing nothing
d_snr = by["h0"]["SNR diff vs offline (dB)"] - by["stateless"]["SNR diff vs offline (dB)"]
d_pesq = by["h0"]["PESQ"] - by["stateless"]["PESQ"]
print(f"h0 - stateless: SNR of the difference {d_snr:+.2f} dB, PESQ {d_pesq:+.2f}")
assert abs(d_snr) < 2.0 and d_pesq > 0.25  # no closer, but better

# %% [markdown]
# ## Summary
#
# - The **difference spectrograms** (section 3) are where chunk-boundary artifacts show: a comb of vertical
#   stripes at the chunk period for the naive host, blocky 70 ms segments for stateless and `h0`, weaker in `gru`,
#   nothing but round-off in `full`. Folded by position in the chunk, the naive, stateless and `h0` errors vary
#   by more than 10 dB; the full host's by less than 5 dB, all above 90 dB.
# - The model's `lsnr` and its GRU states show the cause: a stateless host restarts the GRUs from zero at every
#   call (the state norm drops at each chunk start and the state snaps back to where it started), while the full
#   host follows the offline trajectory exactly.
# - The full host has the offline model's quality (same PESQ). The stateless and naive hosts score *below the
#   noisy input* on PESQ and STOI; `h0` is no closer to the reference than `stateless` by the SNR of the
#   difference, but better by PESQ.
#
# ## Where to go next
#
# - **04_low_latency_models** — the same comparison for the zero-lookahead models.
# - **05_realtime** — what each variant costs per hop.
