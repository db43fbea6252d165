"""The ``dfnb`` command line: ``models``, ``enhance``, ``export``, ``inspect``, ``diagnose``, ``demo``.

Every failure ends in one line on stderr that says what was wrong and what to do, and a distinct exit code:

====  ===============================================================
code  meaning
====  ===============================================================
0     success
1     other dfnb error
2     bad command line (argparse)
3     bad audio (missing, unreadable, empty, NaN/Inf, multichannel, …)
4     weights or clip not found anywhere dfnb looks
5     sha256 mismatch
6     model cannot be built (unknown name, config/weights mismatch)
7     broken model folder (missing/corrupt/mixed files)
8     export refused or failed (exists without --force, unwritable)
9     bad streaming state (wrong shape, missing state input)
70    unexpected internal error (rerun with --debug for the traceback)
130   interrupted
====  ===============================================================

Notebook: 00_tour
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .errors import DfnbError

__all__ = ["main", "build_parser"]

RUNTIMES = ("offline", "stream")
FEEDS = ("frame", "step", "h0", "window")  # dfnb.formats.FEEDS (kept literal: the parser imports nothing heavy)


def _models_dir() -> Path:
    from .models import _models_dir as md

    return md(None)


def cmd_models(args) -> int:
    """List the models dfnb knows and where each one's weights come from."""
    from .errors import AssetNotFoundError, ChecksumError
    from .models import MODEL_NAMES, find_release_tarball

    mdir = _models_dir()
    print(f"{'model':<20} {'weights from':<70} imported")
    for name in MODEL_NAMES:
        try:
            path, sha = find_release_tarball(name)
            where = f"{path} (sha256 {sha[:12]}… ok)"
        except (AssetNotFoundError, ChecksumError) as e:
            where = f"not available: {str(e).splitlines()[0][:60]}"
        cached = mdir / name / "provenance.json"
        print(f"{name:<20} {where:<70} {'yes: ' + str(mdir / name) if cached.exists() else 'no'}")
    exports = sorted(p for p in mdir.glob("*/manifest.json")) if mdir.is_dir() else []
    if exports:
        print("\nexported folders:")
        for m in exports:
            import json

            d = json.loads(m.read_text())
            print(f"  {m.parent}  ({d.get('model')}, variant {d.get('variant')})")
    return 0


def _read_input(path: str, downmix: bool):
    from .audio import read_audio

    return read_audio(path, downmix=downmix)


def _pipeline_enhance(args, x48, fmt=None):
    """Run a folder as deepfilter-rt feeds it (dfnb.hosts.pipeline)."""
    from .hosts.pipeline import open_pipeline
    from .runtime import enhance

    h = open_pipeline(fmt or args.model, feed=args.feed, window=args.window)
    return enhance(h, x48, chunk=args.chunk), f"{h.label}, T={h.T} frames, delay {h.delay_samples} samples removed"


def _enhance_48k(args, x48, is_folder: bool):
    if is_folder:
        if args.runtime not in (None, "offline", "host"):
            raise DfnbError(f"--runtime {args.runtime} needs a model name, not a folder; omit --runtime to run the "
                            "folder with the onnxruntime host.")
        if args.feed not in (None, "frame"):
            return _pipeline_enhance(args, x48)
        if args.window is not None:
            from .formats import recognise

            fmt = recognise(args.model, weights=False)
            if "frame" in fmt.feeds:
                raise DfnbError("--window sets T of deepfilter-rt's feedings: add --feed step|h0|window (dfnb's host "
                                "feeds one hop per call; --chunk sets the hops per call).")
            return _pipeline_enhance(args, x48, fmt)
        from .errors import ModelFolderError
        from .host import host_enhance

        try:
            return host_enhance(args.model, x48, chunk=args.chunk, per_call_offline=args.per_call_offline,
                                reset_dsp=args.reset_dsp), f"onnxruntime host, chunk {args.chunk}"
        except ModelFolderError as e:  # not a folder dfnb's host runs: maybe another pipeline's format
            from .formats import recognise

            try:
                fmt = recognise(args.model, weights=False)
            except DfnbError:
                raise e from None
            if args.feed == "frame" or "frame" in fmt.feeds:
                raise
            return _pipeline_enhance(args, x48, fmt)
    if args.feed is not None or args.window is not None:
        raise DfnbError(f"--feed/--window run a model folder as a host feeds it; {args.model} is not a folder of "
                        "ONNX files. Export one (dfnb export) or pass a folder.")
    from .models import load_model

    m = load_model(args.model)
    if (args.runtime or "offline") == "stream":
        from .streaming import stream_enhance

        y, _ = stream_enhance(m, x48, chunk=args.chunk)
        return y, f"PyTorch streaming step, chunk {args.chunk}"
    from .offline import enhance_offline

    return enhance_offline(m, x48).audio, "PyTorch offline (full sequence)"


