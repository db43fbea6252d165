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
# # 06 · What statelessness costs in perceived quality
#
# **Question: how much quality — PESQ, STOI, SI-SDR against the clean recording, and the non-intrusive DNSMOS
# (SIG/BAK/OVRL) and PLCMOS — does a host lose when it runs DeepFilterNet chunk by chunk without its state
# (`stateless`, `naive`) or with only the encoder's GRU state (`h0`), and where is that worse than not
# enhancing at all?**
#
# Notebooks 01–03 measured *how far* each host is from the offline output (SNR of the difference). That number
# says nothing about how bad the output sounds. No published numbers exist for the perceptual cost of stateless
# or h0-only chunked inference; the nearest is a regression of the official runtime that lost its recurrent
# state and cost 1.07 DNSMOS OVRL (tract issue 2157).
#
# **What you will learn**
#
# - how to score an output with `dfnb.quality`: DNSMOS P.835 and PLCMOS from Microsoft's ONNX models (shipped
#   by the `speechmos` package, run offline at 16 kHz), plus PESQ, STOI and SI-SDR from `dfnb.metrics`;
# - how `dfnb.study` runs one *cell* (model × variant × chunk × clip) and many cells in parallel (Dask), into
#   a tidy table with one row per cell;
# - the median table per variant × chunk size, the DNSMOS OVRL gap between stateless and exact hosts, and
#   every place where a host is worse than doing nothing;
# - whether PLCMOS, a model built to rate packet-loss concealment, hears the chunk seams.

# %% tags=["parameters"]
import os

FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: one model, one short clip, chunk 7, no table read
MODEL = "DeepFilterNet3"  # the model we listen to
CLIP = "vb_p232_028" if FAST else "vb_p232_013"  # the clip we listen to (a VoiceBank pair: it has clean speech)
CHUNK = 7  # hops per host call (70 ms)
USE_TABLE = not FAST  # full mode: read the table benchmarks/quality.py wrote (benchmarks/results/quality/), if any
# full mode without that table: compute this moderate subset instead (in parallel, local Dask cluster)
SUBSET = {"models": ["DeepFilterNet3", "DeepFilterNet3_ll"], "clips": ["vb_p232_013", "vb_p257_212", "dns4_street"],
          "chunks": [1, 7, 20]}

# %%
import tempfile
from pathlib import Path

import numpy as np
import torch
from IPython.display import Audio, display

import dfnb
from dfnb import metrics, quality, quality_plot, study
from dfnb import quality_table as qt

torch.set_num_threads(1)  # the offline reference runs in this process; one thread is fastest on a busy machine
RESULTS = Path(dfnb.__file__).resolve().parent.parent / "benchmarks" / "results" / "quality"
# the finished study, else what an interrupted one has done so far (it appends every finished cell there)
TABLE = next((p for p in (RESULTS / "quality.csv", RESULTS / "quality.partial.csv") if p.is_file()), None)


# %% [markdown]
# ## 1 · One clip, by ear and by number
#
# `study.run_cell(model, variant, chunk, clip, folder=...)` enhances the clip one way and scores the output;
# it returns the row of the tidy table and the audio. The host variants run exported folders, exported once
# per model by `study.prepare_exports` into a temporary folder (an export already in `models/` is reused,
# nothing is written there). `naive` is the stateless export called as if every chunk were a separate file
# (the naive host of notebooks 01 and 03).

# %%
folders = study.prepare_exports([MODEL], Path(tempfile.gettempdir()) / "dfnb_exports")
cells = {}
for v in study.VARIANTS:
    folder = folders.get((MODEL, "stateless" if v == "naive" else v))
    cells[v] = study.run_cell(MODEL, v, None if v in study.REFERENCES else CHUNK, CLIP, folder=folder)
one = {v: row for v, (row, _) in cells.items()}
audio = {v: y for v, (_, y) in cells.items()}
SHOWN = ["variant", "pesq", "stoi", "si_sdr_db", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "plcmos", "snr_diff_db"]
print(f"{MODEL} on {CLIP}, chunk {CHUNK} hops ({CHUNK * 10} ms per call)")
print(metrics.metrics_table(list(one.values()), SHOWN))
for exact in ("full", "step"):  # the exact hosts sound exactly like offline
    for s in ("pesq", "stoi", "dnsmos_ovrl", "plcmos"):
        assert abs(one[exact][s] - one["offline"][s]) < 0.01, (exact, s)
