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
# # 02 · Exporting stateful ONNX models
#
# **Question: how do you export DeepFilterNet to ONNX so that a realtime host, calling it a few hops at a time,
# produces exactly the full-sequence output — and why is passing the encoder's GRU state (`h0` → `h1`) not
# enough?**
#
# **What you will learn**
#
# - the seed's procedure step by step (the *seed*: the Rust realtime host this kit started from, which passes only
#   the encoder GRU state `h0` → `h1` between calls — notebook 00's glossary): pick a model,
#   `export_model(m, "h0", folder)`, inspect the folder (`inspect_folder`: the graphs' inputs and outputs,
#   `manifest.json`), verify it in onnxruntime;
# - what a host does with `h0`/`h1` between calls and on `reset()` (`dfnb.hosts.onnx.Host`);
# - how far each export variant — `stateless`, `h0`, `gru`, `full`, `step` — is from the offline output at
#   realistic chunk sizes, and why `h0` alone does not help; what it sounds like;
# - what the fully stateful exports (`full`, `step`) carry, and that they are exact;
# - a complete host loop for a `full` folder written out by hand (about 30 lines of numpy + onnxruntime), so
#   nothing about what a host must keep is hidden in a library;
# - a checklist to verify your own export before a realtime host ships it.

# %% tags=["parameters"]
import os

MODEL = "DeepFilterNet3"
FAST = os.environ.get("DFNB_FAST") == "1"  # set by `make test`: shorter clip, two chunk sizes, temp exports
CLIP = "vb_p232_028" if FAST else "vb_p232_013"
CHUNK = 7  # hops per host call for the host demo
CHUNKS = [1, 7] if FAST else [1, 2, 4, 7, 16, 32]  # chunk sizes of the fidelity sweep (must include 1 and 7)
EXACT_DB = 90.0  # SNR of the difference above which two outputs count as equal (float32 round-off ≈ 130 dB)

# %%
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import dfnb
from dfnb import clips, dsp, listen, metrics, plot
from dfnb.export import VARIANTS
from dfnb.folder import inspect_folder
from dfnb.hosts.onnx import Host
from dfnb.layout import STATE_GROUPS
from dfnb.models import load_model
from dfnb.offline import enhance_offline
from dfnb.reuse import ensure_export
from dfnb.runtime import enhance

torch.set_num_threads(1)  # exports and the reference are small; one thread avoids contention on a busy machine
# FAST mode exports into one temporary folder that the other notebooks reuse; full mode uses the repository's
# models/ folder. Either way an existing export of the same weights is reused and nothing there is overwritten.
EXPORT_ROOT = (Path(tempfile.gettempdir()) / "dfnb_exports" if FAST
               else Path(dfnb.__file__).resolve().parent.parent / "models")


# %% [markdown]
# ## 1 · Pick a model and export the seed's `h0` contract
#
# The seed's contract: `enc.onnx` takes the encoder GRU's hidden state as an extra input `h0` and returns the
# updated state as an extra output `h1`; the host feeds `h1` back as `h0` on the next call. The two decoders
# stay as upstream exports them. `export_model` builds the graphs in a temporary folder, checks them against
# PyTorch on real features (two consecutive chunks, so the state hand-over is checked too), writes
# `manifest.json`, and only then moves the folder into place.

# %%
m = load_model(MODEL)
print(m.source)
h0_dir = ensure_export(m, "h0", EXPORT_ROOT)
print("folder:", h0_dir)
print(sorted(p.name for p in h0_dir.iterdir()))

# %% [markdown]
# ## 2 · Inspect the I/O
#
# `inspect_folder` loads every graph with onnxruntime, checks the folder is consistent with its `config.ini`,
# and detects the variant from the graphs' inputs — the way the seed's Rust pipeline decides. `S` is the dynamic
# time axis (frames per call).

# %%
info = inspect_folder(h0_dir)
print(f"variant detected from the inputs: {info.variant}; "
      f"not checkable from the graphs: {info.unverified or 'nothing'}")