def cmd_enhance(args) -> int:
    """Enhance a wav file; the output has the input's length and sample rate and is time-aligned with it."""
    import numpy as np

    from .audio import MODEL_SR, resample, write_audio

    if args.chunk < 1:
        raise DfnbError(f"--chunk must be a positive number of hops, got {args.chunk}.")
    out = Path(args.output)
    if out.exists() and not args.force:
        raise DfnbError(f"{out} already exists; pass --force to overwrite it or choose another output path.")
    x, sr = _read_input(args.input, args.downmix)
    x48 = resample(x, sr, MODEL_SR) if sr != MODEL_SR else x
    is_folder = Path(args.model).is_dir() and any(Path(args.model).glob("*.onnx"))
    t0 = time.perf_counter()
    y48, how = _enhance_48k(args, x48, is_folder)
    dt = time.perf_counter() - t0
    y = resample(y48, MODEL_SR, sr) if sr != MODEL_SR else y48
    y = y[: len(x)] if len(y) >= len(x) else np.concatenate([y, np.zeros(len(x) - len(y), np.float32)])
    write_audio(out, y, sr, overwrite=args.force)
    print(f"wrote {out} ({len(y) / sr:.2f} s at {sr} Hz; {how}; {dt:.2f} s, RTF {dt / (len(x) / sr):.3f})")
    return 0


def cmd_export(args) -> int:
    """Export a model (or any recognised folder's weights, ``--from``) as an ONNX folder of one variant."""
    from .export import default_folder, export_model
    from .models import load_model

    if args.source:
        from .convert import convert_folder

        m = convert_folder(args.source)
    else:
        m = load_model(args.model)
    out = Path(args.out) if args.out else default_folder(m.name, args.variant, _models_dir())
    t0 = time.perf_counter()
    export_model(m, args.variant, out, force=args.force)
    print(f"exported {m.name} variant {args.variant} to {out} in {time.perf_counter() - t0:.1f} s "
          f"(verified against PyTorch; see {out / 'manifest.json'})")
    if args.source:
        import tempfile

        from .diagnose import check_conversion

        with tempfile.TemporaryDirectory(prefix="dfnb-check-") as tmp:
            full = out if args.variant == "full" else export_model(m, "full", Path(tmp) / "full")
            db = check_conversion(args.source, full)
        print(f"conversion checked: {args.source} run as its own host does equals the same feeding on the "
              f"converted weights to {db:.0f} dB")
    return 0


