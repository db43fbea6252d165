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
# # 00 · A tour of DeepFilterNet
#
# **Question: what does DeepFilterNet do to a noisy recording, where do the weights this kit uses come from, and
# what does the full-sequence PyTorch reference sound and look like?**
#
# Every later notebook compares a streamed output against this reference, so it is worth meeting it first.
#
# **What you will learn**
#
# - how DeepFilterNet works at 48 kHz: 10 ms hops, 32 ERB-band gains for the whole spectrum plus a complex
#   *deep filter* over the lowest bins, and a few frames of *lookahead*, all read from the model's `config.ini`
#   (`dfnb.models.ModelSpec`);
# - where the weights come from: the official ONNX release, imported into PyTorch and pinned by sha256
#   (`load_model(...).source`);
# - how to run the offline reference (`dfnb.offline.enhance_offline`) on a real VoiceBank-DEMAND clip, listen
#   to it, and look at noisy / enhanced / clean spectrograms on one dB scale;
# - what the model's own local-SNR estimate (the `lsnr` probe) says about the clip.

# %% tags=["parameters"]
import os

MODEL = "DeepFilterNet3"
FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: a shorter clip, same story
CLIP = "vb_p232_028" if FAST else "vb_p232_013"  # VoiceBank-DEMAND test set, with its clean reference
SPEECH_THRESHOLD_DB = -30.0  # a hop is "speech" when the clean hop is within 30 dB of the loudest hop

# %%
import numpy as np
from IPython.display import Audio, display

from dfnb import clips, metrics, plot
from dfnb.models import KNOWN_SHA256, RELEASE_TARBALLS, load_model
from dfnb.offline import enhance_offline
from dfnb.layout import delay_frames, delay_samples

# %% [markdown]
# ## 1 · The model in numbers
#
# `load_model` returns the PyTorch network (deepfilternet's own `DfNet`) and its `ModelSpec`, read from the
# release's `config.ini` — nothing in this kit hard-codes a size. The numbers that matter for streaming:
#
# - **hop**: the model consumes and produces one STFT frame every `hop_size` samples (10 ms at 48 kHz), with a
#   window of `fft_size` samples (so consecutive frames overlap by half);
# - **ERB gains**: the encoder summarises each frame in `nb_erb` ERB bands; the ERB decoder outputs one gain per
#   band, applied to every bin of that band (coarse spectral envelope, whole band);
# - **deep filter**: for the lowest `nb_df` bins, a complex filter of `df_order` taps across neighbouring frames
#   replaces the gain, which can restore the periodic structure of voiced speech;
# - **lookahead**: the convolutions look `conv_lookahead` frames ahead and the deep filter `df_lookahead` frames
#   ahead, so a streaming host must lag its input by a few hops.

# %%
m = load_model(MODEL)
s = m.spec
df_top_hz = s.nb_df * s.sr / s.fft_size
rows = [
    {"quantity": "sample rate (Hz)", "value": s.sr},
    {"quantity": "hop_size (samples)", "value": s.hop_size},
    {"quantity": "hop (ms)", "value": 1000 * s.hop_size / s.sr},
    {"quantity": "fft_size (samples)", "value": s.fft_size},
    {"quantity": "nb_erb (gain bands)", "value": s.nb_erb},
    {"quantity": "nb_df (deep-filter bins)", "value": s.nb_df},
    {"quantity": "deep filter up to (Hz)", "value": df_top_hz},
    {"quantity": "df_order (filter taps)", "value": s.df_order},
    {"quantity": "conv_lookahead (frames)", "value": s.conv_lookahead},
    {"quantity": "df_lookahead (frames)", "value": s.df_lookahead},
    {"quantity": "streaming delay (frames)", "value": delay_frames(s)},
    {"quantity": "streaming delay (ms)", "value": 1000 * delay_samples(s) / s.sr},
]
print(f"{m.name} ({s.family})")
print(metrics.metrics_table(rows, floatfmt=".1f"))
print("ERB band widths (bins):", s.erb_widths)

hop_ms = 1000 * s.hop_size / s.sr
print(f"hop = {hop_ms:.1f} ms; ERB bands cover {sum(s.erb_widths)} of {s.freq_bins} bins")
assert hop_ms == 10.0
assert sum(s.erb_widths) == s.freq_bins and len(s.erb_widths) == s.nb_erb  # the gains cover the whole spectrum
assert 0 < s.nb_df < s.freq_bins  # the deep filter only touches the low bins

# %% [markdown]
# The streaming delay is the lookahead (in frames) plus the STFT's own overlap (`fft_size - hop_size`
# samples). For DeepFilterNet3 that is 2 frames + 480 samples = 30 ms; the `_ll` ("low latency") models in
# notebook 04 have no lookahead and only the 10 ms of STFT overlap.

# %%
expected = delay_frames(s) * s.hop_size + s.fft_size - s.hop_size
print(f"delay_samples = {delay_samples(s)} = {delay_frames(s)} frames x {s.hop_size} + {s.fft_size - s.hop_size}")
assert delay_samples(s) == expected

# %% [markdown]
# ## 2 · Where the weights come from
#
# No PyTorch checkpoint of these models can be downloaded here, so the weights come from the **official ONNX
# release** (`DeepFilterNet3_onnx.tar.gz` and friends). `load_model` checks the tarball's sha256 against a
# pinned list, copies every weight tensor into deepfilternet's PyTorch `DfNet`, and keeps the result as a normal
# checkpoint folder with a `provenance.json`. `m.source` says exactly which file was used.

