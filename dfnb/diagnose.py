"""Why does a model folder, run the way its own host feeds it, differ from offline PyTorch? Measure each cause.

:func:`diagnose` takes any folder :func:`dfnb.formats.recognise` knows and a clip, and:

1. converts the folder's weights into deepfilternet's PyTorch model (:func:`dfnb.convert.convert_folder`) and
   runs it offline on the clip: the reference, with the folder's own weights;
2. runs the folder's own graphs with its feeding (:mod:`dfnb.hosts.pipeline`; ``frame``: dfnb's host, one hop
   per call) and measures the SNR of the difference against that reference;
3. exports the converted model exactly (dfnb ``full``) and replays the same feeding on it with every cause
   switchable (:mod:`dfnb.hosts.pipeline_fixes`). With nothing fixed the replay must equal step 2 -- the proof
   that the conversion and the emulation are right (``agreement_db``; the last ``delay`` hops are left out of
   it, dfnb's host drains a non-exact folder in one call there); then each cause is fixed **alone**, each is left
   as the only one (**all but**), and all are fixed (the exact stream, float round-off);
4. ends with the one-line fix: the causes without whose fix the rest cannot reach the exact stream (fixing all
   but that one stays more than ``NEEDED_DB`` below all fixed), by how much they cost, and the command that
   converts the folder to an exact export.

:func:`save_diagnosis` writes ``diagnose.json`` and ``diagnose.png`` (SNR per fix; error per hop).

Notebook: 07_third_party_folders
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .errors import DfnbError
from .formats import FolderFormat, recognise

__all__ = ["DEFAULT_CLIP", "NEEDED_DB", "CHECK_DB", "Cause", "Diagnosis", "diagnose", "save_diagnosis", "load_audio",
           "check_conversion", "format_lines"]

DEFAULT_CLIP = "vb_p232_013"
NEEDED_DB = 20.0
CHECK_DB = 60.0  # the folder's own run and its replay on the converted export must agree at least this well


@dataclass
class Cause:
    """One cause of difference: what it is, its fix, and the SNR vs offline with it fixed alone / left alone."""

    name: str
    text: str
    fix: str
    alone_db: float
    all_but_db: float
    needed: bool


@dataclass
class Diagnosis:
    """Everything :func:`diagnose` measured (SNRs of the difference against offline PyTorch, in dB)."""

    folder: str
    format: str
    origin: str
    feed: str
    window: int
    model: str
    weights: str
    clip: str
    emulated_db: float
    agreement_db: float
    causes: list[Cause]
    all_fixed_db: float
    fix: str
    convert_command: str
    seconds: float
    signals: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("signals")
        return d

    def lines(self) -> list[str]:
        """The printed report."""
        out = [f"folder:    {self.folder}",
               f"format:    {self.format} ({self.origin}); weights: {self.weights}",
               f"feeding:   {self.feed}, T = {self.window} frames; clip {self.clip}",
               f"emulated:  {self.emulated_db:.1f} dB SNR of the difference vs offline PyTorch with the same weights",
               f"check:     the replay on an exact export equals the folder's own run to {self.agreement_db:.0f} dB",
               f"{'cause':<9} {'fixed alone':>11} {'all but':>8}  what"]
        for c in self.causes:
            mark = "*" if c.needed else " "
            out.append(f"{c.name:<9} {c.alone_db:>8.1f} dB {c.all_but_db:>5.1f} dB  {mark} {c.text}")
        out.append(f"all fixed: {self.all_fixed_db:.1f} dB   (* = needed: fixing all others stays > {NEEDED_DB:g} dB "
                   "below)")
        out.append(f"fix:       {self.fix}")
        return out


def format_lines(fmt: FolderFormat, io: bool = True) -> list[str]:
    """What ``dfnb inspect`` prints about a recognised folder: format, sizes, weights, graph I/O, states, every
    feeding with its delay, what a host keeps and how it differs from offline."""
    from .hosts.pipeline_fixes import CAUSES, causes_for, describe

    out = [f"format:   {fmt.format} -- {fmt.origin}"
           + (f" (also holds: {', '.join(fmt.alternatives)})" if fmt.alternatives else ""),
           f"model:    {fmt.family}; from the graphs: " + (", ".join(f"{k}={v}" for k, v in fmt.sizes.items()
                                                                    if k != "parts") or "no sizes read"),
           f"weights:  {fmt.weights.summary() if fmt.weights is not None else 'not compared'}"]
    for f in dict.fromkeys(fmt.files.values()) if io else ():
        out.append(f"{f}: inputs " + ", ".join(f"{n} {s}" for n, s in fmt.io[f]["inputs"].items())
                   + "; outputs " + ", ".join(f"{n} {s}" for n, s in fmt.io[f]["outputs"].items()))
    out.append("carries:  " + (", ".join(f"{s.input}->{s.output} {list(s.shape)} ({s.group})" for s in fmt.states)
                               or "no state (every call starts from zero state)"))
    missing = [g for g in ("h0", "erb_h0", "df_h0") if g not in {s.input for s in fmt.states}]
    for feed in fmt.feeds:
        t = fmt.window.get(feed, 1)
        out.append(f"feeding:  {feed}{f', T={t}' if feed in fmt.window else ''}"
                   f"{' (its own)' if feed == fmt.feeds[0] else ''}: delay {fmt.delay(feed)} samples; a host keeps "
                   + "; ".join(fmt.host_keeps(feed)))
        if fmt.config is not None and not (feed == "frame" and fmt.format in ("full", "step")):
            out += [f"  differs from offline: {describe(c, CAUSES, config=fmt.config, window=t, missing=missing)}"
                    for c in causes_for(feed, fmt.carries, fmt.config, t)]
    return out + [f"warning:  {p}" for p in fmt.problems]


def load_audio(clip: str | Path, sr: int = 48000) -> tuple[np.ndarray, str]:
    """A clip by name (:mod:`dfnb.clips`) or a path, as mono float32 at ``sr``; returns ``(samples, label)``."""
    from . import audio, clips

    if isinstance(clip, str) and clip in clips.clip_names():
        x, rate = clips.load_clip(clip)
        label = clip
    else:
        x, rate = audio.read_audio(Path(clip))
        label = str(clip)
    return (audio.resample(x, rate, sr) if rate != sr else x), label


def _run(host: Any, x: np.ndarray) -> np.ndarray:
    """``host`` (any runtime, or a folder run by :func:`dfnb.hosts.open_host`) on ``x``, one hop per call."""
    from .runtime import enhance

    if isinstance(host, (str, Path)):
        from .hosts import open_host

        host = open_host(host)
    return enhance(host, x, chunk=1)


def diagnose(folder: Path | str | FolderFormat, *, clip: str | Path = DEFAULT_CLIP, feed: str | None = None,
             window: int | None = None, loaded: Any = None, exact_folder: Path | str | None = None,
             say: Callable[[str], None] | None = None) -> Diagnosis:
    """Measure why ``folder``, fed as its own host does, differs from offline PyTorch (module docstring).

    Parameters
    ----------
    folder : path or FolderFormat
    clip : str or path
        A clip name (``dfnb.clips``) or an audio file.
    feed, window : optional
        The feeding and its T (default: the folder's own).
    loaded : dfnb.models.LoadedModel, optional
        The PyTorch model of the folder's weights (default: converted from the folder).
    exact_folder : path, optional
        A dfnb ``full`` export of those weights (default: exported into a temporary folder).
    say : callable, optional
        Progress messages.

    Returns
    -------
    Diagnosis

    Examples
    --------
    >>> d = diagnose("deepfilter-rt/models/dfn3")  # doctest: +SKIP
    >>> print("\\n".join(d.lines()))  # doctest: +SKIP

    Notebook: 07_third_party_folders
    """
    from .convert import convert_folder
    from .export import export_model
    from .hosts.pipeline import open_pipeline
    from .hosts.pipeline_fixes import CAUSES, FIXES, causes_for, describe, fixable_host, open_exact
    from .offline import enhance_offline

    t0 = time.perf_counter()
    say = say or (lambda _m: None)
    fmt = folder if isinstance(folder, FolderFormat) else recognise(folder)
    feed = feed or fmt.feeds[0]
    fmt = fmt.fitting(feed)
    if feed not in fmt.feeds:
        raise DfnbError(f"{fmt.path} ({fmt.format}) can be fed as {', '.join(fmt.feeds)}, not {feed!r}: pass --feed "
                        f"{fmt.feeds[0]} or omit --feed.")
    cfg = fmt.config
    if feed == "frame" and (fmt.variant is None or fmt.variant in ("full", "step")):
        raise DfnbError(f"{fmt.path} is a {fmt.format} folder, exact under dfnb's host: nothing to diagnose (it "
                        "streams like offline PyTorch; `dfnb inspect` shows its states).")
    T = 1 if feed == "frame" else int(window or fmt.window[feed])
    x, label = load_audio(clip, 48000)
    say("converting the folder's weights to PyTorch")
    model = loaded if loaded is not None else convert_folder(fmt)
    say("offline reference")
    ref = enhance_offline(model, x).audio
    say(f"running the folder with the {feed} feeding")
    own = _run(fmt.path if feed == "frame" else open_pipeline(fmt, feed=feed, window=T), x)
    tmp = None
    if exact_folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="dfnb-diagnose-")
        say("exporting the same weights exactly (full) for the replay")
        exact_folder = export_model(model, "full", Path(tmp.name) / "full")
    try:
        carried = {s.input for s in fmt.states if s.group.startswith("gru")}
        causes = causes_for(feed, fmt.carries, cfg, T)
        missing = [s for s, g in (("h0", "gru_enc"), ("erb_h0", "gru_erb"), ("df_h0", "gru_df"))
                   if g not in fmt.carries]
        base = set(CAUSES) - set(causes)
        sessions = open_exact(exact_folder)

        def replay(fixed: set[str]) -> np.ndarray:
            return _run(fixable_host(exact_folder, cfg, feed=feed, window=T, carried=carried, fixed=fixed,
                                     sessions=sessions), x)

        say("replaying: nothing fixed, each cause alone, all but each, all")
        y0 = replay(base)
        tail = fmt.delay(feed)
        agreement = metrics.snr_of_difference(own[:-tail], y0[:-tail])
        y_all = replay(set(CAUSES))
        all_db = metrics.snr_of_difference(ref, y_all)
        rows = []
        for c in causes:
            alone = metrics.snr_of_difference(ref, replay(base | {c}))
            all_but = metrics.snr_of_difference(ref, replay(set(CAUSES) - {c}) if len(causes) > 1 else y0)
            kw = {"config": cfg, "window": T, "missing": missing}
            rows.append(Cause(c, describe(c, CAUSES, **kw), describe(c, FIXES, **kw), alone, all_but,
                              all_but < min(all_db, 120.0) - NEEDED_DB))
    finally:
        if tmp is not None:
            tmp.cleanup()
    needed = sorted((c for c in rows if c.needed), key=lambda c: c.all_but_db)
    cmd = f"dfnb export --from {fmt.path} --variant full --out <DIR>"
    if needed:
        fix = ("; ".join(f"{c.fix} (left alone: {c.all_but_db:.0f} dB)" for c in needed)
               + f" -> {all_db:.0f} dB. Or convert it exactly: {cmd}")
    else:
        fix = f"nothing stands out; every cause fixed gives {all_db:.0f} dB. Or convert it exactly: {cmd}"
    w = fmt.weights.summary() if fmt.weights is not None else "not compared"
    return Diagnosis(str(fmt.path), fmt.format, fmt.origin, feed, T, model.name, w, label,
                     metrics.snr_of_difference(ref, own), agreement, rows, all_db, fix, cmd,
                     time.perf_counter() - t0, {"offline": ref, "emulated": own, "all fixed": y_all})


def check_conversion(folder: Path | str | FolderFormat, exact_folder: Path | str, *, clip: str | Path = DEFAULT_CLIP,
                     seconds: float = 1.5, min_db: float = CHECK_DB) -> float:
    """Check a conversion: the folder's own run and the same feeding replayed on ``exact_folder`` (a dfnb ``full``
    export of the converted weights) must agree to ``min_db``; returns the agreement in dB.

    Parameters
    ----------
    folder : path or FolderFormat
    exact_folder : path
    clip : str or path
    seconds : float
        How much of the clip to run.

    Returns
    -------
    float

    Raises
    ------
    dfnb.errors.ModelError
        When they do not agree (a weight went to the wrong layer).

    Examples
    --------
    >>> check_conversion("deepfilter-rt/models/dfn3", "models/dfn3_rt_full")  # doctest: +SKIP

    Notebook: 07_third_party_folders
    """
    from .errors import ModelError
    from .hosts.pipeline import open_pipeline
    from .hosts.pipeline_fixes import CAUSES, causes_for, fixable_host

    fmt = folder if isinstance(folder, FolderFormat) else recognise(folder, weights=False)
    x = load_audio(clip, 48000)[0][: int(seconds * 48000)]
    feed = next((f for f in fmt.feeds if f != "frame"), "frame")
    if feed == "frame" and fmt.variant in ("full", "step"):
        own, rep = _run(fmt.path, x), _run(Path(exact_folder), x)
    else:
        T = 1 if feed == "frame" else fmt.window[feed]
        own = _run(fmt.path if feed == "frame" else open_pipeline(fmt, feed=feed), x)
        base = set(CAUSES) - set(causes_for(feed, fmt.carries, fmt.config, T))
        carried = {s.input for s in fmt.states if s.group.startswith("gru")}
        rep = _run(fixable_host(exact_folder, fmt.config, feed=feed, window=T, carried=carried, fixed=base), x)
    tail = fmt.delay(feed)
    db = metrics.snr_of_difference(own[:-tail], rep[:-tail])
    if not db >= min_db:
        raise ModelError(f"{fmt.path}: the converted weights do not reproduce the folder ({db:.1f} dB < {min_db:g} dB "
                         "between the folder's own run and the export's): a weight went to the wrong layer, probably "
                         "because a merge re-ordered the graph's nodes. Convert the unmerged files instead.")
    return db


def save_diagnosis(d: Diagnosis, out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``diagnose.json`` and ``diagnose.png`` (SNR per fix; error per hop) into ``out_dir``; a file there
    that dfnb did not write is never replaced (:mod:`dfnb.placement`).

    Parameters
    ----------
    d : Diagnosis
    out_dir : path

    Returns
    -------
    (json path, png path)

    Examples
    --------
    >>> save_diagnosis(diagnose("models/dfn3_h0"), "out/diagnose")  # doctest: +SKIP

    Notebook: 07_third_party_folders
    """
    from matplotlib.figure import Figure

    from .errors import ExportError
    from .placement import building_file, check_target, marker_text, prepare_folder
    from .plot import plot_error_vs_time, save_figure

    out = prepare_folder(out_dir, what="--out")
    js, png = out / "diagnose.json", out / "diagnose.png"
    for p in (js, png):  # only files dfnb wrote are replaced, and that is checked before any work
        check_target(p, folder=False, replace=True, error=ExportError, make_parent=False, what="--out")
    with building_file(js, replace=True, error=ExportError, what="--out") as tmp:
        tmp.write_text(json.dumps({"written_by": marker_text(), **d.to_dict()}, indent=2) + "\n")
    fig = Figure(figsize=(12.0, 4.0), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.4])
    names = ["emulated"] + [f"fix {c.name}" for c in d.causes] + ["all fixed"]
    vals = [d.emulated_db] + [c.alone_db for c in d.causes] + [d.all_fixed_db]
    ax1.barh(names, np.minimum(vals, 200.0), color=["tab:red"] + ["tab:blue"] * len(d.causes) + ["tab:green"])
    ax1.plot([c.all_but_db for c in d.causes], [f"fix {c.name}" for c in d.causes], "k|", ms=14, label="all but this")
    ax1.invert_yaxis()
    ax1.set_xlabel("SNR of the difference vs offline (dB)")
    ax1.set_title(f"{Path(d.folder).name}: {d.format}, {d.feed} feeding (T={d.window})", fontsize="medium")
    if d.causes:
        ax1.legend(loc="lower right", fontsize="small")
    ax1.grid(alpha=0.3, axis="x")
    plot_error_vs_time(d.signals["offline"], {k: v for k, v in d.signals.items() if k != "offline"}, ax=ax2,
                       title=d.clip)
    return js, save_figure(fig, png)
