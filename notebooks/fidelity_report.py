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
# # Fidelity report: your clip through your folder
#
# **Question: run call by call the way a realtime host runs it, does this exported folder give the same audio as
# the PyTorch model it was exported from — on this clip, at every chunk size — and if not, where, and by how much?**
#
# **What you will learn**
#
# - the verdict against 90 dB of SNR of the difference (float32 round-off is about 130 dB; below about 30 dB a
#   difference is audible), and the error at every chunk size tried;
# - where the difference is: in time (per hop, with the chunk boundaries in output time), by position inside a
#   call, and in frequency (the difference spectrogram on the signal's own dB scale, whole clip and zoomed);
# - whether the model's own local-SNR estimate (`lsnr`) drifts away from the reference;
# - what it sounds like: reference, folder output and their residual, all at one gain.
#
# Made by `dfnb report --clip <wav or clip name> --folder <export>` (this notebook, parameterised with
# papermill). The reference is `dfnb.offline.enhance_offline` with the folder's weights; the folder runs in
# `dfnb.hosts.open_host(folder, host="onnx")` through `dfnb.runtime.enhance`. Without a folder, the PyTorch
# streaming step (`dfnb.streaming.Stream`) is checked instead. Concepts: notebooks 00–03.

# %% tags=["parameters"]
import os

CLIP = None  # a clip name (data/manifest.json) or the path of any audio file; None: the notebooks' clip
FOLDER = None  # an exported folder; None: check the PyTorch streaming step instead
MODEL = None  # the reference model; None: the folder's manifest says (else DeepFilterNet3)
CHUNK = 7  # hops per call for the detailed figures (must be one of the swept chunk sizes)
DOWNMIX = False  # average the channels of a multichannel file (else it is refused)
MAX_SECONDS = None  # process only the beginning of long clips; None: 10 s in FAST mode, 60 s otherwise
FAST = os.environ.get("DFNB_FAST") == "1"  # `dfnb report --fast`, `make test`: fewer chunk sizes, shorter audio
EXACT_DB = 90.0

# %%
import numpy as np
import torch
from IPython.display import Markdown, display

from dfnb import fidelity, listen, metrics, plot
from dfnb.hosts import open_host
from dfnb.models import load_model
from dfnb.offline import enhance_offline
from dfnb.streaming import Stream

torch.set_num_threads(1)  # one hop at a time: a single thread is faster
CHUNKS = sorted({1, CHUNK, 32} if FAST else {1, 2, 4, CHUNK, 16, 32})
clip_arg = CLIP or ("vb_p232_028" if FAST else "vb_p232_013")
clip = fidelity.load_user_clip(clip_arg, downmix=DOWNMIX, max_seconds=MAX_SECONDS or (10.0 if FAST else 60.0))
model_name, model_why = fidelity.folder_model(FOLDER, MODEL)
m = load_model(model_name)
ref = enhance_offline(m, clip.audio, clip.sr, probes=True)
if FOLDER is None:
    tested, make = "PyTorch streaming step", lambda: Stream(m, probes=True)
else:
    tested, make = fidelity.display_name(FOLDER), lambda: open_host(FOLDER, host="onnx", probes=True)
snrs, y, runtime = fidelity.sweep(make, clip.audio, ref.audio, CHUNKS, keep=CHUNK)
exact, sentence = fidelity.verdict(snrs, EXACT_DB)
sr, hop = clip.sr, m.spec.hop_size
delay = runtime.delay_samples
ticks = metrics.boundary_times(len(y), sr, chunk_hops=CHUNK, hop=hop, delay_samples=delay)
lsnr_test = runtime.trace.lsnr[: len(ref.lsnr)]
lsnr_drift = metrics.lsnr_error(ref.lsnr[: len(lsnr_test)], lsnr_test)
variant = getattr(runtime, "variant", "PyTorch step")

# %% [markdown]
# ## Headline

# %%
rows = [("clip", f"{clip.name} ({len(clip.audio) / sr:.2f} s{'; ' + '; '.join(clip.notes) if clip.notes else ''})"),
        ("streamed by", f"{tested} — {runtime.label}, variant {variant}, delay {1000 * delay / sr:.0f} ms"),
        ("reference", f"{model_name} offline PyTorch, full sequence ({model_why})"),
        ("verdict", f"**{sentence}**"),
        *[(f"SNR of difference, chunk {c} ({10 * c} ms calls)", f"{v:.1f} dB")
          for c, v in snrs.items()],
        ("largest lsnr drift", f"{lsnr_drift:.3g} dB"),
        ("max abs sample error, chunk " + str(CHUNK), f"{metrics.max_abs_error(ref.audio, y):.3g}")]