# %%
print("source :", m.source)
print("sha256 :", m.source_sha256)
print("folder :", m.folder)
pinned = KNOWN_SHA256[RELEASE_TARBALLS[MODEL]]
print("pinned :", pinned)
assert m.source_sha256 == pinned
print((m.folder / "provenance.json").read_text()[:800])

# %% [markdown]
# ## 3 · The offline reference on a real clip
#
# `enhance_offline` does what `df.enhance.enhance` does: pad the file, compute all STFT frames and features,
# run the network **once over the whole sequence**, synthesise, and remove the STFT delay so that the output is
# sample-aligned with the input. This is the output every streaming host in this kit is measured against.
# `probes=True` also returns what the network computed on the way (local SNR, GRU states, mask, filter
# coefficients).

# %%
noisy, clean, sr = clips.load_pair(CLIP)
info = clips.clip_info(CLIP)
print(f"{CLIP}: {len(noisy) / sr:.2f} s at {sr} Hz — {info['source']}")
ref = enhance_offline(m, noisy, sr, probes=True)
enhanced = ref.audio
assert len(enhanced) == len(noisy)

# %% [markdown]
# Listen: noisy input, DeepFilterNet's offline output, and the clean recording it should approach.

# %%
for name, sig in [("noisy", noisy), ("enhanced (offline DeepFilterNet)", enhanced), ("clean", clean)]:
    print(name)
    display(Audio(sig, rate=sr))

# %% [markdown]
# Look: the three spectrograms share one dB scale (top = loudest bin over all three panels, 80 dB range), so a
# colour means the same power in every panel. The background noise that fills the noisy panel between and
# under the words is gone in the enhanced panel, while the harmonic stripes of the voice remain.

# %%
fig = plot.plot_spectrograms({"noisy": noisy, "enhanced (offline)": enhanced, "clean": clean}, sr,
                             title=f"{MODEL} offline on {CLIP}")

# %% [markdown]
# How much closer to the clean speech did it get? The SNR improvement compares the signal-to-noise ratio
# (against the clean recording) before and after; PESQ (1–4.5) and STOI (0–1) estimate quality and
# intelligibility.

# %%
snr_gain = metrics.snr_improvement(noisy, enhanced, clean)
rows = [
    {"signal": "noisy", "PESQ": metrics.pesq_wb(clean, noisy, sr), "STOI": metrics.stoi(clean, noisy, sr),
     "SI-SDR (dB)": metrics.si_sdr(clean, noisy)},
    {"signal": "enhanced", "PESQ": metrics.pesq_wb(clean, enhanced, sr), "STOI": metrics.stoi(clean, enhanced, sr),
     "SI-SDR (dB)": metrics.si_sdr(clean, enhanced)},
]
print(metrics.metrics_table(rows))
print(f"SNR improvement vs clean: {snr_gain:.2f} dB")
assert snr_gain > 5.0
assert rows[1]["PESQ"] > rows[0]["PESQ"]

# %% [markdown]
# ## 4 · What the model thinks: the local-SNR probe
#
# Besides the gains, the encoder estimates a *local SNR* (`lsnr`) per frame, in dB between `lsnr_min` and
# `lsnr_max` from the config. It is a useful probe: it is high where speech dominates and low in the pauses.
# Below, the shaded spans are the hops where the clean recording is within 30 dB of its loudest hop.

# %%
hop_s = s.hop_size / s.sr
active = metrics.speech_active_hops(clean, s.hop_size, threshold_db=SPEECH_THRESHOLD_DB)
n = min(len(active), len(ref.lsnr))
lsnr_speech = float(ref.lsnr[:n][active[:n]].mean())
lsnr_pause = float(ref.lsnr[:n][~active[:n]].mean())
fig = plot.plot_lsnr({"offline lsnr": ref.lsnr}, hop_s, title=f"{MODEL} on {CLIP}")
ax = fig.axes[0]
ax.fill_between(np.arange(n) * hop_s, s.lsnr_min, s.lsnr_max, where=active[:n], color="tab:green", alpha=0.15,
                step="mid", label="speech (clean)")
ax.legend(loc="lower right", fontsize="small")
print(f"lsnr range {ref.lsnr.min():.1f} … {ref.lsnr.max():.1f} dB (config: {s.lsnr_min} … {s.lsnr_max})")
print(f"mean lsnr in speech hops {lsnr_speech:.1f} dB, in pauses {lsnr_pause:.1f} dB "
      f"({active[:n].mean():.0%} of hops are speech)")
assert s.lsnr_min <= ref.lsnr.min() and ref.lsnr.max() <= s.lsnr_max
assert lsnr_speech > lsnr_pause + 3.0

# %% [markdown]
# ## Summary
#
# - DeepFilterNet works on 10 ms hops of a half-overlapping STFT: ERB-band gains shape the whole spectrum and a
#   multi-frame complex deep filter refines the low bins; its convolutions and deep filter look a couple of
#   frames ahead, so a stream lags by `delay_samples` (30 ms for DeepFilterNet3).
# - The weights are the official ONNX release's, imported into PyTorch and pinned by sha256.
# - Run over the whole file, the model removes the background noise (the SNR improvement and PESQ gain are
#   printed above and asserted), and its `lsnr` probe follows where speech is.
#
# Everything the offline model does over the whole file, a realtime host has to do 10 ms at a time — and the
# model has memory (GRU states, convolution context, normalisation, STFT overlap) that the released ONNX models
# do not expose.
#
# ## Where to go next
#
# - **01_why_stateless_diverges** — what goes wrong when a host runs the models chunk by chunk, cause by cause.
# - **02_stateful_export** — exporting ONNX models that carry every state, so streaming equals offline.
# - **03_compare_outputs** — all variants side by side: spectrograms, LSNR, GRU state trajectories, metrics.
