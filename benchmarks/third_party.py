"""Third-party folders (deepfilter-rt's layouts, built from the official releases) × model: what ``dfnb inspect``
says, the SNR of the difference of the emulated feeding against offline, the causes ``dfnb diagnose`` finds
(fixed alone / all but it), and the SNR of the converted exact export.

    .venv/bin/python benchmarks/third_party.py            # DeepFilterNet3 + DeepFilterNet3_ll, vb_p232_013
    .venv/bin/python benchmarks/third_party.py --quick    # DeepFilterNet3, split streaming only, vb_p232_028

Prints a markdown table and writes ``benchmarks/results/third_party.json``. The layouts are built into a
temporary folder by :mod:`dfnb.thirdparty` (our own surgery and exports; nothing downloaded).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import argparse
import json
import tempfile
import time

import _common  # noqa: F401  (one BLAS thread, set before numpy loads)
from _common import RESULTS

KINDS = ["split-streaming", "combined-streaming", "combined", "h0", "h0-dynamo", "upstream", "dfnb-h0"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _save(clip: str, rows: list[dict]) -> list[dict]:
    """Write the rows to benchmarks/results/third_party.json; a partial run (--models/--kinds) on the same clip
    replaces its own rows and keeps the others. Returns all rows, in table order."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "third_party.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    if old.get("clip") == clip:
        done = {(r["model"], r["layout"]) for r in rows}
        rows = [r for r in old["rows"] if (r["model"], r["layout"]) not in done] + rows
    keys = [(m, k) for m in ("DeepFilterNet3", "DeepFilterNet3_ll") for k in KINDS]
    order = {key: i for i, key in enumerate(keys)}
    rows = sorted(rows, key=lambda r: order.get((r["model"], r["layout"]), 99))
    path.write_text(json.dumps({"clip": clip, "rows": rows}, indent=2) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clip", default=None)
    ap.add_argument("--models", nargs="*", default=None, help="subset of models")
    ap.add_argument("--kinds", nargs="*", default=None, help=f"subset of layouts ({', '.join(KINDS)})")
    args = ap.parse_args(argv)
    import soundfile as sf
    import torch

    from dfnb import clips, metrics
    from dfnb.convert import convert_folder
    from dfnb.diagnose import diagnose
    from dfnb.errors import DfnbError
    from dfnb.export import export_model
    from dfnb.formats import recognise
    from dfnb.hosts import open_host
    from dfnb.models import load_model
    from dfnb.offline import enhance_offline
    from dfnb.releases import find_release_tarball
    from dfnb.runtime import enhance
    from dfnb.thirdparty import build_folder

    torch.set_num_threads(1)
    models = args.models or (["DeepFilterNet3"] if args.quick else ["DeepFilterNet3", "DeepFilterNet3_ll"])
    kinds = args.kinds or (["split-streaming"] if args.quick else KINDS)
    clip = args.clip or ("vb_p232_028" if args.quick else "vb_p232_013")
    x, sr = clips.load_clip(clip)
    work = Path(tempfile.mkdtemp(prefix="dfnb_third_party_"))
    sf.write(work / "clip.wav", x, sr)
    rows = []
    for name in models:
        m = load_model(name)
        ref = enhance_offline(m, x).audio
        exact = export_model(m, "full", work / f"{name}_full")
        rel, _ = find_release_tarball(name)
        for kind in kinds:
            t0 = time.perf_counter()
            out = work / f"{name}_{kind}"
            try:
                if kind == "dfnb-h0":
                    export_model(m, "h0", out)
                else:
                    build_folder(kind, out, release=rel, loaded=m)
            except DfnbError as e:  # e.g. the dynamo exporter on DeepFilterNet3_ll's encoder
                log(f"{name} {kind}: not built ({e})")
                rows.append({"model": name, "layout": kind, "not_built": str(e)})
                _save(clip, rows[-1:])
                continue
            fmt = recognise(out)
            log(f"{name} {kind}: {fmt.format}, feeding {fmt.feeds[0]}")
            d = diagnose(fmt, clip=work / "clip.wav", loaded=m, exact_folder=exact)
            conv = export_model(convert_folder(fmt), "full", work / f"{name}_{kind}_converted")
            conv_db = metrics.snr_of_difference(ref, enhance(open_host(conv), x))
            row = {"model": name, "layout": kind, "format": fmt.format, "origin": fmt.origin, "feed": d.feed,
                   "T": d.window, "delay": fmt.delay(), "carries": list(fmt.carries),
                   "weights": fmt.weights.tarball if fmt.weights.equal else None,
                   "emulated_db": d.emulated_db, "agreement_db": d.agreement_db, "all_fixed_db": d.all_fixed_db,
                   "causes": [{"name": c.name, "alone_db": c.alone_db, "all_but_db": c.all_but_db,
                               "needed": c.needed} for c in d.causes],
                   "converted_db": conv_db, "seconds": time.perf_counter() - t0}
            rows.append(row)
            _save(clip, [row])
            log(f"  emulated {d.emulated_db:.1f} dB, needed {[c.name for c in d.causes if c.needed]}, "
                f"all fixed {d.all_fixed_db:.1f}, converted {conv_db:.1f} dB ({row['seconds']:.0f} s)")
    rows = _save(clip, rows)
    print(f"clip {clip}; SNR of the difference vs offline PyTorch with the same weights (dB)\n")
    print("| model | layout | inspect: format, own feeding (T), carries, weights | emulated | causes: fixed alone / "
          "all but (needed*) | all fixed | converted full |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "not_built" in r:
            print(f"| {r['model']} | {r['layout']} | not built: {r['not_built'][:90]} | | | | |")
            continue
        causes = ", ".join(f"{c['name']}{'*' if c['needed'] else ''} {c['alone_db']:.1f}/{c['all_but_db']:.1f}"
                           for c in r["causes"])
        print(f"| {r['model']} | {r['layout']} | {r['format']}, {r['feed']} (T={r['T']}), "
              f"{' '.join(r['carries']) or '-'}, {'= ' + r['weights'] if r['weights'] else 'other weights'} | "
              f"{r['emulated_db']:.1f} | {causes} | {r['all_fixed_db']:.1f} | {r['converted_db']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
