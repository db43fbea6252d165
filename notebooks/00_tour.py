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
# - what the model's own local-SNR estimate (the `lsnr` probe) says about the clip;
# - the pipeline hop by hop, with every piece of memory a streaming host must keep marked on it, the equations
#   behind it, and a glossary of the words the other notebooks use (seed, host, ERB, DF, state group, ...).

# %% tags=["parameters"]
import os

MODEL = "DeepFilterNet3"
FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: a shorter clip, same story
CLIP = "vb_p232_028" if FAST else "vb_p232_013"  # VoiceBank-DEMAND test set, with its clean reference
SPEECH_THRESHOLD_DB = -30.0  # a hop is "speech" when the clean hop is within 30 dB of the loudest hop

# %%
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from dfnb import clips, diagram, listen, metrics, plot
from dfnb.files import enhance_file
from dfnb.layout import delay_frames, delay_samples
from dfnb.models import load_model
from dfnb.offline import BlockOffline, enhance_offline
from dfnb.releases import KNOWN_SHA256, RELEASE_TARBALLS

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
# Listen: noisy input, DeepFilterNet's offline output, the clean recording it should approach, and the residual
# noisy − enhanced — what the model took away. All players share one gain and are not normalised one by one
# (`dfnb.listen.players`), so louder here is louder in the file.

# %%
listen.players({"noisy": noisy, "enhanced": enhanced, "clean": clean}, sr, residuals=[("noisy", "enhanced")],
               title=f"{MODEL} offline on {CLIP}")

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
# A file of any length does not need the whole file in memory. `dfnb enhance` (and `dfnb.files.enhance_file`)
# reads the input in blocks and writes the output block by block; for the offline reference it runs the same
# PyTorch modules over 5 s blocks with every convolution's past frames and every GRU state carried between
# blocks (`BlockOffline`). Here 1 s blocks are used so that even this short clip crosses several block
# boundaries: the file-to-file output must equal the whole-sequence output above to within float rounding.

# %%
with tempfile.TemporaryDirectory() as tmp:
    src, dst = Path(tmp) / "noisy.wav", Path(tmp) / "enhanced.wav"
    sf.write(src, noisy, sr, subtype="FLOAT")
    enhance_file(BlockOffline(m), src, dst, chunk=100)  # calls of 100 hops = 1 s blocks
    from_file, _ = sf.read(dst, dtype="float32")
blocks_db = metrics.snr_of_difference(enhanced, from_file)
print(f"offline in 1 s blocks, file to file, vs whole sequence: {blocks_db:.1f} dB SNR of the difference")
assert len(from_file) == len(enhanced) and blocks_db >= 90.0

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
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", borderaxespad=0);
print(f"lsnr range {ref.lsnr.min():.1f} … {ref.lsnr.max():.1f} dB (config: {s.lsnr_min} … {s.lsnr_max})")
print(f"mean lsnr in speech hops {lsnr_speech:.1f} dB, in pauses {lsnr_pause:.1f} dB "
      f"({active[:n].mean():.0%} of hops are speech)")
assert s.lsnr_min <= ref.lsnr.min() and ref.lsnr.max() <= s.lsnr_max
assert lsnr_speech > lsnr_pause + 3.0

# %% [markdown]
# ## 5 · The pipeline, one hop at a time — and its memory
#
# A realtime host cannot give the model the whole file: it gets 10 ms of audio, must return 10 ms, and is called
# again. Everything the model computes for one hop that it needs again for a later hop is **state**. The figure
# below is the pipeline per hop; each badge is a *state group* (the names used everywhere in this kit,
# `dfnb.layout.STATE_GROUPS`): orange ones a host keeps itself, blue ones a stateful ONNX export carries as extra
# graph inputs/outputs.

# %%
fig = diagram.plot_pipeline(s)