for f, io in info.io.items():
    print(f"\n{f}")
    for kind in ("inputs", "outputs"):
        for name, shape, dtype in io[kind]:
            print(f"  {kind[:-1]:6} {name:10} {str(shape):28} {dtype}")
enc_inputs = [n for n, _, _ in info.io["enc.onnx"]["inputs"]]
enc_outputs = [n for n, _, _ in info.io["enc.onnx"]["outputs"]]
assert info.variant == "h0" and "h0" in enc_inputs and "h1" in enc_outputs

# %% [markdown]
# The manifest records where the weights came from, the states the folder makes explicit (name, ONNX input →
# output, shape, initial value), and how the export was verified against PyTorch.

# %%
man = info.manifest
print(json.dumps({k: man[k] for k in ("format", "variant", "model", "family", "exact", "weights")}, indent=1))
for st in man["states"]:
    print("state:", {k: st.get(k) for k in ("name", "input", "output", "file", "group", "shape", "init")})
verify = man["verification"]["max_abs_diff_vs_torch"]
print("verification (max |ONNX - PyTorch|):", verify)
assert man["weights"]["sha256"] == m.source_sha256
assert max(verify.values()) < 1e-4

# %% [markdown]
# ## 3 · Verify in onnxruntime: the `h1` → `h0` hand-over, by hand
#
# No host yet — just onnxruntime and the features of a real clip (`dsp.offline_features`, the libdf reference).
# We run `enc.onnx` three ways over frames `0..2T`: once in a single call (the reference), and as two calls of `T`
# frames, the second starting either from `h0 = h1` of the first (the seed's hand-over) or from zeros (what a
# stateless model does). The local-SNR output `lsnr` shows the effect in dB.

# %%
noisy, clean, sr = clips.load_pair(CLIP)
cfg = dsp.DspConfig.from_spec(m.spec)
_, feat_erb, feat_spec = dsp.offline_features(cfg, noisy)
sess = ort.InferenceSession(str(h0_dir / "enc.onnx"), providers=["CPUExecutionProvider"])
h0_shape = [s for n, s, _ in info.io["enc.onnx"]["inputs"] if n == "h0"][0]
names = [o.name for o in sess.get_outputs()]


def enc_call(a, b, h0):
    feeds = {"feat_erb": feat_erb[None, None, a:b].astype(np.float32),
             "feat_spec": np.stack([feat_spec[a:b].real, feat_spec[a:b].imag])[None].astype(np.float32), "h0": h0}
    return dict(zip(names, sess.run(None, feeds)))


