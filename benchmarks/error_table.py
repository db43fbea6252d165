"""Every bad input dfnb is hardened against, run through the real ``dfnb`` command: its exact message and exit code.

    .venv/bin/python benchmarks/error_table.py            # run every case, print the markdown tables
    .venv/bin/python benchmarks/error_table.py --write    # ... and write docs/errors.md

Each CLI case builds its bad input in a temporary folder and runs the installed ``dfnb`` console script in a
subprocess, so exit codes and stderr are what a shell sees (paths are shown as ``<tmp>``/``<repo>``). The
Python-API cases call the public functions in this process and record the exception class and message.
``tests/test_cli.py`` runs the same :data:`CASES` (and checks each expected exit code, the one-line stderr
and the expected phrase), so this table cannot drift from the code.

The exported DeepFilterNet3 folders the cases break (``full``, ``h0``, ``step``) come from
``benchmarks/results/cache/`` (exported once, reused; the same cache as the other benchmarks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "benchmarks" / "results" / "cache"
DOC = REPO / "docs" / "errors.md"
SR = 48000
RELEASES = REPO.parent / "shared" / "models" / "onnx-official"


# ----------------------------------------------------------------------------------------------------------
# The context a case builds its input in
# ----------------------------------------------------------------------------------------------------------
class Ctx:
    """A scratch folder plus the exported DeepFilterNet3 folders (``folders[variant]``, never modified)."""

    def __init__(self, work: Path, folders: dict[str, Path]):
        self.work = Path(work)
        self.folders = {k: Path(v) for k, v in folders.items()}
        self._n = 0

    def path(self, name: str) -> Path:
        """A fresh path in a fresh sub-folder (cases never see each other's files)."""
        self._n += 1
        d = self.work / f"case{self._n:02d}"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def wav(self, data, sr: int = SR, subtype: str = "FLOAT", name: str = "in.wav") -> Path:
        import soundfile as sf

        p = self.path(name)
        sf.write(str(p), np.asarray(data), sr, subtype=subtype)
        return p

    def out(self) -> Path:
        return self.path("out.wav")

    @staticmethod
    def noise(seconds: float = 0.5, sr: int = SR, amp: float = 0.1, channels: int = 1) -> np.ndarray:
        n = int(seconds * sr)
        rng = np.random.default_rng(0)
        x = (amp * rng.standard_normal((n, channels))).astype(np.float32)
        return x[:, 0] if channels == 1 else x

    def folder(self, variant: str = "full", *, drop: tuple = (), replace: dict | None = None) -> Path:
        """A copy of an exported folder with files dropped or replaced (``{name: source path or bytes}``)."""
        dst = self.path(f"dfn3_{variant}")
        shutil.rmtree(dst.parent)
        shutil.copytree(self.folders[variant], dst)
        for f in drop:
            (dst / f).unlink()
        for f, src in (replace or {}).items():
            if isinstance(src, bytes):
                (dst / f).write_bytes(src)
            else:
                shutil.copyfile(src, dst / f)
        return dst

    def release(self, model: str) -> Path:
        """The official release folder of ``model`` (enc/erb_dec/df_dec.onnx + config.ini), unpacked once."""
        from dfnb.releases import RELEASE_TARBALLS

        dst = self.work / "releases" / model
        if not dst.is_dir():
            with tarfile.open(RELEASES / RELEASE_TARBALLS[model]) as tf:
                tmp = Path(tempfile.mkdtemp(dir=self.work))
                tf.extractall(tmp, filter="data")
            src = next(p.parent for p in tmp.rglob("enc.onnx"))
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), dst)
            shutil.rmtree(tmp)
        return dst


@dataclass
class Case:
    """One bad input: what it is, how to build the command line, the exit code and a phrase it must print."""

    group: str
    what: str
    build: Callable[[Ctx], list]  # -> argv after "dfnb" (may end with a dict of extra environment variables)
    code: int
    phrase: str
    slow: bool = False  # loads a PyTorch model (seconds); the rest run in well under a second


def _corrupt(src: Path, keep: float = 0.5) -> bytes:
    b = Path(src).read_bytes()
    return b[: int(len(b) * keep)]