for s in ("pesq", "dnsmos_ovrl", "plcmos"):  # the stateless host does not
    assert one["stateless"][s] < one["offline"][s] - 0.3, s

# %% [markdown]
# DNSMOS needs no clean reference — it is what you can compute on your own recordings: `quality.dnsmos(audio,
# sr)` resamples to its 16 kHz and returns the P.835 scores (SIG: speech, BAK: background, OVRL: overall).

# %%
mos = quality.dnsmos(audio["stateless"], 48000)
print({k: round(v, 2) for k, v in mos.items()})
assert abs(mos["ovrl"] - one["stateless"]["dnsmos_ovrl"]) < 1e-6  # the same number the table holds

# %% [markdown]
# Listen at the recorded level (no normalisation): the noisy input, the offline reference, the stateless host,
# and the *residual* `offline − stateless` — what the stateless host gets wrong. The residual is speech-shaped
# and chopped every 70 ms: the stateless host damages the speech itself, not only the noise.

# %%
players = [("noisy", audio["noisy"]), ("offline", audio["offline"]), (f"stateless, chunk {CHUNK}", audio["stateless"]),
           ("residual offline − stateless", audio["offline"] - audio["stateless"])]
for name, sig in players:
    print(name)
    display(Audio(np.clip(sig, -1, 1), rate=48000, normalize=False))

# %% [markdown]
# ## 2 · Every model, variant, chunk size and clip
#
# `study.run_study(models, clips, chunks)` crosses everything and returns the tidy table (one row per cell,
# the columns `quality_table.COLUMNS`); with `workers=None` it runs the cells in parallel on a local Dask cluster, one
# process per core, and `scheduler="tcp://host:8786"` sends them to a running cluster. The full study —
# four models, every clip, chunks 1, 7 and 20 — is `benchmarks/quality.py`; its `quality.csv` is read here when
# it exists. FAST mode uses the cells of section 1.

# %%
if FAST:
    rows, source = list(one.values()), f"section 1 ({MODEL}, {CLIP}, chunk {CHUNK})"
elif USE_TABLE and TABLE is not None:
    rows, source = qt.read_table(TABLE), str(TABLE)
else:
    rows = study.run_study(SUBSET["models"], SUBSET["clips"], SUBSET["chunks"])
    source = f"computed here: {SUBSET}"
med = qt.median_table(rows)
models = list(dict.fromkeys(r["model"] for r in rows))
chunks = sorted({r["chunk"] for r in rows if r["chunk"] is not None})
print(f"{len(rows)} cells from {source}")
print(f"medians over clips: PESQ/STOI/SI-SDR over the {len({r['clip'] for r in rows if r['has_clean']})} clips "
      f"with clean speech, DNSMOS/PLCMOS over all {len({r['clip'] for r in rows})}; chunk '-' = whole file")
print(metrics.metrics_table(med, ["model", "variant", "chunk", "clips"] + SHOWN[1:]))

# %%
fig = quality_plot.plot_quality_grid(med, ("dnsmos_ovrl", "pesq"), models)
fig.suptitle("Median quality per variant and chunk size (noisy dashed, offline solid)")

# %% [markdown]
# ## 3 · The DNSMOS OVRL gap between stateless and exact
#
# Paired on each clip: OVRL of the host minus OVRL of the offline output (= the `full`/`step` hosts), median over
# clips. At 1 and 7 hops per call every model loses overall quality with the stateless host — at 1 hop per call
# (10 ms, the realtime case) more than half a MOS point. The loss shrinks as the calls get longer, and at 20 hops
# DNSMOS, which never hears the clean recording, can even prefer a stateless output that removes more noise
# (a higher BAK); PESQ against the clean recording still puts every stateless output below offline. `h0` and
# `gru` are in the table too: carrying some of the state is not the same as carrying all of it.

# %%
gaps = {}
for v in ("naive", "stateless", "h0", "gru", "full"):
    g = qt.paired_gap(rows, "dnsmos_ovrl", v, "offline")
    gaps[v] = {(r["model"], r["chunk"]): r[f"dnsmos_ovrl {v}-offline"] for r in g}
