"""The ``dfnb`` command line: ``models``, ``enhance``, ``export``, ``inspect``, ``diagnose``, ``report``, ``demo``.

Every failure ends in one line on stderr that says what was wrong and what to do, and a distinct exit code:

====  ===============================================================
code  meaning
====  ===============================================================
0     success
1     other dfnb error
2     bad command line (argparse)
3     bad audio (missing, unreadable, empty, NaN/Inf, multichannel, …) or audio output
      path (folder missing/read-only, a folder, the input, not dfnb's, format/subtype)
4     weights or clip not found anywhere dfnb looks
5     sha256 mismatch
6     model cannot be built (unknown name, config/weights mismatch) or its import not
      written (the cache folder is not dfnb's)
7     broken model folder (missing/corrupt/mixed files)
8     export or output folder refused or failed (exists without --force, not dfnb's,
      the working folder, a file, unwritable)
9     bad streaming state (wrong shape, NaN, missing state input, runtime used by two threads)
10    a Python API argument of the wrong type or range (ArgumentError; not raised by the CLI)
70    unexpected internal error (rerun with --debug for the traceback)
130   interrupted
====  ===============================================================
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__
from .errors import DfnbError

__all__ = ["main", "build_parser"]

RUNTIMES = ("offline", "stream")
FEEDS = ("frame", "step", "h0", "window")  # dfnb.formats.FEEDS (kept literal: the parser imports nothing heavy)


def _models_dir() -> Path:
    from .assets import models_dir

    return models_dir()


def cmd_models(args) -> int:
    """List the models dfnb knows and where each one's weights come from."""
    from .errors import AssetNotFoundError, ChecksumError
    from .releases import MODEL_NAMES, find_release_tarball

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
            d = json.loads(m.read_text())
            print(f"  {m.parent}  ({d.get('model')}, variant {d.get('variant')})")
    return 0


def _runtime_for(args, is_folder: bool):
    """The runtime ``dfnb enhance`` runs and how to describe it."""
    if is_folder:
        if args.runtime not in (None, "offline", "host"):
            raise DfnbError(f"--runtime {args.runtime} needs a model name, not a folder; omit --runtime to run the "
                            "folder with the onnxruntime host.")
        from .hosts.pipeline import open_folder

        kw = {"per_call_offline": True, "reset_dsp": args.reset_dsp} if args.per_call_offline else {}
        rt = open_folder(args.model, feed=args.feed, window=args.window, host=args.host, **kw)
        if getattr(rt, "info", None) is not None and rt.info.unverified_keys:
            print(f"dfnb enhance: note: config.ini values that {args.model}'s graphs do not hold and no manifest.json "
                  f"records are used as written: {', '.join(rt.info.unverified_keys)} (`dfnb inspect` says why).",
                  file=sys.stderr)
        return rt, rt.label
    if args.feed is not None or args.window is not None:
        raise DfnbError(f"--feed/--window run a model folder as a host feeds it; {args.model} is not a folder of "
                        "ONNX files. Export one (dfnb export) or pass a folder.")
    from .models import load_model

    m = load_model(args.model)
    if (args.runtime or "offline") == "stream":
        from .streaming import Stream

        return Stream(m), "PyTorch streaming step"
    from .offline import BlockOffline

    return BlockOffline(m), "PyTorch offline (5 s blocks, every state carried)"


def cmd_enhance(args) -> int:
    """Enhance an audio file into another, block by block (flat memory, any length); the output has the input's
    length and sample rate and is time-aligned with it.

    The output path (folder, permissions, format and subtype, not the input, not someone else's file) and the
    input's header (exists, readable, channels, rate) are checked before a model is loaded."""
    from .audio import AudioReader, check_output
    from .files import enhance_file

    for flag, v, unit in (("--chunk", args.chunk, "hops"), ("--window", args.window, "frames")):
        if v is not None and v < 1:
            raise DfnbError(f"{flag} must be a positive number of {unit}, got {v}.")
    out = Path(args.output)
    if out.exists() and not args.force:
        raise DfnbError(f"{out} already exists; pass --force to overwrite it or choose another output path.")
    check_output(out, subtype=args.subtype, overwrite=args.force, sources=[args.input])
    with AudioReader(args.input, downmix=args.downmix):
        pass
    is_folder = Path(args.model).is_dir() and any(Path(args.model).glob("*.onnx"))
    rt, how = _runtime_for(args, is_folder)
    chunk = args.chunk or rt.default_chunk
    r = enhance_file(rt, args.input, out, chunk=chunk, subtype=args.subtype, overwrite=args.force,
                     downmix=args.downmix, progress=not args.quiet)
    note = (f", {r.clipped} samples clipped to full scale (--subtype FLOAT in a .wav keeps them)"
            if r.clipped else "")
    print(f"wrote {out} ({r.duration:.2f} s at {r.sr} Hz, {r.subtype}{note}; {how}, chunk {chunk}; "
          f"{r.seconds:.2f} s, RTF {r.seconds / max(r.duration, 1e-9):.3f})")
    return 0


