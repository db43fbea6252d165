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
# # 07 · Someone else's ONNX folder: recognise it, run it as its own host does, diagnose it, convert it
#
# **Question: a user arrives with a DeepFilterNet ONNX folder produced by another realtime pipeline — the public
# Rust crate `shimondoodkin/deepfilter-rt` — and it sounds wrong in their host. What format is it, which states
# do its graphs carry, how does that host feed it, how far is the result from offline PyTorch with the same
# weights, which feeding error or missing state is to blame, and how do we get an exact export from it?**
#
# **What you will learn**
#
# - the folder layouts of that pipeline (split streaming, combined streaming, stateless `combined.onnx`, its `_h0`
#   export) and how `dfnb.formats.recognise` tells them apart from the graphs' inputs and outputs alone, reads the
#   model's sizes from the graphs and names the official release its weights equal;
# - the three ways that pipeline feeds a model (`step`, `h0`, `window`; `dfnb.hosts.pipeline`): a ring of the last
#   T feature frames, zero-prefilled, convs run on the window, the newest frame sliced before the GRUs, stages
#   gated on lsnr — and what each costs against offline;
# - `dfnb diagnose`: the same feeding replayed on an exact export with each cause switchable — the gain of fixing
#   each cause alone, of fixing all but one, and the one-line fix;
# - `dfnb export --from FOLDER`: the folder's weights back into deepfilternet's PyTorch model, exported exactly.
#
# The yardstick is the SNR of the difference against the offline output of the *same weights*
# (10·log10(Σ ref² / Σ (ref − test)²); float32 round-off ≈ 130 dB). There is no deepfilter-rt folder in the
# shared assets, so we build each layout from the official release with dfnb's own ONNX surgery and torch exports
# (`dfnb.thirdparty`): no file of that project is copied.

# %% tags=["parameters"]
import os

FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: DeepFilterNet3 only, a short clip
MODELS = ["DeepFilterNet3"] if FAST else ["DeepFilterNet3", "DeepFilterNet3_ll"]
CLIP = "vb_p232_028" if FAST else "vb_p232_013"
START, SECONDS = (0.3, 0.7) if FAST else (0.0, None)  # the part of the clip used (None: to its end), in s
EXACT_DB = 120.0  # a converted export must stream at least this close to offline

# %%
import tempfile
from pathlib import Path

import soundfile as sf
import torch
from IPython.display import Image, display

from dfnb import clips, metrics
from dfnb.convert import convert_folder
from dfnb.diagnose import diagnose, save_diagnosis
from dfnb.export import export_model
from dfnb.fingerprint import identify
from dfnb.formats import recognise
from dfnb.hosts.onnx import Host
from dfnb.hosts.pipeline import open_pipeline
from dfnb.hosts.pipeline_fixes import CAUSES, describe
from dfnb.models import load_model
from dfnb.offline import enhance_offline
from dfnb.releases import find_release_tarball
from dfnb.runtime import enhance
from dfnb.thirdparty import build_folder

torch.set_num_threads(1)
work = Path(tempfile.mkdtemp(prefix="dfnb07_"))
noisy, sr = clips.load_clip(CLIP)
noisy = noisy[int(START * sr) : int((START + SECONDS) * sr) if SECONDS else None]
loaded = {name: load_model(name) for name in MODELS}
reference = {name: enhance_offline(m, noisy, sr).audio for name, m in loaded.items()}
print(f"{CLIP}: {len(noisy) / sr:.2f} s; models {MODELS}; work folder {work}")

# %% [markdown]
# ## 1 · The layouts, built from the official release
#
# | layout | files | made by (in deepfilter-rt) |
# |---|---|---|
# | split streaming | `enc_conv_streaming.onnx` (convs only; every output sliced to the newest frame), `enc_gru_streaming.onnx` (`emb, h0 -> emb_out, lsnr, h1`), `erb_dec_streaming.onnx`, `df_dec_streaming.onnx` (their GRU states as I/O) | `split_encoder_and_patch_decoders.py`, `export_onnx_stateful.py` |
# | combined streaming | `combined_streaming.onnx`: `feat_erb, feat_spec, h0, erb_h0, df_h0 -> lsnr, m, coefs, h1, erb_h1, df_h1` | `merge_split_models.py` |
# | combined | `combined.onnx`: `feat_erb, feat_spec -> lsnr, m, coefs`, stateless | `merge_onnx.py` |
# | `_h0` folder | `enc.onnx` with `h0 [1,'B',256]` (torch export, symbolic batch), decoders with `erb_h0/df_h0 [2,'B',256]` | `export_onnx_stateful.py` |
#
# We build each with `dfnb.thirdparty.build_folder` (our own surgery with `onnx.utils.Extractor` and
# `onnx.compose`; the `_h0` folder is a legacy TorchScript export, and once more with torch's dynamo exporter for
# the encoder). Then `recognise` looks only at the graphs.