table = [{"model": m, "chunk": c, **{v: gaps[v].get((m, c), np.nan) for v in gaps}} for m in models for c in chunks]
print("DNSMOS OVRL of each host minus offline, same clip, median over clips")
print(metrics.metrics_table(table))
assert all(gaps["stateless"][m, c] < 0 for m in models for c in chunks if c <= 7)  # short calls cost OVRL
assert all(gaps["stateless"][m, 1] < -0.5 for m in models if 1 in chunks)  # most at 10 ms calls
assert all(abs(gaps["full"][m, c]) < 0.01 for m in models for c in chunks)  # the exact host costs nothing
pesq = {(r["model"], r["variant"], r["chunk"]): r["pesq"] for r in med}
assert all(pesq[m, "stateless", c] < pesq[m, "offline", None] for m in models for c in chunks)
for (m, c), g in gaps["stateless"].items():
    if g >= 0:
        print(f"{m}, chunk {c}: DNSMOS OVRL prefers stateless by {g:.2f}, yet its PESQ is "
              f"{pesq[m, 'stateless', c]:.2f} against offline's {pesq[m, 'offline', None]:.2f}")
worst = min(gaps["stateless"].values())
print(f"largest stateless OVRL loss: {worst:.2f} (the tract regression that lost recurrent state: 1.07)")

# %% [markdown]
# ## 4 · Where running the model is worse than doing nothing
#
# A host that loses its state can leave the listener worse off than no enhancement: each line below is a
# median score of a host *below the noisy input's*.

# %%
worse = qt.below_noisy(med)
for w in worse:
    print(f"{w['model']}, {w['variant']} host, chunk {w['chunk']}: {quality_plot.SCORE_LABELS[w['score']]} "
          f"{w['value']:.2f} < {w['noisy']:.2f} for the noisy input")
below = {(w["model"], w["variant"], w["chunk"], w["score"]) for w in worse}
assert (MODEL, "naive", CHUNK, "pesq") in below and (MODEL, "naive", CHUNK, "stoi") in below
assert (MODEL, "stateless", CHUNK, "stoi") in below
assert not any(w["variant"] in ("offline", "full", "step") for w in worse)

# %% [markdown]
# ## 5 · Does PLCMOS hear the chunk seams?
#
# PLCMOS rates gaps and discontinuities. If it tracks choppiness, the exact hosts should get offline's score,
# the stateless host less, and the naive host — whose every call also restarts the STFT and loses the lookahead,
# so it clicks at every seam — the least. It does, for every model, so the study keeps it.

# %%
plc = {v: [r for r in med if r["variant"] == v] for v in ("offline", "naive", "stateless", "h0", "gru", "full")}
for m in models:
    off = next(r["plcmos"] for r in plc["offline"] if r["model"] == m)
    line = ", ".join(f"{v} {r['plcmos']:.2f}" for v in ("naive", "stateless", "h0", "gru", "full")
                     for r in plc[v] if r["model"] == m and r["chunk"] == CHUNK)
    print(f"{m}: PLCMOS offline {off:.2f}; chunk {CHUNK}: {line}")
    by = {v: next(r["plcmos"] for r in plc[v] if r["model"] == m and r["chunk"] == CHUNK)
          for v in plc if v != "offline"}
    assert abs(by["full"] - off) < 0.01 and by["naive"] < by["stateless"] < off - 0.1

# %% [markdown]
# ## Summary
#
# - Scoring is `dfnb.quality` (DNSMOS P.835 SIG/BAK/OVRL and PLCMOS from `speechmos`'s bundled ONNX models at
#   16 kHz; PESQ, STOI, SI-SDR from `dfnb.metrics`); the study is `dfnb.study` (one cell = one model × variant ×
#   chunk × clip; Dask over cells; a tidy CSV), the full run `benchmarks/quality.py`.
# - The exact hosts (`full`, `step`) score exactly like offline in every metric.
# - The stateless host loses DNSMOS OVRL at 1 and 7 hops per call for every model (section 3), most at 1 hop
#   per call, and PESQ at every chunk size; at 20 hops DNSMOS alone may prefer it (printed in section 3).
# - The naive and stateless hosts are, on several metrics, **worse than doing nothing**: section 4 lists every
#   case, with the noisy input's score beside it.
# - PLCMOS hears the chunk seams: exact hosts at offline's score, stateless below, naive lowest.
#
# ## Where to go next
#
# - **02_stateful_export** — export the `full` or `step` variant so your host streams exactly.
# - **03_compare_outputs** — where in the spectrum the stateless hosts' errors are.
# - `benchmarks/quality.py --help` — rerun the study on your own clips, or on a Dask cluster with `--scheduler`.