def _checkpoint_with_config(ctx: Ctx, config_of: str) -> Path:
    from dfnb.assets import models_dir

    src = models_dir() / "DeepFilterNet3"
    dst = ctx.path("DeepFilterNet3")
    shutil.rmtree(dst.parent)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("provenance.json"))
    shutil.copyfile(ctx.release(config_of) / "config.ini", dst / "config.ini")
    return dst


def _bad_tarball(ctx: Ctx) -> Path:
    from dfnb.releases import RELEASE_TARBALLS

    p = ctx.path(RELEASE_TARBALLS["DeepFilterNet3"])
    b = bytearray((RELEASES / p.name).read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))
    return p


def _bad_mirror(ctx: Ctx) -> Path:
    p = _bad_tarball(ctx)
    mirror = p.parent / "mirror"
    (mirror / "models" / "onnx-official").mkdir(parents=True)
    p.rename(mirror / "models" / "onnx-official" / p.name)
    return mirror


def _nan_at(t: float, what: float = np.nan) -> np.ndarray:
    x = Ctx.noise(0.5)
    x[int(t * SR)] = what
    return x


def _nan_late(c: Ctx) -> Path:
    """61 s of noise at 8 kHz with a NaN at 60.5 s (the file is read and enhanced block by block)."""
    x = Ctx.noise(61.0, sr=8000)
    x[int(60.5 * 8000)] = np.nan
    return c.wav(x, sr=8000)


def _edited(c: Ctx, variant: str, key: str, value: str) -> Path:
    """An exported folder without manifest.json whose config.ini has ``key = value``."""
    import re

    d = c.folder(variant, drop=("manifest.json",))
    ini = d / "config.ini"
    ini.write_text(re.sub(rf"(?m)^({key}\s*=\s*).*$", rf"\g<1>{value}", ini.read_text(), count=1))
    return d


def _release_with_config(c: Ctx, model: str, config_of: str) -> Path:
    dst = c.path(model)
    shutil.rmtree(dst.parent)
    shutil.copytree(c.release(model), dst)
    shutil.copyfile(c.release(config_of) / "config.ini", dst / "config.ini")
    return dst


