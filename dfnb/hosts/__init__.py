"""The hosts: runtimes that run an exported ONNX folder without torch, as a realtime host would.

Each module is one host, and each host is a :class:`dfnb.runtime.Runtime` (``reset``, ``process``, ``flush``,
``delay_samples``, ``trace``), so :func:`dfnb.runtime.enhance` runs any of them:

* :mod:`dfnb.hosts.onnx` — the general onnxruntime host for every dfnb variant (and upstream's three files);
* :mod:`dfnb.hosts.fast` — the fast exact host for ``step`` folders;
* :mod:`dfnb.hosts.official` — the official realtime runtime's per-hop behaviour (libDF/tract) on a step graph;
* :mod:`dfnb.hosts.pipeline` — the Rust pipeline ``shimondoodkin/deepfilter-rt``'s feedings (a ring of T
  frames, the newest sliced before the GRUs, lsnr gating) on any folder it runs;
  :mod:`dfnb.hosts.pipeline_fixes` replays them on an exact export with each cause switchable.
* :mod:`dfnb.hosts.batched` — many independent streams per call on a batched step folder (not a Runtime: it
  holds many streams).

Nothing here imports torch: a realtime user deploys an exported folder with numpy, libdf and onnxruntime only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["HOSTS", "open_host"]

HOSTS = ("auto", "onnx", "fast")
"""``auto`` picks the fastest exact host that can serve the folder; ``onnx`` forces the general host."""


def open_host(folder: Path | str, *, host: str = "auto", threads: int = 1, **kw: Any):
    """A runtime for an exported folder: :class:`~dfnb.hosts.fast.FastStepHost` for ``step`` folders, else the
    general :class:`~dfnb.hosts.onnx.Host` (``host="onnx"`` forces it; ``**kw`` go to the host).

    Parameters
    ----------
    folder : path
        A model folder (any dfnb variant, or upstream's three files with their ``config.ini``).
    host : {"auto", "onnx", "fast"}
        ``auto``: the fast host for a ``step`` folder when no ``**kw`` are given, else the general host.
    threads : int
        onnxruntime intra-op threads.
    **kw
        Passed to :class:`~dfnb.hosts.onnx.Host` (``per_call_offline``, ``reset_dsp``, ``probes``).

    Returns
    -------
    dfnb.runtime.Runtime
        A reset runtime; run it with :func:`dfnb.runtime.enhance` or call ``process``/``flush`` yourself.

    Raises
    ------
    DfnbError
        An unknown ``host``; :class:`~dfnb.errors.ModelFolderError` for a folder that does not check out.

    Examples
    --------
    >>> from dfnb.runtime import enhance  # doctest: +SKIP
    >>> y = enhance(open_host("models/dfn3_step"), noisy)  # doctest: +SKIP
    """
    from ..args import check_choice, check_path
    from ..errors import ModelFolderError

    host = check_choice(host, "host", HOSTS)
    folder = check_path(folder, "folder", error=ModelFolderError, what="the path of a model folder")
    from .batched import batch_of

    if batch_of(folder) is not None:
        raise ModelFolderError(f"{folder} is a batched step folder (many streams per call); run it with "
                               "dfnb.hosts.batched.BatchedHost, or export a single-stream one (--variant step).")
    if host == "fast" or (host == "auto" and not kw and (folder / "step.onnx").is_file()):
        from .fast import FastStepHost

        return FastStepHost(folder, threads=threads)
    from .onnx import Host

    return Host(folder, threads=threads, **kw)