display(Markdown("| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)))
summary = {"clip": clip.name, "tested": tested, "variant": variant, "model": model_name, "exact": exact,
           "worst_db": min(snrs.values()), "snr_db": {str(c): v for c, v in snrs.items()}, "lsnr_drift_db": lsnr_drift}
display({"application/vnd.dfnb.summary+json": summary}, raw=True)  # read by `dfnb report` for its index page
assert exact == (min(snrs.values()) >= EXACT_DB)

# %% [markdown]
# ## 1 · Error against chunk size
#
# One line: the SNR of the difference between the streamed output and the reference, for calls of 1 hop
# (10 ms) up to 32 hops. An exact folder sits at round-off (≈ 130 dB) at every size; a folder that loses state
# at each call is worst at small chunks, where boundaries are most frequent.

# %%
fig = plot.plot_error_vs_chunk(list(snrs), {tested: list(snrs.values())}, exact_db=EXACT_DB,
                               title=f"{clip.name}: {tested} vs {model_name} offline")

# %% [markdown]
# ## 2 · Where in time: per hop, and by position inside a call
#
# The per-hop SNR of the difference at chunk `CHUNK`, with every call boundary dotted in *output* time (the input
# boundary minus the runtime's delay, where a lost state first shows). Then the same error folded by the hop's
# position inside its call: a folder that loses state at every call is much worse at some positions.

# %%
fig = plot.plot_error_vs_time(ref.audio, {tested: y}, sr, chunk_hops=CHUNK, delay_samples=delay, exact_db=EXACT_DB,
                              title=f"{clip.name}")
speech = metrics.speech_active_hops(clip.clean if clip.clean is not None else ref.audio, hop, threshold_db=-30.0)
profile = metrics.error_by_position(ref.audio, y, CHUNK, hop=hop, delay_samples=delay, mask=speech)
fig, ax = plot.axes_for(figsize=(6.5, 3.0))
ax.bar(range(CHUNK), np.minimum(np.nan_to_num(profile, nan=0.0), 150.0), color="tab:blue")
ax.axhline(EXACT_DB, color="0.45", ls="--", lw=1, label=f"exact (≥ {EXACT_DB:g} dB)")
ax.set_xticks(range(CHUNK))
ax.set_xlabel(f"position of the hop inside its call (0 = first output hop of a call; chunk {CHUNK})")
ax.set_ylabel("median SNR of diff (dB)")
ax.set_title(f"error by position in the call, loud hops — spread {np.nanmax(profile) - np.nanmin(profile):.1f} dB")
ax.legend(fontsize="x-small", loc="lower right");

# %% [markdown]
# ## 3 · Where in frequency: the difference on the signal's own scale
#
# Left, each signal; right, `reference − output`, on the **same** dB scale (top = the loudest bin, 80 dB range),
# so a difference that is dark is far below the signal, and one that is entirely below the scale's floor is drawn
# grey with a note (an exact folder's panel is grey: nothing to see at this scale — not a broken output). Cyan
# ticks: call boundaries in output time. The second figure zooms on the half second with the largest error.

# %%
fig = plot.plot_differences(ref.audio, {tested: y}, sr, reference_name=f"{model_name} offline", with_outputs=True,
                            boundaries=ticks, title=f"{clip.name}, chunk {CHUNK}")
err = metrics.error_per_hop(ref.audio, y, hop)
loud = np.where(speech[: len(err)], err[: len(speech)], np.nan)
centre = (int(np.nanargmin(loud)) if np.isfinite(loud).any() else len(err) // 2) * hop / sr
t0 = float(np.clip(centre - 0.25, 0.0, max(0.0, len(y) / sr - 0.5)))
fig = plot.plot_differences(ref.audio, {tested: y}, sr, reference_name=f"{model_name} offline", with_outputs=True,
                            boundaries=ticks, zoom=(t0, t0 + 0.5), title=f"zoom {t0:.2f}–{t0 + 0.5:.2f} s")

# %% [markdown]
# The same difference **magnified**: on its own scale (top = its own loudest bin), to show its structure —
# round-off noise spread everywhere, or stripes at the call boundaries. Mind the colour bar: this is not the
# signal's scale.

# %%
diff_top = float(plot.spectrogram_db(ref.audio - y, sr).max())
signal_top = float(plot.spectrogram_db(ref.audio, sr).max())
fig = plot.plot_difference_spectrogram(ref.audio, y, sr, vmin=diff_top - 80, vmax=diff_top, boundaries=ticks,
                                       title=f"magnified: its own scale, top {diff_top:.0f} dB (the signal's: {signal_top:.0f} dB)")

# %% [markdown]
# ## 4 · The model's local-SNR estimate
#
# The encoder's `lsnr` output, per frame, in the streamed run and in the reference. A folder that carries every
# state reproduces it to round-off; a lost encoder state shows here first.

# %%
fig = plot.plot_lsnr_drift(ref.lsnr[: len(lsnr_test)], lsnr_test, hop / sr, names=("reference", tested),
                           title=f"{clip.name}, chunk {CHUNK}")

# %% [markdown]
# ## 5 · Listen
#
# The noisy input, the reference, the folder's output and their residual (reference − output), all at one gain
# (`normalize=False`: a quiet residual sounds quiet). An exact folder's residual is silent, even boosted by 40 dB.

# %%
listen.players({"noisy input": clip.audio, "reference": ref.audio, tested: y}, sr, residuals=[("reference", tested)],
               boost_db=40, title=f"{clip.name}, chunk {CHUNK}")

# %% [markdown]
# ## Summary
#
# The verdict and the numbers are in the headline table; the figures show where any difference lives. A folder
# whose worst SNR of the difference is ≥ 90 dB streams exactly. If it is not exact: a difference that follows the
# call boundaries (section 2) means the folder or its host drops state between calls — notebook 01 measures what
# each lost state costs and notebook 02 shows how to export and run a folder that carries all of it.
#
# ## Where to go next
#
# - **02_stateful_export** — the "verify your export" checklist, and a host loop written out by hand.
# - **01_why_stateless_diverges** — what each kind of lost memory costs.