F = "full"
CASES: list[Case] = [
    # --- audio in ------------------------------------------------------------------------------------------
    Case("audio", "input file does not exist",
         lambda c: ["enhance", str(c.path("missing.wav")), str(c.out()), "--model", str(c.folders[F])], 3, "not found"),
    Case("audio", "input is a folder",
         lambda c: ["enhance", str(c.path("d").parent), str(c.out()), "--model", str(c.folders[F])], 3,
         "is not a file"),
    Case("audio", "input is not audio (text saved as .wav)",
         lambda c: ["enhance", str(_text(c)), str(c.out()), "--model", str(c.folders[F])], 3, "not an audio file"),
    Case("audio", "input has 0 samples",
         lambda c: ["enhance", str(c.wav(np.zeros(0, np.float32))), str(c.out()), "--model", str(c.folders[F])], 3,
         "is empty"),
    Case("audio", "NaN sample at 0.250 s (float wav)",
         lambda c: ["enhance", str(c.wav(_nan_at(0.25))), str(c.out()), "--model", str(c.folders[F])], 3,
         "sample 12000 (at 0.250 s, 48000 Hz) is NaN"),
    Case("audio", "+Inf sample at 0.100 s",
         lambda c: ["enhance", str(c.wav(_nan_at(0.1, np.inf))), str(c.out()), "--model", str(c.folders[F])], 3,
         "(at 0.100 s, 48000 Hz) is Inf"),
    Case("audio", "float samples peaking at 1000 (unscaled integer PCM)",
         lambda c: ["enhance", str(c.wav(c.noise(amp=300))), str(c.out()), "--model", str(c.folders[F])], 3,
         "far outside [-1, 1]"),
    Case("audio", "stereo input without --downmix",
         lambda c: ["enhance", str(c.wav(c.noise(channels=2))), str(c.out()), "--model", str(c.folders[F])], 3,
         "--downmix"),
    Case("audio", "sample rate 4000 Hz",
         lambda c: ["enhance", str(c.wav(c.noise(sr=4000), sr=4000)), str(c.out()), "--model", str(c.folders[F])],
         3, "outside 8000..192000 Hz"),
    Case("audio", "output file exists, no --force",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.wav(c.noise(), name="exists.wav")), "--model",
                    str(c.folders[F])], 1, "already exists"),
    Case("audio", "output folder does not exist",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.path("x") .parent / "no" / "out.wav"), "--model",
                    str(c.folders[F])], 3, "does not exist"),
    Case("audio", "output suffix is not an audio format (.xyz)",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.path("out.xyz")), "--model", str(c.folders[F])], 3,
         "unknown audio format"),
    Case("audio", "--chunk 0",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--chunk", "0", "--model", str(c.folders[F])],
         1, "--chunk must be a positive"),
    Case("audio", "output is the input file (--force)",
         lambda c: (lambda w: ["enhance", str(w), str(w), "--force", "--model", str(c.folders[F])])(c.wav(c.noise())),
         3, "which dfnb reads"),
    Case("audio", "output file not written by dfnb (--force)",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.wav(c.noise(), name="mine.wav")), "--force", "--model",
                    str(c.folders[F])], 3, "was not written by dfnb"),
    Case("audio", "output is a folder (--force)",
         lambda c: ["enhance", str(c.wav(c.noise())), str(_folder_named(c, "out.wav")), "--force", "--model",
                    str(c.folders[F])], 3, "not a regular file"),
    Case("audio", "output in a folder nobody can write (/proc)",
         lambda c: ["enhance", str(c.wav(c.noise())), "/proc/out.wav", "--model", str(c.folders[F])], 3,
         "cannot write in /proc"),
    Case("audio", "output .ogg (lossy only)",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.path("out.ogg")), "--model", str(c.folders[F])], 3,
         "holds neither float nor 24-bit PCM"),
    Case("audio", "--subtype PCM_16 for an .mp3 output",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.path("out.mp3")), "--subtype", "PCM_16", "--model",
                    str(c.folders[F])], 3, "is not valid for MP3"),
    Case("audio", "--runtime stream with an exported folder",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--runtime", "stream", "--model",
                    str(c.folders[F])], 1, "needs a model name"),
    # --- accepted edge cases (exit 0): what dfnb does instead of failing -------------------------------------
    Case("accepted", "100 samples (shorter than one 480-sample hop)",
         lambda c: ["enhance", str(c.wav(c.noise()[:100])), str(c.out()), "--model", str(c.folders[F])], 0,
         "wrote"),
    Case("accepted", "float samples peaking at 5 (kept as they are)",
         lambda c: ["enhance", str(c.wav(np.clip(c.noise(amp=2), -5, 5))), str(c.out()), "--model",
                    str(c.folders[F])], 0, "wrote"),
    Case("accepted", "8-bit unsigned PCM at 8 kHz",
         lambda c: ["enhance", str(c.wav(c.noise(sr=8000), sr=8000, subtype="PCM_U8")), str(c.out()), "--model",
                    str(c.folders[F])], 0, "at 8000 Hz"),
    Case("accepted", ".flac output (24-bit PCM: FLAC holds no float)",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.path("out.flac")), "--model", str(c.folders[F])], 0,
         "PCM_24"),
    Case("accepted", "stereo input with --downmix",
         lambda c: ["enhance", str(c.wav(c.noise(channels=2))), str(c.out()), "--downmix", "--model",
                    str(c.folders[F])], 0, "wrote"),
    # --- models and weights --------------------------------------------------------------------------------
    Case("model", "unknown model name",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--model", "DeepFilterNet4"], 6, "Unknown model"),
    Case("model", "model path does not exist",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--model",
                    str(c.path("DeepFilterNet3_onnx.tar.gz"))], 4, "does not exist"),
    Case("model", "release tarball failing its sha256 (one byte flipped)",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--model", str(_bad_tarball(c))], 5,
         "has sha256"),
    Case("model", "$DFNB_MIRROR holds a corrupt tarball",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--model", "DeepFilterNet3",
                    {"DFNB_MIRROR": str(_bad_mirror(c))}], 5, "has sha256"),
    Case("model", "checkpoint folder with DeepFilterNet3_ll's config.ini",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--model",
                    str(_checkpoint_with_config(c, "DeepFilterNet3_ll"))], 6, "disagree", slow=True),
    # --- exported model folders ----------------------------------------------------------------------------
    Case("folder", "model folder does not exist",
         lambda c: ["inspect", str(c.path("dfn3_full"))], 7, "model folder not found"),
    Case("folder", "folder without erb_dec.onnx",
         lambda c: ["inspect", str(c.folder(drop=("erb_dec.onnx",)))], 7, "is missing erb_dec.onnx"),
    Case("folder", "folder without config.ini",
         lambda c: ["inspect", str(c.folder(drop=("config.ini",)))], 7, "has no config.ini"),
    Case("folder", "enc.onnx truncated to half",
         lambda c: ["inspect", str(c.folder(replace={"enc.onnx": _corrupt(c.folders[F] / "enc.onnx")}))], 7,
         "truncated or corrupt"),
    Case("folder", "enc.onnx is not ONNX at all",
         lambda c: ["inspect", str(c.folder(replace={"enc.onnx": b"not a model\n"}))], 7, "truncated or corrupt"),
    Case("folder", "manifest.json is not JSON",
         lambda c: ["inspect", str(c.folder(replace={"manifest.json": b"{"}))], 7, "not valid JSON"),
    Case("folder", "enc.onnx of an h0 export in a full folder",
         lambda c: ["inspect", str(c.folder(replace={"enc.onnx": c.folders["h0"] / "enc.onnx"}))], 7,
         "manifest.json says variant 'full'"),
    Case("folder", "... the same without manifest.json",
         lambda c: ["inspect", str(c.folder(drop=("manifest.json",),
                                            replace={"enc.onnx": c.folders["h0"] / "enc.onnx"}))], 7,
         "enc.onnx comes from an h0/gru export"),
    Case("folder", "enc.onnx of DeepFilterNet3_ll (official release) in a DeepFilterNet3 full folder",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--model",
                    str(c.folder(replace={"enc.onnx": c.release("DeepFilterNet3_ll") / "enc.onnx"}))], 7,
         "inconsistent"),
    Case("folder", "enc.onnx of DeepFilterNet3_ll in the official DeepFilterNet3 folder (no states, no manifest)",
         lambda c: ["inspect", str(_release_mix(c))], 7, "enc.onnx has GRUs of [512] units"),
    Case("folder", "config.ini of DeepFilterNet3_ll in a DeepFilterNet3 full folder",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--model",
                    str(c.folder(replace={"config.ini": c.release("DeepFilterNet3_ll") / "config.ini"}))], 7,
         "config.ini says conv_lookahead=0 (manifest.json: 2)"),
    Case("folder", "... the same without manifest.json",
         lambda c: ["inspect", str(c.folder(drop=("manifest.json",),
                                            replace={"config.ini": c.release("DeepFilterNet3_ll") / "config.ini"}))],
         7, "erb_dec.onnx has GRUs of [256] units but config.ini says emb_hidden_dim=512"),
    Case("folder", "config.ini edited: hop_size = 240 (full folder, no manifest.json; no graph holds it)",
         lambda c: ["inspect", str(_edited(c, "full", "hop_size", "240"))], 0,
         "unverified: config.ini hop_size = 240: only the host's STFT uses it"),
    Case("folder", "config.ini edited: min_nb_erb_freqs = 10 (step folder, no manifest.json)",
         lambda c: ["inspect", str(_edited(c, "step", "min_nb_erb_freqs", "10"))], 7,
         "they are the bands of min_nb_erb_freqs = 2"),
    Case("folder", "config.ini edited: df_lookahead = 0 (step folder, no manifest.json)",
         lambda c: ["inspect", str(_edited(c, "step", "df_lookahead", "0"))], 7,
         "config.ini says df_lookahead = 0, but step.onnx's deep-filter buffer is that of df_lookahead = 2"),
    Case("folder", "config.ini edited: sr = 16000 (h0 folder, no manifest.json)",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--model", str(_edited(c, "h0", "sr", "16000"))],
         7, "config.ini says sr = 16000, but every DeepFilterNet model"),
    Case("folder", "config.ini edited: model = deepfilternet2 (DeepFilterNet3 full folder, no manifest.json)",
         lambda c: ["inspect", str(_edited(c, "full", "model", "deepfilternet2"))], 7,
         "config.ini says model = deepfilternet2, whose embedding between encoder and decoders is emb_hidden_dim"),
    Case("folder", "official DeepFilterNet2 graphs with DeepFilterNet3's config.ini",
         lambda c: ["inspect", str(_release_with_config(c, "DeepFilterNet2", "DeepFilterNet3"))], 7,
         "config.ini says model = deepfilternet3, whose embedding between encoder and decoders is conv_ch*nb_erb/4 = "
         "512 wide, but the graphs' is 256"),
    Case("audio", "NaN at 60.5 s of a 61 s input (8 kHz, step folder): found while streaming, nothing written",
         lambda c: ["enhance", str(_nan_late(c)), str(c.out()), "--model", str(c.folders["step"])], 3,
         "(at 60.500 s = 0:01:00.500, 8000 Hz) is NaN", slow=True),
    Case("state", "--per-call-offline with a step folder",
         lambda c: ["enhance", str(c.wav(c.noise())), str(c.out()), "--per-call-offline", "--model",
                    str(c.folders["step"])], 9, "per_call_offline needs a three-file folder"),
    # --- export --------------------------------------------------------------------------------------------
    Case("export", "target folder exists, no --force",
         lambda c: ["export", "--variant", "full", "--out", str(c.folder())], 8, "already exists", slow=True),
    Case("export", "--out below a regular file",
         lambda c: ["export", "--variant", "full", "--out", str(_text(c) / "dfn3_full")], 8, "cannot create",
         slow=True),
    Case("export", "--out in /proc (not a real folder)",
         lambda c: ["export", "--variant", "full", "--out", "/proc/dfn3_full"], 8, "cannot write in /proc", slow=True),
    Case("export", "--out is a folder of the user's notes (--force)",
         lambda c: ["export", "--variant", "full", "--out", str(_text(c).parent), "--force"], 8,
         "was not written by dfnb"),
    Case("export", "--out is a file (--force)",
         lambda c: ["export", "--variant", "full", "--out", str(_text(c)), "--force"], 8, "a file, not a folder"),
    Case("export", "--out is the working folder (--force)",
         lambda c: ["export", "--variant", "full", "--out", ".", "--force"], 8, "is the working folder"),
    Case("export", "--out is the weights being read (--force)",
         lambda c: ["export", "--variant", "full", "--model", "DeepFilterNet3", "--out",
                    str(_models_dir_of() / "DeepFilterNet3"), "--force"], 8, "which dfnb reads"),
    Case("export", "demo --out is a file",
         lambda c: ["demo", "--out", str(_text(c))], 8, "is a file, not a folder"),
    Case("export", "--variant that does not exist",
         lambda c: ["export", "--variant", "h1"], 2, "invalid choice"),
    # --- command line --------------------------------------------------------------------------------------
    Case("cli", "unknown command", lambda c: ["enhace"], 2, "invalid choice"),
    Case("cli", "enhance without input and output", lambda c: ["enhance"], 2, "required: input, output"),
    Case("cli", "unknown option", lambda c: ["inspect", "x", "--fast"], 2, "unrecognized arguments"),
]