# %% [markdown]
# The equations behind the boxes (hop $H$ = `hop_size`, window $N$ = `fft_size`, window $w$ — libdf's Vorbis
# window, which satisfies $w^2[n] + w^2[n + H] = 1$ at 50 % overlap):
#
# - **STFT analysis** of frame $t$: $X_t[f] = \sum_{n=0}^{N-1} w[n]\, x[tH + n - (N - H)]\, e^{-2\pi i f n / N}$ — every
#   frame reads the last $N - H$ samples of the previous hop (group `stft`, analysis half).
# - **Features**: ERB band energies in dB and the lowest $F_{df}$ bins, each normalised by a running mean
#   $\mu_t = \alpha \mu_{t-1} + (1 - \alpha)\, v_t$ with $\alpha = e^{-H / (f_s \tau)}$, $\tau = 1$ s (group `norm`).
# - **Gains**: $Y_t[f] = g_t[b(f)]\, X_{t}[f]$, one gain per ERB band $b(f)$ for the whole spectrum.
# - **Deep filter** on the lowest bins: $Y_t[f] = \sum_{i=0}^{O-1} c_t[i, f]\, X_{t - i + l}[f]$, $f < F_{df}$, with $O$ =
#   `df_order` taps and $l$ = `df_lookahead` frames ahead (group `df_buffer`: the past spectra it reads).
# - **Synthesis**: inverse FFT, window, and **overlap-add**: $y[tH + n] = w[n]\, \hat y_t[n] + w[n + H]\, \hat
#   y_{t-1}[n + H]$ for $0 \le n < H$ — the second half of the previous frame is the group `stft`'s synthesis half.
# - Inside the network, **causal convolutions** ($k$ frames in time need the $k-1$ previous frames: group `conv`) and
#   **GRUs** (a hidden state $h_t$ carried from frame to frame: groups `gru_enc`, `gru_erb`, `gru_df`, one per
#   sub-network) remember the past; the encoder reads its features `conv_lookahead` frames ahead (group
#   `lookahead`), so the output of frame $t$ leaves only when frame $t + $ `conv_lookahead` has arrived.
#
# That is **eight state groups**. Notebook 01 sometimes speaks of **six kinds** of memory: the three GRU groups
# are one kind (a recurrent state) split per sub-network.
#
# ### Glossary
#
# | word | meaning here |
# |---|---|
# | **hop** | 10 ms of audio (`hop_size` = 480 samples at 48 kHz): the model's time step, one STFT frame |
# | **call**, **chunk** | one invocation of a host with `chunk` hops of new audio (chunk 1 = 10 ms calls, the realtime case) |
# | **host** | the program around the ONNX graphs that a realtime application runs: it does the STFT, the features, keeps state between calls and calls onnxruntime (`dfnb.hosts`) |
# | **seed** | the project this kit started from: a Rust realtime host that runs DeepFilterNet's three ONNX files a few hops at a time and passes only the encoder GRU state between calls (`h0` in, `h1` out — the *seed contract*, export variant `h0`) |
# | **offline** / **reference** | the PyTorch model run once over the whole file (`enhance_offline`); every streamed output is compared with it |
# | **ERB** | *equivalent rectangular bandwidth*: a frequency scale following the ear's resolution; DeepFilterNet groups the spectrum into `nb_erb` ERB bands |
# | **DF**, **deep filter** | a complex multi-frame filter per low frequency bin, predicted by the *DF decoder* |
# | **lookahead** | frames the model reads ahead of the one it enhances; they delay the output |
# | **state group** | one named piece of memory (the badges above); an export **variant** says which groups its graphs carry: `stateless` none, `h0` the encoder GRU, `gru` all GRUs, `full` every model state, `step` everything in one per-hop graph |
# | **SNR of the difference** | $10 \log_{10} \sum r^2 / \sum (r - y)^2$ between a reference $r$ and an output $y$: +∞ if identical, ≈ 130 dB for float32 round-off, ≥ 90 dB counts as **exact**, below ≈ 30 dB an artifact is audible |
# | **naive host** | a host that runs each call as if it were a separate file (`per_call_offline=True`), optionally also restarting its STFT and normalisation each call (`reset_dsp=True`) |
# | **realtime factor** | compute time / audio time; below 1 keeps up with real time |
# | **IOBinding** | onnxruntime's way of binding preallocated input/output buffers to a session, saving a copy per call (`FastStepHost`, notebook 05) |
# | **FAST mode** | `DFNB_FAST=1` (set by `make test`): shorter clips and fewer sizes, same story and assertions |
#
# ### References
#
# - H. Schröter, A. N. Escalante-B., T. Rosenkranz, A. Maier, "DeepFilterNet: A Low Complexity Speech Enhancement
#   Framework for Full-Band Audio based on Deep Filtering", *ICASSP 2022*, pp. 7407–7411 (arXiv:2110.05588).
# - H. Schröter, A. N. Escalante-B., T. Rosenkranz, A. Maier, "DeepFilterNet2: Towards Real-Time Speech
#   Enhancement on Embedded Devices for Full-Band Audio", *IWAENC 2022* (arXiv:2205.05474).
# - H. Schröter, T. Rosenkranz, A. N. Escalante-B., A. Maier, "DeepFilterNet: Perceptually Motivated Real-Time
#   Speech Enhancement", *Interspeech 2023* (arXiv:2305.08227) — DeepFilterNet3.
# - Code and the ONNX releases whose weights this kit uses: github.com/Rikorose/DeepFilterNet.

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
# - Everything the offline model does over the whole file, a realtime host has to do 10 ms at a time — and the
#   pipeline has eight groups of memory (STFT overlap, normalisation, convolution context, three GRU states,
#   lookahead, deep-filter buffer) that the released ONNX models do not expose.
#
# ## Where to go next
#
# - **01_why_stateless_diverges** — what goes wrong when a host runs the models chunk by chunk, cause by cause.
# - **02_stateful_export** — exporting ONNX models that carry every state, so streaming equals offline.
# - **03_compare_outputs** — all variants side by side: spectrograms, LSNR, GRU state trajectories, metrics.
# - `dfnb report --clip your.wav --folder your_export` — the fidelity report of your own clip and folder.