def _print_format(fmt, io: bool = True) -> None:
    from .hosts.pipeline_fixes import CAUSES, causes_for, describe

    print(f"format:   {fmt.format} -- {fmt.origin}"
          + (f" (also holds: {', '.join(fmt.alternatives)})" if fmt.alternatives else ""))
    print(f"model:    {fmt.family}; from the graphs: "
          + ", ".join(f"{k}={v}" for k, v in fmt.sizes.items() if k != "parts"))
    print(f"weights:  {fmt.weights.summary() if fmt.weights is not None else 'not compared'}")
    for f in dict.fromkeys(fmt.files.values()) if io else ():
        print(f"{f}: inputs " + ", ".join(f"{n} {s}" for n, s in fmt.io[f]["inputs"].items())
              + "; outputs " + ", ".join(f"{n} {s}" for n, s in fmt.io[f]["outputs"].items()))
    print("carries:  " + (", ".join(f"{s.input}->{s.output} {list(s.shape)} ({s.group})" for s in fmt.states)
                          or "no state (every call starts from zero state)"))
    missing = [g for g in ("h0", "erb_h0", "df_h0") if g not in {s.input for s in fmt.states}]
    for feed in fmt.feeds:
        t = fmt.window.get(feed, 1)
        print(f"feeding:  {feed}{f', T={t}' if feed in fmt.window else ''}{' (its own)' if feed == fmt.feeds[0] else ''}"
              f": delay {fmt.delay(feed)} samples; a host keeps " + "; ".join(fmt.host_keeps(feed)))
        if fmt.config is not None and not (feed == "frame" and fmt.format in ("full", "step")):
            for c in causes_for(feed, fmt.carries, fmt.config, t):
                print(f"  differs from offline: {describe(c, CAUSES, config=fmt.config, window=t, missing=missing)}")
    for p in fmt.problems:
        print(f"warning:  {p}")


def cmd_inspect(args) -> int:
    """Describe a model folder (any format dfnb recognises) and check it is complete and consistent."""
    from .errors import ModelFolderError
    from .formats import recognise
    from .host import Host

    try:
        h = Host(args.folder)
    except ModelFolderError as e:  # not a folder dfnb's host runs: maybe another pipeline's format
        try:
            fmt = recognise(args.folder)
        except DfnbError:
            raise e from None
        if "frame" in fmt.feeds:
            raise
        print(f"folder:   {fmt.path}")
        _print_format(fmt)
        print("status:   recognised; dfnb's host does not run this format: `dfnb enhance --model FOLDER` runs it "
              f"as {fmt.feeds[0]!r}, `dfnb export --from FOLDER --variant full` converts it exactly")
        return 0
    info = h.info
    print(f"folder:   {info.path}")
    print(f"variant:  {info.variant}   family: {info.family}   model: "
          f"{(info.manifest or {}).get('model', '(no manifest.json: upstream-style folder)')}")
    print(f"delay:    {h.delay_samples} samples ({h.delay_samples / info.cfg.sr * 1000:.0f} ms) in dfnb's host "
          f"(conv_lookahead {info.conv_lookahead}, df_lookahead {info.df_lookahead})")
    for f, io in info.io.items():
        print(f"{f}:")
        for kind in ("inputs", "outputs"):
            print(f"  {kind}: " + ", ".join(f"{n} {list(s)}" for n, s, _ in io[kind]))
    states = [(i, o, s) for pairs in h._state_io.values() for i, o, s in pairs]
    print("states:   " + (", ".join(f"{i}->{o} {list(s)}" for i, o, s in states) if states else
                          "none (every call starts from zero state)"))
    _print_format(recognise(args.folder), io=False)
    print("status:   complete and consistent")
    return 0


def cmd_diagnose(args) -> int:
    """Why a folder, fed as its own host does, differs from offline PyTorch: SNR per cause and the fix."""
    from .diagnose import diagnose, save_diagnosis

    d = diagnose(args.folder, clip=args.clip, feed=args.feed, window=args.window,
                 say=lambda m: print(f"... {m}", file=sys.stderr))
    print("\n".join(d.lines()))
    out = Path(args.out) if args.out else Path("out") / f"diagnose_{Path(args.folder).resolve().name}"
    js, png = save_diagnosis(d, out)
    print(f"wrote {js} and {png} ({d.seconds:.0f} s)")
    return 0


def cmd_demo(args) -> int:
    """The main job (what `make demo` runs)."""
    from .demo import run_demo

    return run_demo(out_dir=Path(args.out), quick=args.quick)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage stays in --help), like every other dfnb failure."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`.\n")


def _one_line(e: BaseException) -> str:
    """A message on one line: multi-line messages (e.g. every place tried for weights) joined with spaces."""
    return " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())


