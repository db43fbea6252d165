"""Execute every notebook in full mode and render it as HTML: ``python -m dfnb.report --out report``.

Each ``notebooks/NN_*.ipynb`` is run top to bottom with nbclient (``DFNB_FAST`` removed from the kernel's
environment, so the notebooks use their full clips and chunk sweeps), on the Jupyter kernel named ``dfnb`` when
it is registered (``make venv`` registers it) and on ``python3`` otherwise, with ``notebooks/`` as the working
directory. The executed notebook (``<name>.ipynb``, outputs included) and its HTML rendering (``<name>.html``)
are written into ``--out`` (git-ignored ``report/``), plus an ``index.html`` linking them. The committed
notebooks are never modified: they stay output-free.

A failing cell stops that notebook; its partial HTML is still written (the traceback is in it), the others
still run, and the command exits with status 1 naming every notebook that failed, the cell and the error.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path

__all__ = ["NOTEBOOKS_DIR", "find_notebooks", "pick_kernel", "full_mode_env", "run_notebook", "main"]

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PREFERRED_KERNEL = "dfnb"
FALLBACK_KERNEL = "python3"


def find_notebooks(folder: Path = NOTEBOOKS_DIR, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_*.ipynb``) in order; ``only`` keeps those whose name contains any item."""
    nbs = sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if only:
        nbs = [p for p in nbs if any(o in p.stem for o in only)]
    return nbs


def pick_kernel(preferred: str = PREFERRED_KERNEL) -> str:
    """``preferred`` if that kernelspec is registered (in any Jupyter path, the venv's included), else python3."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return preferred if preferred in specs else FALLBACK_KERNEL


def full_mode_env() -> dict:
    """The environment notebooks run in for a report: this process's, without ``DFNB_FAST``."""
    env = dict(os.environ)
    env.pop("DFNB_FAST", None)
    return env


def run_notebook(path: Path, out_dir: Path, *, kernel: str, timeout: int = 3600) -> tuple[Path, str | None, float]:
    """Execute ``path`` in full mode, write ``<out_dir>/<stem>.ipynb`` and ``.html``; return (html path, error
    message or None, seconds)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
    error = None
    t0 = time.perf_counter()
    try:
        client.execute(env=full_mode_env())
    except CellExecutionError as e:
        error = _describe_failure(nb, e)
    except Exception as e:  # noqa: BLE001 -- kernel died, timeout, missing kernel: still say which notebook
        error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / f"{path.stem}.ipynb")
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    html_path = out_dir / f"{path.stem}.html"
    html_path.write_text(body, encoding="utf-8")
    return html_path, error, seconds


def _describe_failure(nb, err) -> str:
    """'cell N: <ename>: <evalue>' for the first cell whose output holds an error."""
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"code cell {i} ({first[:60]!r}): {out.get('ename')}: {out.get('evalue')}"
    return str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__


def _write_index(out_dir: Path, results: list[tuple[Path, str | None, float]]) -> Path:
    items = []
    for html_path, error, seconds in results:
        status = f"FAILED — {html.escape(error)}" if error else f"ok, {seconds:.0f} s"
        items.append(f'<li><a href="{html_path.name}">{html_path.stem}</a> ({status})</li>')
    page = ("<!doctype html><meta charset='utf-8'><title>dfnb report</title>"
            "<h1>dfnb notebooks (full mode)</h1><ul>" + "\n".join(items) + "</ul>")
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dfnb.report", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report)")
    ap.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these (e.g. 01 03)")
    ap.add_argument("--kernel", default=None, help="Jupyter kernel name (default: dfnb if registered, else python3)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (default 3600)")
    args = ap.parse_args(argv)

    nbs = find_notebooks(only=args.only)
    if not nbs:
        print(f"error: no notebooks matching {args.only or '*'} in {NOTEBOOKS_DIR}", file=sys.stderr)
        return 1
    kernel = args.kernel or pick_kernel()
    if kernel == FALLBACK_KERNEL and args.kernel is None:
        print(f"note: kernel {PREFERRED_KERNEL!r} is not registered, using {FALLBACK_KERNEL!r} "
              "(register it with `make venv`)", file=sys.stderr)
    print(f"running {len(nbs)} notebook(s) in full mode on kernel {kernel!r} -> {args.out}/", flush=True)
    results = []
    for nb in nbs:
        print(f"  {nb.name} ...", end=" ", flush=True)
        html_path, error, seconds = run_notebook(nb, args.out, kernel=kernel, timeout=args.timeout)
        results.append((html_path, error, seconds))
        print(f"{'FAILED' if error else 'ok'} ({seconds:.0f} s) -> {html_path}", flush=True)
    index = _write_index(args.out, results)
    print(f"index: {index}")
    failed = [(p, e) for p, e, _ in results if e]
    if failed:
        print(f"\nerror: {len(failed)} notebook(s) failed (the traceback is in each HTML):", file=sys.stderr)
        for p, e in failed:
            print(f"  {p.stem}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
