"""The quality-cost study: what each way of running a model costs in PESQ, STOI, SI-SDR, DNSMOS and PLCMOS.

One *cell* is (model, variant, chunk, clip). Variants:

* ``noisy`` — the input itself (doing nothing), ``offline`` — PyTorch on the whole file (the reference);
* ``naive`` — a host that treats every call of ``chunk`` hops as a new file: the stateless export with
  ``per_call_offline=True, reset_dsp=True`` (:class:`dfnb.hosts.onnx.Host`), the naive host of notebooks 01
  and 03. It is the onnxruntime twin of the PyTorch stream carrying nothing (``Stream(m, carry=())``;
  notebook 03 asserts they agree far better than either agrees with offline) without PyTorch's per-hop cost,
  which is what makes a four-model study affordable on a small machine;
* ``stateless``, ``h0``, ``gru``, ``full``, ``step`` — the onnxruntime host on exported folders, ``chunk``
  hops per call (``full`` and ``step`` are exact).

:func:`run_cell` produces one cell's audio and all its scores (:func:`dfnb.quality.score_output`);
:func:`run_study` runs many cells in parallel and returns the tidy table, one row per cell with one column per
score (:mod:`dfnb.quality_table` saves, reads and summarises it). The only function that calls a runtime is
:func:`enhance_variant`.

Why Dask (``dask.distributed``) rather than Ray: a cell is one ordinary Python function call on numpy arrays,
which is all Dask needs; ``dask`` and ``distributed`` are small pure-Python wheels (Ray is a large binary
wheel that starts its own object store and daemons), ``LocalCluster`` gives one worker process per core with
one thread each (the models run single-threaded), ``Client(address)`` uses a running ``dask scheduler``
unchanged, and ``as_completed`` feeds a tqdm progress bar. A remote cluster's workers must see the same
clips (``DFNB_MIRROR`` or ``../shared``) and the export folders (a shared filesystem), and have dfnb installed.

Notebook: 06_quality_cost
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DfnbError
from .quality import score_output
from .quality_table import append_rows, read_table

__all__ = ["VARIANTS", "HOST_VARIANTS", "CHUNKED", "REFERENCES", "CHUNKS", "study_cells", "prepare_exports",
           "enhance_variant", "run_cell", "run_study"]

HOST_VARIANTS = ("stateless", "h0", "gru", "full", "step")
#: Variants that run in calls of ``chunk`` hops.
CHUNKED = ("naive",) + HOST_VARIANTS
#: Variants that do not depend on the chunk size (their ``chunk`` is None).
REFERENCES = ("noisy", "offline")
VARIANTS = REFERENCES + CHUNKED
CHUNKS = (1, 7, 20)

_CACHE: dict[tuple, Any] = {}  # per process: loaded models, clips, offline outputs, open hosts


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        if key[0] == "offline":  # keep a handful of reference outputs, not every clip of every model
            for old in [k for k in _CACHE if k[0] == "offline"][:-7]:
                del _CACHE[old]
        _CACHE[key] = make()
    return _CACHE[key]


def _loaded(model: str):
    def make():
        import torch

        from .models import load_model

        torch.set_num_threads(1)  # one hop at a time: one thread per process is fastest, and a study runs many
        return load_model(model)

    return _cached(("model", model), make)


def _pair(clip: str):
    from .clips import load_pair

    return _cached(("clip", clip), lambda: load_pair(clip))


def study_cells(models: Sequence[str], clips: Sequence[str], chunks: Sequence[int] = CHUNKS,
                variants: Sequence[str] = VARIANTS) -> list[tuple]:
    """Every (model, variant, chunk, clip) cell, grouped by model and clip; ``chunk`` is None for references.

    Notebook: 06_quality_cost
    """
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise DfnbError(f"unknown variant(s) {bad}; the study knows {', '.join(VARIANTS)}")
    chunks = [int(c) for c in chunks]
    if any(c < 1 for c in chunks):
        raise DfnbError(f"chunk sizes must be positive numbers of hops, got {chunks}")
    return [(m, v, c, clip) for m in models for clip in clips for v in variants
            for c in ([None] if v in REFERENCES else chunks)]


def prepare_exports(models: Sequence[str], root: Path | str | None = None, *, variants: Sequence[str] = HOST_VARIANTS,
                    reuse_from: Path | str | None = None, say: Callable[[str], None] = print) -> dict[tuple, Path]:
    """Export each host variant of each model once: ``{(model, variant): folder}``.

    A folder already in ``reuse_from`` (default: the repository's ``models/``) is reused when it holds the same
    weights; nothing new is ever written there. Everything else goes to ``root`` (default: a ``dfnb_quality``
    folder in the system temp dir), where a matching export is reused too (:func:`dfnb.export.ensure_export`).

    Notebook: 06_quality_cost
    """
    from .export import default_folder
    from .reuse import ensure_export

    root = Path(root) if root is not None else Path(tempfile.gettempdir()) / "dfnb_quality"
    reuse = Path(reuse_from) if reuse_from is not None else Path(__file__).resolve().parent.parent / "models"
    folders = {}
    for m in models:
        for v in variants:
            if v not in HOST_VARIANTS:
                continue
            where = reuse if default_folder(m, v, reuse).exists() else root
            folders[m, v] = Path(ensure_export(_loaded(m), v, where, say=say))
    return folders


def enhance_variant(model: str, variant: str, audio: np.ndarray, chunk: int | None,
                    folder: Path | str | None = None) -> np.ndarray:
    """The one place that runs a model: ``audio`` through ``variant`` in calls of ``chunk`` hops, aligned.

    ``folder`` is the exported folder of a host variant (``naive`` runs the ``stateless`` one; see
    :func:`prepare_exports`); PyTorch models and hosts are opened once per process and reused.

    Notebook: 06_quality_cost
    """
    if variant == "noisy":
        return np.asarray(audio, dtype=np.float32)
    if variant == "offline":
        from .offline import enhance_offline

        return enhance_offline(_loaded(model), audio).audio
    if variant in CHUNKED:
        from .hosts.onnx import Host
        from .runtime import enhance

        if folder is None:
            raise DfnbError(f"variant {variant!r} runs an exported folder: pass folder= (see prepare_exports)")
        naive = variant == "naive"  # the stateless folder, every call a new file
        host = _cached(("host", str(folder), naive),
                       lambda: Host(folder, threads=1, per_call_offline=naive, reset_dsp=naive))
        return enhance(host, audio, chunk=chunk)
    raise DfnbError(f"unknown variant {variant!r}; the study knows {', '.join(VARIANTS)}")


def run_cell(model: str, variant: str, chunk: int | None, clip: str, *, folder: Path | str | None = None,
             plc: bool = True) -> tuple[dict, np.ndarray]:
    """One cell: the enhanced audio and its row of the tidy table (:data:`COLUMNS`).

    Parameters
    ----------
    model, variant, clip : str
        A model name, one of :data:`VARIANTS`, a clip name of ``data/manifest.json`` (:mod:`dfnb.clips`).
    chunk : int or None
        Hops per call for the chunked variants; None for ``noisy`` and ``offline``.
    folder : path, optional
        The exported folder of a host variant (the ``stateless`` one for ``naive``).
    plc : bool
        Also compute PLCMOS.

    Returns
    -------
    (dict, numpy.ndarray)
        The row (:data:`dfnb.quality_table.COLUMNS`: scores against the clip's clean recording when it has
        one, and the SNR of the difference against the offline output), and the output audio (48 kHz).

    Examples
    --------
    >>> folder = folders["DeepFilterNet3", "stateless"]  # doctest: +SKIP
    >>> row, y = run_cell("DeepFilterNet3", "stateless", 7, "vb_p232_028", folder=folder)  # doctest: +SKIP
    >>> row["dnsmos_ovrl"], row["pesq"]  # doctest: +SKIP

    Notebook: 06_quality_cost
    """
    if (chunk is None) != (variant in REFERENCES):
        raise DfnbError(f"variant {variant!r} takes {'no chunk (None)' if variant in REFERENCES else 'a chunk size'}"
                        f", got chunk={chunk!r}")
    noisy, clean, sr = _pair(clip)
    t0 = time.perf_counter()
    y = enhance_variant(model, variant, noisy, chunk, folder)
    t1 = time.perf_counter()
    ref = y if variant == "offline" else _cached(("offline", model, clip),
                                                  lambda: enhance_variant(model, "offline", noisy, None))
    scores = score_output(y, sr, clean=clean, reference=ref, plc=plc)
    row = {"model": model, "variant": variant, "chunk": chunk, "clip": clip, "has_clean": clean is not None,
           **scores, "enhance_s": t1 - t0, "score_s": time.perf_counter() - t1}
    return row, y


def _task(cell: tuple, folder: str | None, plc: bool) -> dict:
    """What a worker runs: one cell, its row only (the audio stays in the worker)."""
    return run_cell(*cell, folder=folder, plc=plc)[0]


def run_study(models: Sequence[str], clips: Sequence[str], chunks: Sequence[int] = CHUNKS, *,
              variants: Sequence[str] = VARIANTS, workers: int | None = None, scheduler: str | None = None,
              export_root: Path | str | None = None, plc: bool = True, progress: bool = True,
              checkpoint: Path | str | None = None, say: Callable[[str], None] = print) -> list[dict]:
    """Run every cell of models × variants × chunks × clips; the tidy table, one row per cell.

    Parameters
    ----------
    models, clips, chunks, variants : sequences
        What to cross (see :func:`study_cells`).
    workers : int, optional
        Worker processes of a local Dask cluster (default: one per CPU core). ``1`` runs in this process,
        without Dask.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) to use instead of a local cluster.
    export_root : path, optional
        Where the host variants are exported once per model (:func:`prepare_exports`).
    plc : bool
        Also compute PLCMOS.
    progress : bool
        Show a tqdm progress bar over cells.
    checkpoint : path, optional
        A CSV that every finished row is appended to at once; cells already in it are not run again, so an
        interrupted study resumes where it stopped.

    Returns
    -------
    list of dict
        Rows with the keys :data:`dfnb.quality_table.COLUMNS`, clip by clip (every model, variant and chunk of
        the first clip, then the next clip), so a study stopped early still covers whole clips.

    Examples
    --------
    >>> rows = run_study(["DeepFilterNet3"], ["vb_p232_028"], [7], workers=1)  # doctest: +SKIP
    >>> median_table(rows)  # doctest: +SKIP

    Notebook: 06_quality_cost
    """
    cells = sorted(study_cells(models, clips, chunks, variants), key=lambda c: list(clips).index(c[3]))
    done: dict[tuple, dict] = {}
    if checkpoint is not None and Path(checkpoint).is_file():
        done = {(r["model"], r["variant"], r["chunk"], r["clip"]): r for r in read_table(checkpoint)}
        say(f"{checkpoint}: {sum(c in done for c in cells)} of {len(cells)} cells already done, not run again")
    todo = [c for c in cells if c not in done]
    exports = {"stateless" if v == "naive" else v for v in variants if v in CHUNKED}
    folders = prepare_exports(models, export_root, variants=[v for v in HOST_VARIANTS if v in exports], say=say)
    jobs = [(cell, None if cell[1] in REFERENCES else str(folders[cell[0], "stateless" if cell[1] == "naive"
                                                                   else cell[1]])) for cell in todo]
    bar = _progress(len(jobs), progress)

    def finished(row: dict) -> None:
        done[row["model"], row["variant"], row["chunk"], row["clip"]] = row
        if checkpoint is not None:
            append_rows([row], checkpoint)
        bar.update(1)

    try:
        if jobs and scheduler is None and workers == 1:
            for cell, folder in jobs:
                finished(_task(cell, folder, plc))
        elif jobs:
            _run_dask(jobs, finished, plc, workers, scheduler)
    finally:
        bar.close()
    return [done[c] for c in cells if c in done]


def _progress(total: int, show: bool):
    try:  # the text bar: tqdm.auto's widget needs ipywidgets, and warns in every notebook that lacks it
        from tqdm import tqdm
    except ImportError:
        if show:
            raise DfnbError("the progress bar needs tqdm: pip install 'dfnb[quality]' (or pass progress=False)"
                            ) from None
        tqdm = None
    if tqdm is None or not show:
        class _Quiet:
            def update(self, n: int = 1) -> None: ...
            def close(self) -> None: ...
        return _Quiet()
    return tqdm(total=total, desc="quality cells", unit="cell", smoothing=0.05)


def _run_dask(jobs: list, finished: Callable[[dict], None], plc: bool, workers: int | None,
              scheduler: str | None) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as e:
        raise DfnbError(f"parallel runs need dask.distributed ({e}): pip install 'dfnb[quality]', or pass "
                        "workers=1 to run in this process") from e
    import os

    cluster = None
    if scheduler is None:
        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        with Client(scheduler or cluster) as client:
            futures = [client.submit(_task, cell, folder, plc, pure=False) for cell, folder in jobs]
            for fut in as_completed(futures):
                finished(fut.result())  # a failing cell raises here, with the worker's traceback
    finally:
        if cluster is not None:
            cluster.close()