# %%
KINDS = ["split-streaming", "combined-streaming", "combined", "h0", "upstream"]
folders = {}
for name in MODELS:
    rel, _ = find_release_tarball(name)
    for kind in KINDS if name == "DeepFilterNet3" else ["split-streaming", "combined-streaming"]:
        folders[name, kind] = build_folder(kind, work / f"{name}_{kind}", release=rel, loaded=loaded[name])
if not FAST:
    folders["DeepFilterNet3", "h0-dynamo"] = build_folder("h0-dynamo", work / "DeepFilterNet3_h0-dynamo",
                                                          release=find_release_tarball("DeepFilterNet3")[0],
                                                          loaded=loaded["DeepFilterNet3"])

formats = {key: recognise(p) for key, p in folders.items()}
rows = [{"model": n, "layout built": k, "recognised as": f.format, "own feeding": f.feeds[0],
         "T": f.window.get(f.feeds[0], 1), "delay": f.delay(), "carries": " ".join(f.carries) or "-",
         "weights": f"= {f.weights.tarball}" if f.weights.equal else "other"} for (n, k), f in formats.items()]
print(metrics.metrics_table(rows))
for (n, k), f in formats.items():
    assert f.weights.equal and f.weights.release == n, (n, k)
    assert f.problems == []

# %% [markdown]
# `recognise` also prints what a host must keep and which differences from offline the feeding has
# (`dfnb inspect FOLDER` shows the same). For the split-streaming folder:

# %%
f = formats["DeepFilterNet3", "split-streaming"]
print(f.origin)
print("sizes from the graphs:", {k: v for k, v in f.sizes.items() if k != "parts"})
print("a host keeps:", *f.host_keeps(), sep="\n  ")

# %% [markdown]
# The weights are compared by `dfnb.fingerprint.identify`, which `recognise` calls: every weight tensor of the
# files, fingerprinted by its sorted values (so the layouts of both torch exporters match: folded BatchNorm, GRU
# gates z,r,h or r,z,n), against every tensor of the releases at hand, tolerance 1e-6.

# %%
w = identify(sorted(f.path.glob("*.onnx")))
print(w.summary())
assert w.equal and w.release == "DeepFilterNet3" and w.max_abs_diff <= 1e-6

# %% [markdown]
# ## 2 · Running each folder the way its host does
#
# deepfilter-rt (`src/lib.rs`, `DeepFilterProcessor::process_frame`) does libDF's STFT and features per 10 ms hop,
# then feeds a **ring of the last T feature frames, zero-prefilled**:
#
# - **`step`** (split / combined streaming): the current frame enters the ring; the convs run on all T frames, the
#   graph slices the newest and every GRU runs on that one frame with its state carried. T = 40 for the split files,
#   3 for `combined_streaming.onnx`.
# - **`h0`** (an `_h0` folder, merged into `combined.onnx`): T = 3 frames through the whole unsliced graph with the
#   GRU states carried from the previous call — each frame passes the GRUs three times — and the host uses output
#   frame 0 of the window.
# - **`window`** (stateless `combined.onnx`): 40 frames from zero states every hop, the newest output taken; the
#   features go through a lookahead buffer first (which writes `f(n-1)` into the ring).
#
# Then for all: mask on the spectrum of frame `n − L` (`L = max(conv_lookahead, df_lookahead)`), deep filter over
# the 5 newest noisy spectra, stages gated on lsnr (−15 / 35 / 35 dB), output lagging by `480 + L·480` samples.
# `open_pipeline` returns that loop as a dfnb runtime; `enhance` trims the delay, so outputs line up with offline.

# %%
emulated = {}
for (n, k), f in formats.items():
    if f.feeds[0] == "frame":  # dfnb's own host runs upstream's layout; deepfilter-rt would feed it as window
        y = enhance(Host(f.path), noisy, chunk=1)
    else:
        y = enhance(open_pipeline(f), noisy)
    emulated[n, k] = metrics.snr_of_difference(reference[n], y)
rows = [{"model": n, "layout": k, "feeding": formats[n, k].feeds[0], "SNR of diff vs offline (dB)": v}
        for (n, k), v in emulated.items()]
print(metrics.metrics_table(rows, floatfmt=".1f"))
assert all(v < 60 for (n, k), v in emulated.items() if formats[n, k].feeds[0] != "frame")

# %% [markdown]
# None of deepfilter-rt's feedings reproduces offline, although the split files carry every GRU state. Why?

# %% [markdown]
# ## 3 · Diagnose: which cause costs what
#
# `diagnose` converts the folder's weights back to PyTorch (the offline reference with the same weights), exports
# them exactly (`full`; here we convert and export once and hand both over, section 4 looks at that export), and
# replays the feeding on that export with each cause switchable: first with nothing
# fixed (it must equal the folder's own run — that checks conversion and emulation at once), then each cause fixed
# alone, then every cause but one, then all (the exact stream). A cause is *needed* when fixing all the others
# leaves the result more than 20 dB below "all fixed". The causes a feeding can have
# (`dfnb.hosts.pipeline_fixes.CAUSES`, here with DeepFilterNet3's numbers and T = 40):

