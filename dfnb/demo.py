"""The main job (``make demo`` / ``dfnb demo``): enhance a real clip, export the seed's ``dfn3_h0`` and the fully
stateful DeepFilterNet3 folder, run both through the onnxruntime host, and print the fidelity table.

Existing export folders are never overwritten: a valid one is reused (its weights' sha256 must match),
anything else is left untouched and the export goes to a temporary folder (:func:`dfnb.export.ensure_export`).
The output folder and the four files the demo writes there are checked before any work: the demo replaces
its own earlier outputs (tagged by dfnb, :mod:`dfnb.placement`) and refuses to replace anything else.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["run_demo", "DEMO_CLIP"]

DEMO_CLIP = "vb_p232_013"


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def run_demo(out_dir: Path = Path("out"), quick: bool = False, models_dir: Path | None = None) -> int:
    """Run the main job; returns 0. Prints every path it writes and the numbers it measures."""
    from . import assets, clips, metrics, plot
    from .audio import write_audio
    from .errors import ExportError
    from .hosts import open_host
    from .models import load_model
    from .offline import enhance_offline
    from .placement import building_file, check_target, marker_text, prepare_folder
    from .reuse import ensure_export
    from .runtime import enhance
    from .streaming import Stream

    out_dir = prepare_folder(out_dir, what="--out")
    outputs = {k: out_dir / f"{DEMO_CLIP}_{k}" for k in ("dfn3_offline.wav", "spectrograms.png", "dfn3_full_host.wav")}
    outputs["fidelity.json"] = out_dir / "fidelity.json"
    for p in outputs.values():
        check_target(p, folder=False, replace=True, error=ExportError, make_parent=False, what="--out")
    mdir = assets.models_dir(models_dir)

    _step("1/4 load DeepFilterNet3")
    t0 = time.perf_counter()
    m = load_model("DeepFilterNet3")
    print(f"   weights: {m.source}\n   loaded in {time.perf_counter() - t0:.1f} s")

    _step(f"2/4 offline reference on {DEMO_CLIP} (VoiceBank-DEMAND)")
    noisy, clean, sr = clips.load_pair(DEMO_CLIP)
    off = enhance_offline(m, noisy, sr).audio
    wav = write_audio(outputs["dfn3_offline.wav"], off, sr, overwrite=True)
    fig = plot.plot_spectrograms({"noisy": noisy, "enhanced (offline)": off, "clean": clean}, sr,
                                 title=f"DeepFilterNet3 on {DEMO_CLIP}")
    png = plot.save_figure(fig, outputs["spectrograms.png"])
    imp = metrics.snr_improvement(noisy, off, clean)
    print(f"   enhanced wav:     {wav}\n   spectrogram PNG:  {png}")
    print(f"   SNR vs clean: noisy {_snr(noisy, clean):.2f} dB -> "
          f"enhanced {_snr(off, clean):.2f} dB (improvement {imp:+.2f} dB)")

    _step("3/4 export the seed's h0 folder and the fully stateful folder")
    folders = {}
    for v in ("h0", "full"):
        t0 = time.perf_counter()
        folders[v] = ensure_export(m, v, mdir, say=lambda msg: print(f"   {msg}"))
        print(f"   {v}: {folders[v]} ({time.perf_counter() - t0:.1f} s)")

    _step("4/4 fidelity: streamed output vs offline PyTorch (SNR of the difference, higher is better)")
    rows = []
    chunks = (1,) if quick else (1, 7)
    stream = Stream(m)
    hosts = {v: open_host(f) for v, f in folders.items()}
    for ch in chunks:
        y = enhance(stream, noisy, chunk=ch)
        rows.append({"path": "PyTorch streaming step", "chunk (hops)": ch,
                     "SNR of diff (dB)": metrics.snr_of_difference(off, y),
                     "max abs err": metrics.max_abs_error(off, y)})
        for v, f in folders.items():
            y = enhance(hosts[v], noisy, chunk=ch)
            rows.append({"path": f"onnxruntime host: {f}", "chunk (hops)": ch,
                         "SNR of diff (dB)": metrics.snr_of_difference(off, y),
                         "max abs err": metrics.max_abs_error(off, y)})
            if v == "full" and ch == 1:
                write_audio(outputs["dfn3_full_host.wav"], y, sr, overwrite=True)
    print(metrics.metrics_table(rows, floatfmt=".3g"))
    with building_file(outputs["fidelity.json"], replace=True, error=ExportError, what="--out") as tmp:
        tmp.write_text(json.dumps({"written_by": marker_text(), "rows": rows}, indent=2, default=float) + "\n")
    print(f"   table also in {outputs['fidelity.json']}")
    print("\nNext: the notebooks are in notebooks/ (`make lab` opens them in JupyterLab); `make report` renders "
          "them all to report/*.html.")
    return 0


def _snr(x, clean) -> float:
    import numpy as np

    return float(10 * np.log10(np.sum(clean**2) / np.sum((x - clean) ** 2)))