def _text(c: Ctx) -> Path:
    p = c.path("notes.wav")
    p.write_text("these are notes, not audio\n")
    return p


def _folder_named(c: Ctx, name: str) -> Path:
    d = c.path(name)
    d.mkdir()
    return d


def _models_dir_of() -> Path:
    from dfnb.assets import models_dir

    return models_dir()


def _release_mix(c: Ctx) -> Path:
    dst = c.path("mixed")
    shutil.rmtree(dst.parent)
    shutil.copytree(c.release("DeepFilterNet3"), dst)
    shutil.copyfile(c.release("DeepFilterNet3_ll") / "enc.onnx", dst / "enc.onnx")
    return dst


# ----------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    case: Case
    argv: list
    code: int
    stdout: str
    stderr: str
    env: dict = field(default_factory=dict)


def dfnb_command() -> list[str]:
    exe = Path(sys.executable).parent / "dfnb"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "dfnb.cli"]


def split_argv(argv: list) -> tuple[list[str], dict]:
    env = argv[-1] if argv and isinstance(argv[-1], dict) else {}
    return [str(a) for a in (argv[:-1] if env else argv)], env


def run_case(case: Case, ctx: Ctx, *, timeout: float = 300) -> Result:
    """Build the case's input and run ``dfnb`` on it in a subprocess."""
    argv, extra = split_argv(case.build(ctx))
    env = {**os.environ, "DFNB_OFFLINE": "1", **extra}
    p = subprocess.run(dfnb_command() + argv, capture_output=True, text=True, env=env, cwd=ctx.work,
                       timeout=timeout)
    return Result(case, argv, p.returncode, p.stdout, p.stderr, extra)