# %%
cfg3 = formats["DeepFilterNet3", "split-streaming"].config
print(metrics.metrics_table([{"cause": c, "what the feeding does": describe(c, CAUSES, config=cfg3, window=40,
                                                                            missing=["erb_h0", "df_h0"])}
                             for c in CAUSES]))

# %%
targets = [("DeepFilterNet3", "split-streaming")] + ([] if FAST else [("DeepFilterNet3", "h0"),
                                                                     ("DeepFilterNet3", "combined"),
                                                                     ("DeepFilterNet3_ll", "split-streaming")])
clip_file = work / "clip.wav"
sf.write(clip_file, noisy, sr)
exact, diagnoses = {}, {}
for n, k in targets:
    converted = convert_folder(formats[n, k])
    exact[n, k] = export_model(converted, "full", work / f"converted_{n}_{k}")
    d = diagnose(formats[n, k], clip=clip_file, loaded=converted, exact_folder=exact[n, k])
    diagnoses[n, k] = d
    print("\n".join(d.lines()), end="\n\n")
    assert d.agreement_db > 90 and d.all_fixed_db > EXACT_DB

# %%
d = diagnoses["DeepFilterNet3", "split-streaming"]
json_path, png_path = save_diagnosis(d, work / "diagnose_split")
display(Image(filename=str(png_path)))
assert {c.name for c in d.causes if c.needed} == {"conv", "start"}

# %% [markdown]
# For DeepFilterNet3's split streaming, two causes and only two: the decoders run on one frame with zero conv
# states, so `df_convp` (time kernel 5) loses its 4 past `c0` frames; and the first 2 feature frames reach the
# encoder although offline's `pad_feat` drops them, so every state starts 2 hops early (the official tract runtime
# does the same, see 03). Fixing either alone leaves the other; fixing both gives the exact stream. Convolution
# context and lsnr gating cost nothing on this clip (its lsnr stays inside −15…35 dB). For the `_ll` model (full
# mode) the zero-prefilled window is a cause of its own, next to the decoders' conv states: its deeper convs have a
# time kernel of 2, and zero *features* before the stream start are not zero *activations*.

# %% [markdown]
# ## 4 · Convert: the folder's weights, exported exactly
#
# `convert_folder` builds deepfilternet's `DfNet` from the folder's own `config.ini` and fills every weight from
# its graphs — the official-release import generalised to these layouts (split encoder = `enc_conv` then
# `enc_gru`; one merged graph is split by which outputs each node feeds). Exported `full` (or `step`), the folder
# streams exactly in dfnb's host. `dfnb export --from FOLDER --variant full` does this and also checks the
# conversion by running the folder and the export side by side.

# %%
rows = []
for (n, k), f in formats.items():
    if k == "upstream" or (FAST and (n, k) not in exact):  # FAST: the conversion of section 3 shows it
        continue
    if (n, k) not in exact:
        exact[n, k] = export_model(convert_folder(f), "full", work / f"converted_{n}_{k}")
    snr = metrics.snr_of_difference(reference[n], enhance(Host(exact[n, k]), noisy))
    rows.append({"model": n, "layout": k, "converted full, SNR vs offline (dB)": snr})
    assert snr >= EXACT_DB, (n, k, snr)
print(metrics.metrics_table(rows, floatfmt=".1f"))

# %% [markdown]
# ## Summary
#
# - dfnb recognises every layout of the Rust pipeline (and its own, and upstream's) from the graphs' inputs and
#   outputs, reads the model's sizes from them, accepts the symbolic batch of torch-exported `h0`, and names the
#   official release the weights equal (every weight tensor compared, tolerance 1e-6).
# - `dfnb enhance --model FOLDER` runs such a folder the way that pipeline feeds it: a zero-prefilled ring of T
#   frames, convs on the window, the newest frame sliced before the GRUs (or not, in its `h0` and stateless
#   modes), lsnr-gated stages; the output is time-aligned like every dfnb output.
# - None of its feedings equals offline. `dfnb diagnose` measures why: for DeepFilterNet3's split streaming the
#   decoders' lost `df_convp` frames and the two extra start frames, nothing else; for the `_ll` model the
#   zero-prefilled window.
# - `dfnb export --from FOLDER --variant full|step` turns any of these folders into an exact export (≥ 120 dB).
#
# ## Where to go next
#
# - **01_why_stateless_diverges** — the same cause-by-cause method for dfnb's own hosts.
# - **03_compare_outputs** — the official tract runtime, which also feeds the two start frames.
# - `dfnb inspect FOLDER`, `dfnb diagnose FOLDER --clip NAME|PATH` on your own folder.
