"""How far each runtime path is from the offline PyTorch reference, per model × variant × chunk size.

    .venv/bin/python benchmarks/fidelity.py           # 4 models, 5 variants + PyTorch stream, chunks 1/7/20, 7 clips
    .venv/bin/python benchmarks/fidelity.py --quick   # DeepFilterNet3, one clip

For each model, each exported variant (``stateless``, ``h0``, ``gru``, ``full``, ``step``; run by
:class:`dfnb.hosts.onnx.Host` in calls of ``chunk`` hops) and the exact PyTorch stream
(:class:`dfnb.streaming.Stream`), both run by :func:`dfnb.runtime.enhance`, on the real clips in
``../shared/data`` (the six VoiceBank-DEMAND noisy clips and the 10 s ``dfn_noisy_snr0``): SNR of the difference against
``enhance_offline(model, x).audio`` (worst clip and median over clips), max abs error (worst clip), and the
LSNR error (largest |difference| in dB between the path's per-frame lsnr and the offline probe
``enhance_offline(..., probes=True).lsnr``; for the naive variants the lsnr is what each call computes; "-"
when the path gives no comparable trace). Exact paths reach ≥ 90 dB; the naive ones show how much
statelessness costs at each chunk size. Writes ``benchmarks/results/fidelity.json``; exports are cached in
``benchmarks/results/cache/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (one BLAS thread, set before numpy loads)

# isort: split
import argparse
import json
import time

import numpy as np

from _common import RESULTS

MODELS = ["DeepFilterNet3", "DeepFilterNet2", "DeepFilterNet3_ll", "DeepFilterNet2_ll"]
VARIANTS = ["stateless", "h0", "gru", "full", "step"]
CHUNKS = [1, 7, 20]
CLIPS = ["vb_p232_013", "vb_p232_019", "vb_p232_028", "vb_p257_003", "vb_p257_049", "vb_p257_212", "dfn_noisy_snr0"]


def log(msg: str) -> None:
    print(msg, flush=True)


def lsnr_err(ref: np.ndarray | None, test: np.ndarray | None) -> float | None:
    if ref is None or test is None or len(test) < len(ref) // 2:
        return None
    n = min(len(ref), len(test))
    return float(np.max(np.abs(ref[:n] - test[:n])))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="DeepFilterNet3 and one clip only")
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--variants", nargs="*", default=None)
    ap.add_argument("--chunks", nargs="*", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    from dfnb import clips, metrics
    from dfnb.hosts.onnx import Host
    from dfnb.models import load_model
    from dfnb.offline import enhance_offline
    from dfnb.runtime import enhance
    from dfnb.streaming import Stream
    from latency import cached_export

    models = a.models or (["DeepFilterNet3"] if a.quick else MODELS)
    variants = a.variants or VARIANTS
    chunks = a.chunks or CHUNKS
    clip_names = CLIPS[:1] if a.quick else CLIPS
    audio = {c: clips.load_clip(c)[0] for c in clip_names}
    rows, detail = [], []
    t_start = time.time()
    for name in models:
        loaded = load_model(name)
        refs = {c: enhance_offline(loaded, x, probes=True) for c, x in audio.items()}
        paths = [(v, (lambda v=v, name=name: cached_export(name, v))) for v in variants] + [("torch-stream", None)]
        for variant, folder_fn in paths:
            folder = folder_fn() if folder_fn else None
            host = Host(folder, probes=True) if folder is not None else Stream(loaded, probes=True)
            for chunk in chunks:
                per = []
                for c, x in audio.items():
                    ref = refs[c]
                    y = enhance(host, x, chunk=chunk)
                    lt = host.trace.lsnr.astype(np.float64)
                    per.append({"model": name, "variant": variant, "chunk": chunk, "clip": c,
                                "snr_db": metrics.snr_of_difference(ref.audio, y),
                                "max_abs": metrics.max_abs_error(ref.audio, y),
                                "lsnr_err_db": lsnr_err(ref.lsnr, lt)})
                detail += per
                snrs = np.array([p["snr_db"] for p in per])
                le = [p["lsnr_err_db"] for p in per]
                rows.append({"model": name, "variant": variant, "chunk": chunk,
                             "snr_min_db": float(np.min(snrs)), "snr_median_db": float(np.median(snrs)),
                             "max_abs": float(max(p["max_abs"] for p in per)),
                             "lsnr_err_db": None if any(v is None for v in le) else float(max(le)),
                             "exact": bool(np.min(snrs) >= 90.0)})
                r = rows[-1]
                le = r["lsnr_err_db"]
                log(f"  {name:18s} {variant:13s} chunk {chunk:2d}: SNR min {r['snr_min_db']:7.2f} dB  "
                    f"max|e| {r['max_abs']:.2e}  lsnr err {le if le is None else round(le, 4)}")
    log(f"\nSNR of the difference against offline PyTorch ({len(clip_names)} clip(s); min = worst clip), "
        f"{time.time() - t_start:.0f} s")
    from dfnb.metrics import metrics_table

    log(metrics_table(rows, floatfmt=".3g"))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "fidelity.json").write_text(json.dumps({"clips": clip_names, "rows": rows, "per_clip": detail},
                                                    indent=2, default=float) + "\n")
    log(f"wrote {a.out / 'fidelity.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