def cmd_export(args) -> int:
    """Export a model (or any recognised folder's weights, ``--from``) as an ONNX folder of one variant. An
    explicit --out (or the default folder of a model name) is checked before the model is loaded."""
    from .export import default_folder, export_model
    from .models import load_model
    from .placement import check_target
    from .releases import MODEL_NAMES

    if args.precision and (args.variant != "step" or args.streams):
        raise DfnbError("--precision needs --variant step (single stream, without --streams).")
    if args.source and (args.streams or args.precision):
        raise DfnbError("--from exports the plain variants; export the converted folder first, then --streams or "
                        "--precision from it.")
    suffix = {"streams": args.streams, "precision": args.precision}  # e.g. models/dfn3_step_b32
    named = args.model in MODEL_NAMES and not args.source
    out = Path(args.out) if args.out else \
        (default_folder(args.model, args.variant, _models_dir(), **suffix) if named else None)
    if out is not None:
        check_target(out, folder=True, replace=args.force,
                     sources=[_models_dir() / args.model] if named else [Path(args.source or args.model)])
    if args.source:
        from .convert import convert_folder

        m = convert_folder(args.source)
    else:
        m = load_model(args.model)
    out = out or default_folder(m.name, args.variant, _models_dir(), **suffix)
    t0 = time.perf_counter()
    if args.precision:
        from .precision import export_precision

        fid = json.loads((export_precision(m, out, args.precision, force=args.force) / "manifest.json").read_text())
        print(f"exported {m.name} step in {args.precision} to {out} in {time.perf_counter() - t0:.1f} s; SNR of the "
              f"difference to offline float32: {fid['fidelity']['snr_db_vs_offline_fp32']:.1f} dB "
              f"on {fid['fidelity']['clip']} (see {out / 'manifest.json'})")
        return 0
    export_model(m, args.variant, out, force=args.force, streams=args.streams)
    print(f"exported {m.name} variant {args.variant}{f' for {args.streams} streams' if args.streams else ''} to "
          f"{out} in {time.perf_counter() - t0:.1f} s "
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


def cmd_inspect(args) -> int:
    """Describe a model folder (any format dfnb recognises) and check it is complete and consistent."""
    from .diagnose import format_lines
    from .errors import ModelFolderError
    from .folder import inspect_folder
    from .formats import recognise

    try:
        info = inspect_folder(args.folder)
    except ModelFolderError as e:  # not a folder dfnb's hosts run: maybe another pipeline's format
        try:
            fmt = recognise(args.folder)
        except DfnbError:
            raise e from None
        if "frame" in fmt.feeds:
            raise
        print("\n".join([f"folder:   {fmt.path}", *format_lines(fmt),
                         "status:   recognised; dfnb's hosts do not run this format: `dfnb enhance --model FOLDER` "
                         f"runs it as {fmt.feeds[0]!r}, `dfnb export --from FOLDER --variant full` converts it "
                         "exactly"]))
        return 0
    print(f"folder:   {info.path}")
    print(f"variant:  {info.variant}   family: {info.family}   model: "
          f"{(info.manifest or {}).get('model', '(no manifest.json: upstream-style folder)')}")
    print(f"delay:    {info.delay_samples} samples ({info.delay_samples / info.cfg.sr * 1000:.0f} ms) in dfnb's "
          f"host (conv_lookahead {info.conv_lookahead}, df_lookahead {info.df_lookahead})")
    for f, io in info.io.items():
        print(f"{f}:")
        for kind in ("inputs", "outputs"):
            print(f"  {kind}: " + ", ".join(f"{n} {list(s)}" for n, s, _ in io[kind]))
    states = info.layout.for_variant(info.variant)
    print("states:   " + (", ".join(f"{d.io[0]}->{d.io[1]} {list(d.shape)}" for d in states) if states else
                          "none (every call starts from zero state)"))
    print("host keeps: " + ", ".join(f"{d.name} {list(d.shape)}" for d in info.layout.host_states(info.variant)))
    print("\n".join(format_lines(recognise(args.folder), io=False)))
    for u in info.unverified:
        print(f"unverified: {u}")
    print("status:   " + ("complete and consistent" if not info.unverified else
                          f"consistent with everything its graphs hold; the {len(info.unverified)} item(s) above are "
                          "unverified"))
    return 0


def cmd_diagnose(args) -> int:
    """Why a folder, fed as its own host does, differs from offline PyTorch: SNR per cause and the fix."""
    from .diagnose import diagnose, save_diagnosis

    if args.window is not None and args.window < 1:
        raise DfnbError(f"--window must be a positive number of frames, got {args.window}.")
    d = diagnose(args.folder, clip=args.clip, feed=args.feed, window=args.window,
                 say=lambda m: print(f"... {m}", file=sys.stderr))
    print("\n".join(d.lines()))
    out = Path(args.out) if args.out else Path("out") / f"diagnose_{Path(args.folder).resolve().name}"
    js, png = save_diagnosis(d, out)
    print(f"wrote {js} and {png} ({d.seconds:.0f} s)")
    return 0


def cmd_report(args) -> int:
    """Render notebooks as shareable HTML; with --clip/--folder, the fidelity report of the user's clip and folder."""
    import sys

    from .report import run

    return run(args, ["dfnb", *sys.argv[1:]])


def cmd_demo(args) -> int:
    """The main job (what `make demo` runs); its --out folder and files are checked before any work."""
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
    from .audio import OUTPUT_SUBTYPES

    p = _Parser(prog="dfnb", description="DeepFilterNet investigation kit: exact streaming and "
                                "stateful ONNX exports. Exit codes: see `python -c 'import dfnb.cli; help(dfnb.cli)'`.")
    p.add_argument("--version", action="version", version=f"dfnb {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("models", help="list models and where their weights come from")
    s.set_defaults(func=cmd_models)
    s = sub.add_parser("enhance", help="enhance an audio file of any length, block by block (output: same length, "
                                       "time-aligned)")
    s.add_argument("input", help="input audio file (any sample rate; mono, or use --downmix)")
    s.add_argument("output", help="output .wav or .flac (refused if it exists, unless --force and dfnb wrote it)")
    s.add_argument("--model", default="DeepFilterNet3",
                   help="a model name (DeepFilterNet3, DeepFilterNet2, DeepFilterNet3_ll, DeepFilterNet2_ll) or an "
                        "exported folder (run with the onnxruntime host)")
    s.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="for a model name: offline (default: the full-sequence model run over 5 s blocks with "
                        "every state carried) or stream (PyTorch streaming step)")
    s.add_argument("--chunk", type=int, default=None,
                   help="hops (10 ms) per runtime call (default 1 for stream/host runtimes, 500 for offline)")
    s.add_argument("--host", choices=("auto", "onnx", "fast"), default="auto",
                   help="for a folder: auto (default: the fastest exact host that serves it), onnx (the general "
                        "onnxruntime host) or fast (step folders)")
    s.add_argument("--per-call-offline", action="store_true",
                   help="host: run each call as a whole file (shows the lost lookahead of a naive host)")
    s.add_argument("--reset-dsp", action="store_true", help="host with --per-call-offline: reset STFT/norms per call")
    s.add_argument("--downmix", action="store_true", help="average the channels of a multichannel input")
    s.add_argument("--subtype", choices=OUTPUT_SUBTYPES, default=None,
                   help="sample format of the output: FLOAT (default for .wav: exact, overs kept), PCM_24 (default "
                        "for .flac), PCM_16; PCM clips to full scale")
    s.add_argument("--force", action="store_true", help="overwrite the output file if dfnb wrote it")
    s.add_argument("--quiet", action="store_true", help="no progress bar (shown on a terminal for inputs >= 30 s)")
    s.add_argument("--feed", choices=FEEDS, default=None,
                   help="for a folder: feed it as deepfilter-rt does (step, h0, window) or as dfnb's host (frame); "
                        "default: the folder's own host (see `dfnb inspect`)")
    s.add_argument("--window", type=int, default=None, help="with --feed: T, feature frames per model call")
    s.set_defaults(func=cmd_enhance)
    s = sub.add_parser("export", help="export a model as an ONNX folder (stateless, h0, gru, full, step)")
    s.add_argument("--model", default="DeepFilterNet3", help="model name (see `dfnb models`) or a checkpoint folder")
    s.add_argument("--variant", required=True, choices=("stateless", "h0", "gru", "full", "step"))
    s.add_argument("--from", dest="source", default=None, metavar="FOLDER",
                   help="take the weights from any ONNX folder dfnb recognises (e.g. deepfilter-rt's) instead")
    s.add_argument("--out", default=None,
                   help="target folder (default models/<short>_<variant>[_b<N>][_<precision>], e.g. models/dfn3_h0)")
    s.add_argument("--force", action="store_true",
                   help="replace the target folder if it is a dfnb export or import (never anything else)")
    s.add_argument("--streams", type=int, default=None, metavar="N",
                   help="step only: a batched graph that advances N streams per call (dfnb.hosts.batched)")
    s.add_argument("--precision", choices=("fp16", "int8-dynamic", "int8-static"), default=None,
                   help="step only: reduced-precision weights; the manifest records the measured fidelity "
                        "(dfnb.precision)")
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
    s = sub.add_parser("report", help="fidelity report of your clip through your folder (--clip, --folder), or "
                                      "the notebooks, as self-contained HTML")
    from .report import add_arguments

    add_arguments(s)
    s.set_defaults(func=cmd_report)
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
    except Exception as e:  # one line, not a stack trace, unless --debug
        if _caused_by_interrupt(e):  # e.g. Ctrl-C inside a C extension's import: "ImportError: initialization failed"
            print(f"dfnb {args.command}: interrupted", file=sys.stderr)
            return 130
        if args.debug:
            raise
        print(f"dfnb {args.command}: unexpected error: {type(e).__name__}: {_one_line(e)}. This is a dfnb bug; "
              "rerun with --debug and report the traceback.", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