def cached_export(variant: str) -> Path:
    """``benchmarks/results/cache/dfn3_<variant>``, exported once and reused."""
    from dfnb.export import default_folder, export_model
    from dfnb.models import load_model

    folder = default_folder("DeepFilterNet3", variant, CACHE)
    if (folder / "manifest.json").is_file():
        return folder
    print(f"exporting DeepFilterNet3 {variant} -> {folder} (once; cached)", file=sys.stderr)
    return export_model(load_model("DeepFilterNet3"), variant, folder, force=True)


def _show(text: str, ctx: Ctx) -> str:
    text = text.replace(str(ctx.work.resolve()), "<tmp>").replace(str(ctx.work), "<tmp>")
    text = text.replace(str(REPO.parent / "shared"), "<shared>").replace(str(REPO), "<repo>")
    return text.replace("|", "\\|").strip()


def _argv_shown(r: Result, ctx: Ctx) -> str:
    env = " ".join(f"{k}=…" for k in r.env)
    return (env + " " if env else "") + "dfnb " + " ".join(_show(a, ctx) for a in r.argv)


# ----------------------------------------------------------------------------------------------------------
# Python API cases (run in this process)
# ----------------------------------------------------------------------------------------------------------
def api_cases(ctx: Ctx) -> list[tuple[str, str, Callable[[], object]]]:
    """(what, call as written in the table, thunk) for the documented errors of the Python API."""
    import onnxruntime as ort

    from dfnb.folder import check_feeds, inspect_folder
    from dfnb.hosts import open_host
    from dfnb.hosts.fast import FastStepHost
    from dfnb.hosts.onnx import Host
    from dfnb.models import load_model
    from dfnb.offline import enhance_offline
    from dfnb.runtime import enhance
    from dfnb.streaming import Stream

    full, step = ctx.folders["full"], ctx.folders["step"]
    lazy: dict = {}

    def model():
        if "m" not in lazy:
            lazy["m"] = load_model("DeepFilterNet3")
        return lazy["m"]

    def bad_hop(rt, warm: int, at: int, value: float):
        """Feed ``warm`` good samples, then one hop with a non-finite sample at ``at``."""
        rt.process(np.zeros(warm, np.float32))
        x = np.zeros(480, np.float32)
        x[at] = value
        rt.process(x)

    def host_nan():
        bad_hop(Host(full), 4800, 7, np.nan)

    def stream_inf():
        bad_hop(Stream(model()), 480, 3, np.inf)

    def fast_nan():
        bad_hop(FastStepHost(step), 4800, 7, np.nan)

    def two_threads():
        import threading

        h, x, errors = Host(full), np.zeros(48000, np.float32), []
        barrier = threading.Barrier(2)

        def work():
            barrier.wait()
            try:
                enhance(h, x)
            except Exception as e:  # noqa: BLE001 -- the one the table shows
                errors.append(e)

        ts = [threading.Thread(target=work) for _ in range(2)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        if errors:
            raise errors[0]

    feeds = {"feat_erb": np.zeros((1, 1, 2, 32), np.float32), "feat_spec": np.zeros((1, 2, 2, 96), np.float32)}
    return [
        ("h0 of the wrong shape", "Host(full).set_state('h0', np.zeros((1, 1, 512), np.float32))",
         lambda: Host(full).set_state("h0", np.zeros((1, 1, 512), np.float32))),
        ("h0 as float64", "Host(full).set_state('h0', np.zeros((1, 1, 256)))",
         lambda: Host(full).set_state("h0", np.zeros((1, 1, 256)))),
        ("a state the folder does not have", "Host(step).set_state('erb_h1', ...)",
         lambda: Host(step).set_state("erb_h1", np.zeros((2, 1, 256), np.float32))),
        ("a stateful graph run without its state inputs (raw onnxruntime)",
         "ort.InferenceSession('full/enc.onnx').run(None, {feat_erb, feat_spec})",
         lambda: ort.InferenceSession(str(full / "enc.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)),
        ("... the same checked first", "check_feeds('full/enc.onnx', {feat_erb, feat_spec})",
         lambda: check_feeds(full / "enc.onnx", feeds)),
        ("a host call of 2-D samples", "Host(full).process(np.zeros((2, 480), np.float32))",
         lambda: Host(full).process(np.zeros((2, 480), np.float32))),
        ("a NaN state", "Host(full).set_state('h0', np.full((1, 1, 256), np.nan, np.float32))",
         lambda: Host(full).set_state("h0", np.full((1, 1, 256), np.nan, np.float32))),
        ("NaN in the 11th hop of a host stream", "h.process(10 hops); h.process(hop with NaN at sample 7)", host_nan),
        ("Inf in the 2nd hop of a PyTorch stream", "s.process(hop); s.process(hop with Inf at 3)", stream_inf),
        ("empty audio, every path", "enhance(Host(full), np.zeros(0))", lambda: enhance(Host(full), np.zeros(0))),
        ("integer samples of an unsupported width", "enhance_offline(m, np.zeros(480, np.int64))",
         lambda: enhance_offline(model(), np.zeros(480, np.int64))),
        ("a sample rate that is not an integer", "enhance_offline(m, x, 16000.5)",
         lambda: enhance_offline(model(), np.zeros(480, np.float32), 16000.5)),
        ("[channels, samples] audio", "enhance(Stream(m), np.zeros((2, 4800)))",
         lambda: enhance(Stream(model()), np.zeros((2, 4800), np.float32))),
        ("chunk 0", "enhance(Host(full), x, chunk=0)", lambda: enhance(Host(full), np.zeros(480, np.float32), chunk=0)),
        ("NaN in the 11th hop of a fast step host stream", "fast.process(10 hops); fast.process(hop with NaN at 7)",
         fast_nan),
        ("two threads run enhance() on one host at once", "Thread(enhance, h, x) x 2", two_threads),
        ("no runtime", "enhance(None, x)", lambda: enhance(None, np.zeros(480, np.float32))),
        ("threads as a string", "Host(full, threads='2')", lambda: Host(full, threads="2")),
        ("threads as a string, fast host", "FastStepHost(step, threads='2')", lambda: FastStepHost(step, threads="2")),
        ("a folder that is not a path", "open_host(123)", lambda: open_host(123)),
        ("no folder", "inspect_folder(None)", lambda: inspect_folder(None)),
        ("no model", "Stream(None)", lambda: Stream(None)),
        ("probes that are not names", "Host(full, probes=5)", lambda: Host(full, probes=5)),
        ("chunk as a string", "enhance(Host(full), x, chunk='7')",
         lambda: enhance(Host(full), np.zeros(480, np.float32), chunk="7")),
        ("479 samples to the one-hop stage", "FastStepHost(step).analyse(np.zeros(479, np.float32))",
         lambda: FastStepHost(step).analyse(np.zeros(479, np.float32))),
    ]


def run_api(ctx: Ctx) -> list[tuple[str, str, str, str]]:
    rows = []
    for what, call, thunk in api_cases(ctx):
        try:
            thunk()
            kind, msg = "(no error)", ""
        except Exception as e:  # noqa: BLE001 -- recorded, whatever it is
            kind, msg = type(e).__name__, str(e)
        rows.append((what, call, kind, msg))
    return rows


# ----------------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------------
CODES = """| code | meaning |
|---|---|
| 0 | success |
| 1 | other dfnb error (bad option value, output exists) |
| 2 | bad command line (argparse) |
| 3 | bad audio (missing, unreadable, empty, NaN/Inf, multichannel, rate) or audio output path (folder missing or read-only, a folder, the input, not written by dfnb, format/subtype) |
| 4 | weights or clip not found anywhere dfnb looks |
| 5 | sha256 mismatch |
| 6 | model cannot be built (unknown name, config/weights mismatch) or its import not written (cache folder not dfnb's) |
| 7 | broken model folder (missing/corrupt/mixed files) |
| 8 | export or output folder refused or failed (exists without --force, not written by dfnb, the working folder, a file, unwritable) |
| 9 | bad streaming state (wrong shape, NaN, missing state input, a runtime used by two threads at once) |
| 10 | a Python API argument of the wrong type or range (`ArgumentError`, also a `TypeError`/`ValueError`; not raised by the command line) |
| 70 | unexpected internal error (a dfnb bug: rerun with --debug) |
| 130 | interrupted |"""  # noqa: E501 -- markdown table rows, one per line


def markdown(results: list[Result], api_rows: list, ctx: Ctx) -> str:
    lines = ["# Errors: every bad input, its message and its exit code", "",
             "Generated by `benchmarks/error_table.py` (`--write`), which runs each case through the installed "
             "`dfnb` command in a subprocess; `tests/test_cli.py` runs the same cases and checks the code, the "
             "phrase and that stderr is exactly one line without a traceback. Paths are shortened to `<tmp>` "
             "(the case's scratch folder), `<repo>` and `<shared>`.", "", "## Exit codes", "", CODES, "",
             "## The command line", "",
             "| # | bad input | command | exit | message (stderr; stdout for exit 0) |", "|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        said = [ln for ln in r.stdout.splitlines() if r.case.phrase in ln]
        msg = r.stderr if r.code else (" … ".join(said) if said else r.stdout)  # exit 0: the line that says it
        flag = "" if r.code == r.case.code else f" **(expected {r.case.code})**"
        lines.append(f"| {i} | {r.case.what} | `{_argv_shown(r, ctx)}` | {r.code}{flag} | {_show(msg, ctx)} |")
    lines += ["", "## The Python API", "",
              "Every public function raises a subclass of `dfnb.errors.DfnbError` (the class sets the CLI exit "
              "code); `full`/`step` are exported DeepFilterNet3 folders, `m = load_model(\"DeepFilterNet3\")`. "
              "A bad sample is refused before anything reaches the model, so a stream's state is unchanged and "
              "it can go on with the next good block.", "",
              "| bad input | call | raises | message |", "|---|---|---|---|"]
    for what, call, kind, msg in api_rows:
        lines.append(f"| {what} | `{call}` | {kind} | {_show(msg, ctx)} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(REPO)}")
    ap.add_argument("--fast", action="store_true", help="skip the cases that load a PyTorch model")
    args = ap.parse_args(argv)
    folders = {v: cached_export(v) for v in ("full", "h0", "step")}
    with tempfile.TemporaryDirectory(prefix="dfnb-errors-") as work:
        ctx = Ctx(Path(work), folders)
        results = []
        for case in CASES:
            if args.fast and case.slow:
                continue
            r = run_case(case, ctx)
            ok = r.code == case.code and case.phrase in (r.stderr if r.code else r.stdout)
            print(f"{'ok ' if ok else 'BAD'} {r.code:>3} {case.group:<8} {case.what}", file=sys.stderr)
            results.append(r)
        api_rows = run_api(ctx)
        md = markdown(results, api_rows, ctx)
    print(md)
    if args.write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(md)
        print(f"wrote {DOC}", file=sys.stderr)
    bad = [r for r in results if r.code != r.case.code]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
