"""What each way of running a model costs in perceived quality: PESQ, STOI, SI-SDR, DNSMOS, PLCMOS.

    .venv/bin/python benchmarks/quality.py            # 4 models × 8 variants × chunks 1/7/20 × every noisy clip
    .venv/bin/python benchmarks/quality.py --fast     # DeepFilterNet3, two clips, chunk 7
    .venv/bin/python benchmarks/quality.py --table benchmarks/results/quality/quality.csv   # re-summarise only

Variants (see :mod:`dfnb.study`): ``noisy`` (doing nothing), ``offline`` (PyTorch, whole file), ``naive``
(every call treated as a new file: the twin of the PyTorch stream carrying nothing), and the onnxruntime host
on the ``stateless``, ``h0``, ``gru``, ``full`` and ``step`` exports, in calls of ``chunk`` hops. Clips: the
VoiceBank-DEMAND pairs and
``dfn_noisy_snr0`` (PESQ/STOI/SI-SDR against their clean recordings) and the blind DNS4 clips (DNSMOS and
PLCMOS only). Cells run in parallel over a local Dask cluster (``--workers``, one process per core by default)
or a running scheduler (``--scheduler tcp://host:8786``). Prints the median table per model × variant × chunk,
the paired DNSMOS OVRL gap of stateless (and h0, naive) against exact, and every place where a variant is
worse than doing nothing; writes ``quality.csv`` (one row per cell; ``.parquet`` too when pyarrow is
installed), ``quality_medians.csv`` and PNG figures under ``--out`` (default ``benchmarks/results/quality``).
Cells run clip by clip, and each finished cell is appended to ``quality.partial.csv`` at once: an interrupted
study resumes there (``--fresh`` starts over), and ``--table .../quality.partial.csv`` summarises what is done.
Exports are cached in ``benchmarks/results/cache/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (one BLAS thread, set before numpy loads)

# isort: split
import argparse
import csv
import time

from _common import RESULTS

MODELS = ["DeepFilterNet3", "DeepFilterNet2", "DeepFilterNet3_ll", "DeepFilterNet2_ll"]
PRINTED = ["model", "variant", "chunk", "clips", "pesq", "stoi", "si_sdr_db", "dnsmos_sig", "dnsmos_bak",
           "dnsmos_ovrl", "plcmos", "snr_diff_db"]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def summarise(rows: list[dict], out: Path) -> None:
    """Print the median table, the OVRL gaps and the worse-than-nothing list; write medians and figures."""
    from dfnb import quality_plot
    from dfnb import quality_table as qt
    from dfnb.metrics import metrics_table
    from dfnb.plot import save_figure

    med = qt.median_table(rows)
    n_clean = len({r["clip"] for r in rows if r["has_clean"]})
    n_all = len({r["clip"] for r in rows})
    log(f"\nMedians over clips (PESQ/STOI/SI-SDR: {n_clean} clips with a clean recording; DNSMOS/PLCMOS: all "
        f"{n_all}); snr_diff_db = SNR of the difference vs offline; chunk '-' = whole file")
    log(metrics_table(med, PRINTED))
    for variant in ("stateless", "h0", "naive", "gru", "full", "step"):
        gap = qt.paired_gap(rows, "dnsmos_ovrl", variant, "offline")
        if gap:
            log(f"\nDNSMOS OVRL, {variant} - offline (= exact) on the same clip (median over clips; worst/best clip):")
            log(metrics_table(gap))
    worse = qt.below_noisy(med)
    log("\nWorse than doing nothing (median below the noisy input's):")
    log(metrics_table(worse, floatfmt=".3f") if worse else "  nowhere")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "quality_medians.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(med[0]))
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in med)
    figs = {"quality_ovrl_pesq": ("dnsmos_ovrl", "pesq"),
            "quality_dnsmos_plcmos": ("dnsmos_sig", "dnsmos_bak", "plcmos"),
            "quality_stoi_sisdr": ("stoi", "si_sdr_db")}
    for name, scores in figs.items():
        log(f"wrote {save_figure(quality_plot.plot_quality_grid(med, scores), out / name)}")
    log(f"wrote {out / 'quality_medians.csv'}")


def main(argv: list[str] | None = None) -> int:
    from dfnb import clips, study
    from dfnb import quality_table as qt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None, help=f"default: {' '.join(MODELS)}")
    ap.add_argument("--clips", nargs="*", default=None, help="clip names (default: every noisy clip of the manifest)")
    ap.add_argument("--chunks", nargs="*", type=int, default=None, help="hops per call (default: 1 7 20)")
    ap.add_argument("--variants", nargs="*", default=None, help=f"default: {' '.join(study.VARIANTS)}")
    ap.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core; "
                    "1 = in this process, no Dask)")
    ap.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://host:8786")
    ap.add_argument("--out", type=Path, default=RESULTS / "quality")
    ap.add_argument("--no-plcmos", action="store_true", help="skip PLCMOS")
    ap.add_argument("--fast", action="store_true", help="DeepFilterNet3, two clips (VoiceBank + DNS4), chunk 7")
    ap.add_argument("--table", type=Path, default=None, help="summarise an existing quality.csv; compute nothing")
    ap.add_argument("--fresh", action="store_true", help="ignore OUT/quality.partial.csv (by default a study "
                    "resumes from it: every finished cell is appended there at once)")
    a = ap.parse_args(argv)

    if a.table is not None:
        summarise(qt.read_table(a.table), a.out)
        return 0
    models = a.models or (MODELS[:1] if a.fast else MODELS)
    names = a.clips or (["vb_p232_028", "dns4_street"] if a.fast else clips.clip_names("noisy"))
    chunks = a.chunks or ([7] if a.fast else list(study.CHUNKS))
    variants = a.variants or list(study.VARIANTS)
    cells = len(study.study_cells(models, names, chunks, variants))
    log(f"{cells} cells: {len(models)} model(s) × {len(variants)} variants × chunks {chunks} × {len(names)} clips")
    partial = a.out / "quality.partial.csv"
    if a.fresh and partial.exists():
        partial.unlink()
    t0 = time.time()
    rows = study.run_study(models, names, chunks, variants=variants, workers=a.workers, scheduler=a.scheduler,
                           export_root=RESULTS / "cache", plc=not a.no_plcmos, checkpoint=partial, say=log)
    wall = time.time() - t0
    paths = qt.write_table(rows, a.out)
    log(f"study: {len(rows)} cells in {wall:.0f} s wall ({sum(r['enhance_s'] for r in rows):.0f} s enhancing, "
        f"{sum(r['score_s'] for r in rows):.0f} s scoring, summed over workers)")
    for p in paths:
        log(f"wrote {p}")
    summarise(rows, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