T = 50
zeros = np.zeros(h0_shape, np.float32)
whole = enc_call(0, 2 * T, zeros)
first = enc_call(0, T, zeros)
handover = enc_call(T, 2 * T, first["h1"])
restart = enc_call(T, 2 * T, zeros)
err_handover = float(np.abs(handover["lsnr"] - whole["lsnr"][:, T:]).max())
err_restart = float(np.abs(restart["lsnr"] - whole["lsnr"][:, T:]).max())
err_late = float(np.abs(handover["emb"] - whole["emb"][:, T:])[:, T // 2:].max())
print(f"h1 shape {first['h1'].shape}, |h1| = {np.linalg.norm(first['h1']):.2f}")
print(f"second call, max lsnr error vs one call: h0 = h1 {err_handover:.3f} dB, h0 = zeros {err_restart:.3f} dB")
print(f"with the hand-over, embedding error {T // 2} frames into the second call: {err_late:.4f} (not 0)")
assert np.abs(first["emb"] - whole["emb"][:, :T]).max() == 0.0  # the first call is the same computation
assert err_handover < err_restart  # the hand-over helps...
assert err_late > 1e-3  # ...but the second call is still not the one-call result

# %% [markdown]
# The hand-over fixes most of the encoder's error, but not all of it: the encoder's convolutions see zero padding
# instead of the previous call's last frames, the first frames of the second call are computed from the wrong
# context, and the GRU then carries that error on. The decoders' GRUs and convolutions restart from zero as well.
# That is the first hint that `h0` alone is not enough.
#
# ## 4 · What a host does with `h0`/`h1`, and on reset
#
# `Host` is a realtime host for any exported folder (numpy + onnxruntime, no torch). Between calls it keeps what
# the folder declares — for `h0`, the encoder GRU state in `host.states['h0']` — plus the DSP state (STFT
# overlap, feature normalisation), the lookahead delay and the deep-filter buffer. `reset()` (e.g. a new call or
# a seek) returns everything to the initial state: zeros for `h0`.

# %%
host = Host(h0_dir)
hop = host.cfg.hop_size
n_hops = len(noisy) // hop
for i in range(0, n_hops - n_hops % CHUNK, CHUNK):
    host.process(noisy[i * hop:(i + CHUNK) * hop])
norm_after = float(np.linalg.norm(host.states["h0"]))
print(f"after {n_hops // CHUNK} calls of {CHUNK} hops: states {list(host.states)}, |h0| = {norm_after:.2f}, "
      f"shape {host.states['h0'].shape}")
host.reset()
print(f"after reset(): |h0| = {np.linalg.norm(host.states['h0']):.2f}")
assert norm_after > 0.0
assert not host.states["h0"].any()

# %% [markdown]
# ## 5 · Why `h0` alone is not enough: fidelity of every variant
#
# Export the other four variants and run each through the same host at several chunk sizes. The host keeps the
# DSP state, the lookahead and the DF buffer for every variant (it is the seed's realtime pipeline), so the only
# difference between the variants is what the *graphs* remember:
#
# | variant | graphs carry across calls |
# |---|---|
# | `stateless` | nothing (upstream's export) |
# | `h0` | the encoder GRU (the seed's contract) |
# | `gru` | all GRUs: encoder, ERB decoder, DF decoder |
# | `full` | all GRUs and the causal convolutions' past frames — every model-side state |
# | `step` | everything, in one graph per hop (`step.onnx`): spectrum in, enhanced spectrum out |

# %%
folders = {v: h0_dir if v == "h0" else ensure_export(m, v, EXPORT_ROOT) for v in VARIANTS}
reference = enhance_offline(m, noisy, sr).audio
fidelity, outputs = {v: [] for v in VARIANTS}, {}  # SNR per chunk size; the outputs at CHUNK, to listen to
for v in VARIANTS:
    for c in CHUNKS:
        y = enhance(Host(folders[v]), noisy, chunk=c)
        fidelity[v].append(metrics.snr_of_difference(reference, y))
        if c in (1, CHUNK):
            outputs[v, c] = y
rows = [{"variant": v, **{f"chunk {c}": fidelity[v][i] for i, c in enumerate(CHUNKS)}} for v in VARIANTS]
print(f"SNR of the difference vs offline (dB), {MODEL} on {CLIP}")
print(metrics.metrics_table(rows, floatfmt=".1f"))
fig = plot.plot_error_vs_chunk(CHUNKS, fidelity, exact_db=EXACT_DB,
                               title=f"{MODEL} on {CLIP}: onnxruntime host per variant")

# %%
at = {c: {v: fidelity[v][CHUNKS.index(c)] for v in VARIANTS} for c in (1, 7)}
for c in (1, 7):
    print(f"chunk {c}: " + ", ".join(f"{v} {at[c][v]:.1f} dB" for v in VARIANTS))
assert all(at[c][v] >= EXACT_DB for c in (1, 7) for v in ("full", "step"))  # exact
assert all(at[c][v] < 10.0 for c in (1, 7) for v in ("stateless", "h0"))  # audibly wrong
assert at[7]["gru"] > max(at[7]["stateless"], at[7]["h0"])  # carrying every GRU helps...
assert at[7]["gru"] < EXACT_DB  # ...but is not exact
assert at[1]["h0"] < at[1]["stateless"] + 1.0  # at one-hop calls, h0 does not help
print(f"encoder input conv time kernel: {m.spec.conv_kernel_inp[0]} frames")
assert m.spec.conv_kernel_inp[0] > 1

# %% [markdown]
# What the numbers say (printed and asserted above):
#
# - **`full` and `step` are exact** at every chunk size: ≥ 90 dB, i.e. float32 round-off.
# - **`stateless` and `h0` are both audibly wrong** (below 10 dB). Carrying `h0` does **not** make the seed's
#   host better than a stateless one at short calls; at one-hop calls it is no better at all (on the clips we
#   tried, slightly worse). The encoder GRU is one of five recurrent layers, and the convolutions' context is
#   still zero-padded every call: in one-hop calls the encoder's input convolutions (time kernel printed
#   below) see zero frames instead of the past ones, so the GRU's input is wrong on every hop. A correct `h0` fed
#   by wrong inputs, into decoders whose GRUs restart from zero each hop, is not closer to the reference — just
#   differently wrong.
# - **`gru`** (all GRU states) is clearly better at chunk 7 but still far from exact: the missing convolution
#   context alone costs tens of dB (notebook 01 measured the `conv` group on its own).
# - Only when *every* state is carried (`full`) does the chunked host equal the full-sequence model.
#
# Listen at chunk `CHUNK`: the offline output, the seed's `h0` host and the `full` host, and what each host gets
# wrong (offline − host). All players share one gain (`normalize=False`): the `full` residual is silent.

# %%
listen.players({"offline": reference, "h0 host": outputs["h0", CHUNK], "full host": outputs["full", CHUNK]}, sr,
               residuals=[("offline", "h0 host"), ("offline", "full host")],
               title=f"{MODEL} on {CLIP}, calls of {CHUNK} hops")

# %% [markdown]
# ## 6 · The fully stateful exports
#
# `full` keeps the three-file layout and adds every model-side state as an input/output pair; `step` fuses the
# three graphs and the deep filter into one per-hop graph. The manifest lists what the host must keep outside
# the graphs (`where: host`): the STFT overlap and the feature normalisation (and, for `full`, the lookahead and
# the DF spectrum buffer, which `step` carries inside the graph).

# %%
for v in ("full", "step"):
    mf = inspect_folder(folders[v]).manifest
    graph_states = [s for s in mf["states"] if "input" in s]
    host_states = [s for s in mf["states"] if s.get("where") == "host"]
    print(f"\n{v}: exact={mf['exact']}, delay {mf['delay_samples']} samples "
          f"({1000 * mf['delay_samples'] / mf['sr']:.0f} ms)")
    print(metrics.metrics_table([{"state": s["name"], "in -> out": f"{s['input']} -> {s['output']}",
                                  "file": s["file"], "group": s["group"], "shape": str(s["shape"])}
                                 for s in graph_states]))
    print("kept by the host:", ", ".join(f"{s['name']} ({s['group']})" for s in host_states))
    assert mf["exact"]
full_groups = {s["group"] for s in inspect_folder(folders["full"]).manifest["states"]}
step_groups = {s["group"] for s in inspect_folder(folders["step"]).manifest["states"]}
print("\nstate groups described by full:", sorted(full_groups), "\nby step:", sorted(step_groups))
assert full_groups == step_groups == set(STATE_GROUPS)  # the same state, split differently between graph and host

# %% [markdown]
# Every one of the eight state groups from notebook 01 appears in both manifests — either as a graph input/output
# or as something the host keeps — which is why both variants reproduce the offline output.
#
# ## 7 · A `full` host, written out by hand
#
# `Host` hides nothing magic, but it is general (every variant, any chunk size, DeepFilterNet2 too). Here is the
# same computation for a `full` DeepFilterNet3 folder, one hop per call, in plain numpy + onnxruntime + the
# per-hop DSP of `dfnb.dsp` — every state a realtime host keeps is a variable you can see:
#
# - `dsp_state`: STFT analysis/synthesis overlap and the two feature normalisations (groups `stft`, `norm`);
# - `states`: every GRU state and every convolution's past frames, fed to the graphs and replaced by what they
#   return (groups `gru_*`, `conv`; names from the folder's layout);
# - `spec_buf`: the last `L + O - l` spectra — the frame `L` hops back that the gains apply to (`lookahead`) and
#   the `O` frames the deep filter combines (`df_buffer`).
#
# The input is padded and the lookahead drained exactly as `enhance()` does, so the output compares sample by
# sample with the offline reference and with `Host`.

# %%
assert m.spec.family == "deepfilternet3", "the loop below is DeepFilterNet3's deep filter (DFN2: see Host._stage)"
folder = folders["full"]
info = inspect_folder(folder)
cfg, L, lookahead_df, order, H = info.cfg, info.conv_lookahead, info.df_lookahead, info.df_order, info.cfg.hop_size
sess = {f: ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"]) for f in info.files}
states = {d.io[0]: d.initial() for d in info.carried}  # graph input name -> value (zeros at the start)
feeds_next = {d.io[1]: d.io[0] for d in info.carried}  # graph output name -> the input it feeds at the next hop
to_bins = np.repeat(np.eye(cfg.nb_erb, dtype=np.float32), cfg.erb_widths, axis=1)  # ERB band gains -> bin gains


def run(f, feeds):
    """One graph, fed its carried states; the states it returns replace the old ones."""
    ins = {i.name for i in sess[f].get_inputs()}
    res = dict(zip([o.name for o in sess[f].get_outputs()],
                   sess[f].run(None, {**feeds, **{k: v for k, v in states.items() if k in ins}})))
    states.update({feeds_next[k]: v for k, v in res.items() if k in feeds_next})
    return res


dsp_state = dsp.DspState.initial(cfg)
spec_buf = np.zeros((L + order - lookahead_df, cfg.freq_bins), np.complex64)
n_hops = (len(noisy) + cfg.fft_size) // H  # enhance() pads with fft_size zeros, then drains the lookahead
x = np.concatenate([noisy, np.zeros(n_hops * H - len(noisy), np.float32)])
out = []
for n in range(n_hops + info.delay_frames):
    if n < n_hops:
        X = dsp.analysis(cfg, dsp_state, x[n * H:(n + 1) * H])
        fe, fs = dsp.features(cfg, dsp_state, X)
    else:  # draining: zero spectrum and features, as the offline model's padding
        X, fe, fs = np.zeros(cfg.freq_bins, np.complex64), np.zeros(cfg.nb_erb, np.float32), np.zeros(cfg.nb_df, np.complex64)
    spec_buf = np.roll(spec_buf, -1, axis=0)
    spec_buf[-1] = X
    if n < L:  # warm-up: the encoder's first frame needs L future frames; nothing to emit yet
        out.append(np.zeros(H, np.float32))
        continue
    enc = run("enc.onnx", {"feat_erb": fe[None, None, None], "feat_spec": np.stack([fs.real, fs.imag])[None, :, None]})
    gains = run("erb_dec.onnx", {k: enc[k] for k in ("emb", "e3", "e2", "e1", "e0")})["m"][0, 0, 0] @ to_bins
    c = run("df_dec.onnx", {"emb": enc["emb"], "c0": enc["c0"]})["coefs"][0, 0].reshape(cfg.nb_df, order, 2)
    Y = spec_buf[-1 - L] * gains  # ERB gains on the frame L hops back
    coefs = (c[..., 0] + 1j * c[..., 1]).T.astype(np.complex64)  # [order, nb_df]
    Y[: cfg.nb_df] = np.sum(spec_buf[:, : cfg.nb_df] * coefs, axis=0)  # deep filter over the `order` buffered frames
    out.append(dsp.synthesis(cfg, dsp_state, Y))
by_hand = np.concatenate(out)[info.delay_samples: info.delay_samples + len(noisy)]

# %%
by_host = outputs["full", 1]  # enhance(Host(folder), noisy, chunk=1), from section 5
print(f"hand-written loop vs Host: max |diff| {np.abs(by_hand - by_host).max():.2e}, "
      f"SNR of diff {metrics.snr_of_difference(by_host, by_hand):.1f} dB")
print(f"hand-written loop vs offline PyTorch: {metrics.snr_of_difference(reference, by_hand):.1f} dB")
assert len(spec_buf) == order and metrics.snr_of_difference(by_host, by_hand) >= EXACT_DB
assert metrics.snr_of_difference(reference, by_hand) >= EXACT_DB

# %% [markdown]
# The loop is the host: same output as `Host`, and exact against the offline model. (With this model's numbers the
# buffer holds exactly the `O` frames the deep filter reads: `L + O - l = O` because `L = l`.)
#
# ## 8 · Verify your export: a checklist
#
# Before a realtime host ships a folder, check — the cell below does each step for the `full` folder:
#
# 1. **It loads and is consistent**: `inspect_folder(folder)` raises on missing or mixed files, on states with the
#    wrong shape and on a manifest that does not match the files; it detects the variant from the graph inputs.
# 2. **The weights are the ones you meant**: the manifest's `weights.sha256` is the release you load as reference.
# 3. **Nothing is forgotten**: the manifest's `states` cover all eight state groups (in the graphs or in the host).
# 4. **It streams exactly** on real speech: ≥ 90 dB SNR of the difference against `enhance_offline` at one hop
#    per call (the realtime case) and at your host's chunk size.
# 5. **`reset()` resets**: the same input twice, with a reset between, gives bit-identical output.
# 6. **The delay is the one your host compensates**: `host.delay_samples` equals the manifest's `delay_samples`.
# 7. **Your own host and audio**: run your host on your clip and compare its output with the reference —
#    `dfnb report --clip your.wav --folder your_export` does steps 4–6 on your clip and renders the fidelity
#    report (error vs chunk size, where the difference is, lsnr drift, A/B/residual audio).

# %%
chk = inspect_folder(folder)  # 1
man = chk.manifest
checks = {"1 loads, consistent, variant detected": chk.variant == "full",
          "2 weights = the reference's": man["weights"]["sha256"] == m.source_sha256,
          "3 all eight state groups described": {st["group"] for st in man["states"]} == set(STATE_GROUPS)}
snr_at = {c: fidelity["full"][CHUNKS.index(c)] for c in (1, CHUNK)}  # measured in section 5
checks["4 exact at chunk 1 and chunk " + str(CHUNK)] = min(snr_at.values()) >= EXACT_DB
host = Host(folder)
excerpt = noisy[sr // 2: sr]  # half a second is enough to see a state survive a reset
first, again = enhance(host, excerpt, chunk=CHUNK), enhance(host, excerpt, chunk=CHUNK)  # enhance() resets first
checks["5 reset() gives identical output"] = np.array_equal(first, again)
checks["6 delay = manifest delay_samples"] = host.delay_samples == man["delay_samples"]
for name, ok in checks.items():
    print(f"{'ok  ' if ok else 'FAIL'} {name}")
print(f"SNR of the difference: {', '.join(f'chunk {c}: {v:.1f} dB' for c, v in snr_at.items())}; "
      f"delay {host.delay_samples} samples")
assert all(checks.values())

# %% [markdown]
# ## Summary
#
# - `export_model(m, variant, folder)` writes a verified folder (graphs + `config.ini` + `manifest.json`);
#   `inspect_folder` shows its inputs/outputs and detects the variant; `Host` runs it and `reset()` zeroes the
#   carried state.
# - The seed's `h0` contract hands the encoder GRU state from call to call, but at realistic chunk sizes it is
#   as far from the reference as the stateless export: GRU states of the decoders and the convolutions' context
#   are lost at every call.
# - Carrying all GRU states (`gru`) helps but is not exact; carrying every model-side state (`full`, or `step`
#   in one graph) with a host that keeps the DSP state, the lookahead and the DF buffer is exact (≥ 90 dB).
# - A `full` host is about 30 lines by hand (section 7) and gives `Host`'s output; the checklist of section 8
#   (and `dfnb report --clip ... --folder ...`) verifies any export before a realtime host ships it.
#
# ## Where to go next
#
# - **03_compare_outputs** — the variants side by side: spectrograms, differences, LSNR and GRU state trajectories.
# - **04_low_latency_models** — the same exports for DeepFilterNet3_ll and DeepFilterNet2_ll.
# - **05_realtime** — how fast each variant runs per hop.
