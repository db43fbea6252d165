"""The hosts: runtimes that run an exported ONNX folder without torch, as a realtime host would.

Each module is one host, and each host is a :class:`dfnb.runtime.Runtime` (``reset``, ``process``, ``flush``,
``delay_samples``, ``trace``), so :func:`dfnb.runtime.enhance` runs any of them:

* :mod:`dfnb.hosts.onnx` — the general onnxruntime host for every dfnb variant (and upstream's three files);
* :mod:`dfnb.hosts.fast` — the fast exact host for ``step`` folders;
* :mod:`dfnb.hosts.official` — the official realtime runtime's per-hop behaviour (libDF/tract) on a step graph;
* :mod:`dfnb.hosts.pipeline` — the Rust pipeline ``shimondoodkin/deepfilter-rt``'s feedings (a ring of T
  frames, the newest sliced before the GRUs, lsnr gating) on any folder it runs;
  :mod:`dfnb.hosts.pipeline_fixes` replays them on an exact export with each cause switchable.

Nothing here imports torch: a realtime user deploys an exported folder with numpy, libdf and onnxruntime only.

Notebook: 02_stateful_export
"""

__all__: list[str] = []