def _caused_by_interrupt(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in ``e``'s chain of causes (some C extensions wrap it in another error)."""
    seen: set = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dfnb", description="DeepFilterNet investigation kit: exact streaming and "
                                "stateful ONNX exports. Exit codes: see `python -c 'import dfnb.cli; help(dfnb.cli)'`.")
    p.add_argument("--version", action="version", version=f"dfnb {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("models", help="list models and where their weights come from")
    s.set_defaults(func=cmd_models)
    s = sub.add_parser("enhance", help="enhance a wav file (output: same length, time-aligned)")
    s.add_argument("input", help="input audio file (any sample rate; mono, or use --downmix)")
    s.add_argument("output", help="output wav (refused if it exists, unless --force)")
    s.add_argument("--model", default="DeepFilterNet3",
                   help="a model name (DeepFilterNet3, DeepFilterNet2, DeepFilterNet3_ll, DeepFilterNet2_ll) or an "
                        "exported folder (run with the onnxruntime host)")
    s.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="for a model name: offline (default, full sequence) or stream (PyTorch streaming step)")
    s.add_argument("--chunk", type=int, default=1, help="hops per call for stream/host runtimes (default 1)")
    s.add_argument("--per-call-offline", action="store_true",
                   help="host: run each call as a whole file (shows the lost lookahead of a naive host)")
    s.add_argument("--reset-dsp", action="store_true", help="host with --per-call-offline: reset STFT/norms per call")
    s.add_argument("--feed", choices=FEEDS, default=None,
                   help="for a folder: feed it as deepfilter-rt does (step, h0, window) or as dfnb's host (frame); "
                        "default: the folder's own host (see `dfnb inspect`)")
    s.add_argument("--window", type=int, default=None, help="with --feed: T, feature frames per model call")
    s.add_argument("--downmix", action="store_true", help="average the channels of a multichannel input")
    s.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    s.set_defaults(func=cmd_enhance)
    s = sub.add_parser("export", help="export a model as an ONNX folder (stateless, h0, gru, full, step)")
    s.add_argument("--model", default="DeepFilterNet3", help="model name (see `dfnb models`) or a checkpoint folder")
    s.add_argument("--from", dest="source", default=None, metavar="FOLDER",
                   help="take the weights from any ONNX folder dfnb recognises (e.g. deepfilter-rt's) instead")
    s.add_argument("--variant", required=True, choices=("stateless", "h0", "gru", "full", "step"))
    s.add_argument("--out", default=None, help="target folder (default models/<short>_<variant>, e.g. models/dfn3_h0)")
    s.add_argument("--force", action="store_true", help="replace the target folder if it exists")
    s.set_defaults(func=cmd_export)
    s = sub.add_parser("inspect", help="describe a model folder and check it is complete and consistent")
    s.add_argument("folder")
    s.set_defaults(func=cmd_inspect)
    s = sub.add_parser("diagnose", help="why a folder, fed as its own host does, differs from offline (and the fix)")
    s.add_argument("folder")
    s.add_argument("--clip", default="vb_p232_013", help="a clip name (dfnb.clips) or an audio file")
    s.add_argument("--feed", choices=FEEDS, default=None, help="the feeding to diagnose (default: the folder's own)")
    s.add_argument("--window", type=int, default=None, help="T, feature frames per model call")
    s.add_argument("--out", default=None, help="where diagnose.json/png go (default out/diagnose_<folder>)")
    s.set_defaults(func=cmd_diagnose)
    s = sub.add_parser("demo", help="the main job: enhance a clip, export dfn3_h0 + full, print the fidelity table")
    s.add_argument("--out", default="out", help="where wavs and PNGs go (default ./out)")
    s.add_argument("--quick", action="store_true", help="shorter run (one chunk size)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DfnbError as e:
        print(f"dfnb {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"dfnb {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 — one line, not a stack trace, unless --debug
        if _caused_by_interrupt(e):  # e.g. Ctrl-C inside a C extension's import: "ImportError: initialization failed"
            print(f"dfnb {args.command}: interrupted", file=sys.stderr)
            return 130
        if args.debug:
            raise
        print(f"dfnb {args.command}: unexpected error: {type(e).__name__}: {_one_line(e)}. This is a dfnb bug; rerun with "
              "--debug and report the traceback.", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
