"""Run notebooks and render them as shareable HTML pages: ``dfnb report`` (also ``python -m dfnb.report``,
``make report``).

Two kinds of page:

* the **fidelity report** (``notebooks/fidelity_report.ipynb``) for a user's own clip and folder —
  ``dfnb report --clip my.wav --folder models/dfn3_full`` runs it once per (clip, folder) pair, parameterised
  with papermill: headline table and verdict against 90 dB first, then error vs chunk size, per-hop error with
  call boundaries in output time, error by position in the call, difference spectrograms on the signal's scale
  (whole clip and zoomed), LSNR drift, and A/B/residual players;
* the **numbered notebooks** (``notebooks/NN_*.ipynb``), the investigation itself — run when no clip or folder
  is given (``--only 01 03`` picks some), in full mode unless ``--fast``.

Every page is self-contained and safe to share: figures and audio embedded, code hidden by default (a button
shows it; ``--show-code`` starts with it shown), a provenance header (commit, versions, date, machine, the exact
command) under the title, and no absolute paths — every path the page would show is rewritten by
:class:`dfnb.provenance.Scrubber` (the clip and folder become their names). Figures are re-encoded as 256-colour
PNGs when that makes them smaller. ``--out`` (default ``report/``) receives ``<page>.html``, the executed
``<page>.ipynb`` (scrubbed too) and ``index.html``. The committed notebooks are never modified.

A failing cell stops that notebook; its page is still written (with the traceback), the others still run, and
the command exits with status 1 naming every notebook that failed, the cell and the error.

Notebook: fidelity_report (and all the numbered ones: this renders them)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import logging
import os
import re
import sys
import time
from pathlib import Path

from .errors import DfnbError, ModelFolderError
from .provenance import Scrubber, collect, markdown

__all__ = ["NOTEBOOKS_DIR", "FIDELITY_NOTEBOOK", "SUMMARY_MIME", "find_notebooks", "pick_kernel", "run_notebook",
           "render_html", "add_arguments", "run", "main"]

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
FIDELITY_NOTEBOOK = NOTEBOOKS_DIR / "fidelity_report.ipynb"
#: The output mimetype a notebook uses to hand its headline numbers to the index page (not rendered).
SUMMARY_MIME = "application/vnd.dfnb.summary+json"
PREFERRED_KERNEL = "dfnb"
FALLBACK_KERNEL = "python3"
_TOGGLE = """<style>.jp-CodeCell .jp-Cell-inputWrapper{display:none} body.dfnb-show-code .jp-CodeCell
.jp-Cell-inputWrapper{display:block} #dfnb-code{position:fixed;top:8px;right:8px;z-index:9;font-size:12px}</style>
<button id="dfnb-code" onclick="document.body.classList.toggle('dfnb-show-code');this.textContent=
document.body.classList.contains('dfnb-show-code')?'Hide code':'Show code'">Show code</button>"""


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


@contextlib.contextmanager
def _mode(fast: bool):
    """``DFNB_FAST`` set (FAST mode) or removed (full mode) for the kernels started inside, restored after."""
    before = os.environ.get("DFNB_FAST")
    if fast:
        os.environ["DFNB_FAST"] = "1"
    else:
        os.environ.pop("DFNB_FAST", None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DFNB_FAST", None)
        else:
            os.environ["DFNB_FAST"] = before


def _shrink_png(b64: str) -> str:
    """The PNG re-encoded with a 256-colour palette when that is smaller (figures use few colours)."""
    from PIL import Image

    raw = base64.b64decode(b64)
    buf = io.BytesIO()
    Image.open(io.BytesIO(raw)).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
        buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < 0.8 * len(raw) else b64


def _clean(nb, scrub: Scrubber, prov_md: str | None) -> dict | None:
    """Scrub paths from sources and outputs, shrink figures, drop papermill's metadata, insert the provenance
    under the title; return the notebook's summary (``SUMMARY_MIME`` output) if it gave one."""
    import nbformat

    summary = None
    for cell in nb.cells:
        cell.source = scrub(cell.source)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = scrub(out["text"])
            if "traceback" in out:
                out["traceback"] = [scrub(t) for t in out["traceback"]]
            if "evalue" in out:
                out["evalue"] = scrub(out["evalue"])
            data = out.get("data", {})
            for mime in list(data):
                if mime.startswith("text/") and isinstance(data[mime], str):
                    data[mime] = scrub(data[mime])
            if "image/png" in data:
                data["image/png"] = _shrink_png(data["image/png"])
            if SUMMARY_MIME in data:
                summary = dict(data.pop(SUMMARY_MIME))
        if "outputs" in cell:  # the summary's output has nothing left to show
            cell.outputs = [o for o in cell.outputs if o.get("output_type") not in ("display_data", "execute_result")
                            or o.get("data")]
        cell.get("metadata", {}).pop("papermill", None)
    nb.metadata.pop("papermill", None)
    question = re.search(r"\*\*Question:\s*(.+?)\*\*", nb.cells[0].source, re.S) if nb.cells else None
    if question:
        summary = {**(summary or {}), "question": " ".join(question.group(1).split())}
    if prov_md:
        nb.cells.insert(1 if nb.cells else 0, nbformat.v4.new_markdown_cell(prov_md))
    return summary


def render_html(nb, *, show_code: bool = False) -> str:
    """The notebook as one self-contained HTML page (lab template, no prompts), code hidden behind a button."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True
                           ).from_notebook_node(nb)
    toggle = _TOGGLE + ("<script>document.body.classList.add('dfnb-show-code');document.getElementById('dfnb-code')"
                        ".textContent='Hide code'</script>" if show_code else "")
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + toggle, body, count=1)


def _describe_failure(nb, err) -> str:
    """'code cell N: <ename>: <evalue>' for the first cell whose output holds an error."""
    code_cells = [c for c in nb.cells
                  if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    for i, cell in enumerate(code_cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"code cell {i} ({first[:60]!r}): {out.get('ename')}: {out.get('evalue')}"
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def run_notebook(path: Path, out_dir: Path, *, kernel: str, timeout: int = 3600, fast: bool = False,
                 parameters: dict | None = None, stem: str | None = None, scrub: Scrubber | None = None,
                 prov_md: str | None = None, show_code: bool = False) -> tuple[Path, str | None, float, dict | None]:
    """Execute ``path`` with papermill (``parameters`` injected; FAST or full mode), clean it, write
    ``<out_dir>/<stem>.ipynb`` and ``.html``; return (html path, error message or None, seconds, summary)."""
    import nbformat

    try:
        import papermill
    except ImportError:
        raise DfnbError("papermill is not installed; install the notebooks extra: "
                        "pip install -e '.[notebooks]'") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or path.stem
    out_nb = out_dir / f"{stem}.ipynb"
    logging.getLogger("papermill").setLevel(logging.ERROR)  # not "Unable to parse line ... os.environ.get(...)"
    error = None
    t0 = time.perf_counter()
    with _mode(fast):
        try:
            papermill.execute_notebook(str(path), str(out_nb), parameters=parameters or {}, kernel_name=kernel,
                                       cwd=str(path.parent), progress_bar=False, execution_timeout=timeout)
        except Exception as e:  # noqa: BLE001 -- a failing cell, a dead kernel, a timeout: still say which notebook
            error = e
    seconds = time.perf_counter() - t0
    nb = nbformat.read(out_nb, as_version=4) if out_nb.exists() else nbformat.read(path, as_version=4)
    if error is not None:
        error = scrub(_describe_failure(nb, error)) if scrub else _describe_failure(nb, error)
    summary = _clean(nb, scrub or Scrubber(), prov_md)
    nbformat.write(nb, out_nb)
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(render_html(nb, show_code=show_code), encoding="utf-8")
    return html_path, error, seconds, summary


def _index(out_dir: Path, results: list, prov_md: str) -> Path:
    rows, heads = [], []
    for html_path, error, seconds, summary in results:
        status = f"FAILED — {html.escape(error)}" if error else f"ok, {seconds:.0f} s"
        size = f", {html_path.stat().st_size / 1e6:.1f} MB" if html_path.exists() else ""
        ask = f"<br><small>{html.escape(summary['question'])}</small>" if summary and "question" in summary else ""
        rows.append(f'<li><a href="{html_path.name}">{html_path.stem}</a> ({status}{size}){ask}</li>')
        if summary and "worst_db" in summary:
            worst = summary.get("worst_db", float("nan"))
            esc = {k: html.escape(str(summary.get(k))) for k in ("clip", "tested", "variant", "model")}
            heads.append(f"<tr><td>{esc['clip']}</td><td>{esc['tested']}"
                         f" ({esc['variant']})</td><td>{esc['model']}"
                         f"</td><td>{worst:.1f}</td><td><b>{'exact' if summary.get('exact') else 'NOT exact'}</b></td>"
                         f'<td><a href="{html_path.name}">report</a></td></tr>')
    table = ("<h2>Headline</h2><table border=1 cellpadding=4><tr><th>clip</th><th>streamed by</th><th>reference</th>"
             "<th>worst SNR of difference (dB)</th><th>verdict (≥ 90 dB)</th><th></th></tr>" + "".join(heads) +
             "</table>") if heads else ""
    lines = (html.escape(re.sub(r"[*`]|</?small>", "", line)) for line in prov_md.split("  \n"))
    prov = "<p>" + "<br>".join(lines) + "</p>"
    page = ("<!doctype html><meta charset='utf-8'><title>dfnb report</title><h1>dfnb report</h1>" + prov + table +
            "<h2>Pages</h2><ul>" + "\n".join(rows) + "</ul>")
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _page_name(clip: str, folder: str | None) -> str:
    safe = lambda s: re.sub(r"[^\w.-]+", "_", s).strip("_") or "x"  # noqa: E731
    return f"fidelity_{safe(Path(clip).stem)}__{safe(Path(folder).name) if folder else 'pytorch_stream'}"


def _fidelity_jobs(args) -> tuple[list, dict]:
    """``[(stem, parameters)]`` for every (clip, folder) pair, checked before anything runs, and the display
    names of the paths the user gave (for the scrubber)."""
    from .fidelity import folder_model, load_user_clip
    from .folder import inspect_folder

    names: dict = {}
    clips = []
    for c in args.clip or [None]:
        if c is not None and Path(c).exists():
            p = Path(c).resolve()
            load_user_clip(p, downmix=args.downmix, max_seconds=1.0)  # readable, mono or --downmix: fail early
            names[p] = p.name
            clips.append(str(p))
        else:
            if c is not None:
                load_user_clip(c, max_seconds=1.0)  # a known clip name, or a clear error
            clips.append(c)
    folders = []
    for f in args.folder or [None]:
        if f is not None:
            p = Path(f).resolve()
            if not p.is_dir():
                raise ModelFolderError(f"{f} is not a folder; pass an exported model folder (dfnb export --out ...).")
            inspect_folder(p)
            folder_model(p, args.model)
            names[p] = p.name
            folders.append(str(p))
        else:
            folders.append(None)
    jobs = []
    for c in clips:
        for f in folders:
            params = {"CHUNK": args.chunk, "DOWNMIX": args.downmix}
            params.update({k: v for k, v in (("CLIP", c), ("FOLDER", f), ("MODEL", args.model)) if v is not None})
            if args.max_seconds:
                params["MAX_SECONDS"] = args.max_seconds
            jobs.append((_page_name(c or ("vb_p232_028" if args.fast else "vb_p232_013"), f), params))
    return jobs, names


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``dfnb report`` / ``python -m dfnb.report``."""
    ap.add_argument("--clip", action="extend", nargs="+", metavar="NAME|PATH",
                    help="clip names (data/manifest.json) or audio files; one report per clip and folder")
    ap.add_argument("--folder", action="extend", nargs="+", metavar="DIR", help="exported folders to check")
    ap.add_argument("--model", default=None,
                    help="reference model (default: the folder's manifest, else DeepFilterNet3)")
    ap.add_argument("--chunk", type=int, default=7, help="hops per call for the detailed figures (default 7)")
    ap.add_argument("--downmix", action="store_true", help="average the channels of a multichannel clip")
    ap.add_argument("--max-seconds", type=float, default=None, help="process only the beginning of long clips")
    ap.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report)")
    ap.add_argument("--only", nargs="*", help="numbered notebooks to run (names containing e.g. 01 03); default: all "
                                              "when no --clip/--folder is given")
    ap.add_argument("--fast", action="store_true", help="FAST mode (shorter audio, fewer chunk sizes)")
    ap.add_argument("--show-code", action="store_true", help="show the code in the pages (hidden by default)")
    ap.add_argument("--kernel", default=None, help="Jupyter kernel name (default: dfnb if registered, else python3)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (default 3600)")


def run(args, command: list[str] | None = None) -> int:
    """Render the pages ``args`` asks for (the options of :func:`add_arguments`).

    Parameters
    ----------
    args : argparse.Namespace
        ``clip``, ``folder``, ``model``, ``chunk``, ``downmix``, ``max_seconds``, ``out``, ``only``, ``fast``,
        ``show_code``, ``kernel``, ``timeout``. Clips and folders are checked before anything runs.
    command : list of str, optional
        The command line to record in the provenance header (default ``sys.argv``).

    Returns
    -------
    int
        0 when every page rendered, 1 when a notebook failed (its page holds the traceback).

    Examples
    --------
    >>> from dfnb.cli import build_parser  # doctest: +SKIP
    >>> run(build_parser().parse_args(["report", "--clip", "my.wav", "--folder", "models/dfn3_full"]))  # doctest: +SKIP

    Notebook: fidelity_report
    """
    if args.chunk < 1:
        raise DfnbError(f"--chunk must be a positive number of hops, got {args.chunk}.")
    fidelity = bool(args.clip or args.folder)
    jobs, names = _fidelity_jobs(args) if fidelity else ([], {})
    numbered = find_notebooks(only=args.only) if (args.only is not None or not fidelity) else []
    if not jobs and not numbered:
        raise DfnbError(f"no notebooks matching {args.only or '*'} in {NOTEBOOKS_DIR}; see `dfnb report --help`.")
    index = args.out / "index.html"
    if index.exists() and "<title>dfnb report</title>" not in index.read_text(encoding="utf-8", errors="replace"):
        raise DfnbError(f"{args.out} holds an index.html that dfnb report did not write; choose another --out "
                        "folder (pages and index.html are written there).")
    names[args.out.resolve()] = "."
    scrub = Scrubber(names)
    mode = "FAST mode" if args.fast else "full mode"
    prov_md = markdown(collect(command, scrub=scrub, mode=mode))
    kernel = args.kernel or pick_kernel()
    if kernel == FALLBACK_KERNEL and args.kernel is None:
        print(f"note: kernel {PREFERRED_KERNEL!r} is not registered, using {FALLBACK_KERNEL!r} "
              "(register it with `make venv`)", file=sys.stderr)
    todo = [(FIDELITY_NOTEBOOK, stem, params) for stem, params in jobs] + [(nb, nb.stem, {}) for nb in numbered]
    print(f"rendering {len(todo)} page(s) in {mode} on kernel {kernel!r} -> {args.out}/", flush=True)
    results = []
    for path, stem, params in todo:
        print(f"  {stem} ...", end=" ", flush=True)
        res = run_notebook(path, args.out, kernel=kernel, timeout=args.timeout, fast=args.fast, parameters=params,
                           stem=stem, scrub=scrub, prov_md=prov_md, show_code=args.show_code)
        results.append(res)
        size = res[0].stat().st_size / 1e6
        print(f"{'FAILED' if res[1] else 'ok'} ({res[2]:.0f} s, {size:.1f} MB) -> {res[0]}", flush=True)
    print(f"index: {_index(args.out, results, prov_md)}")
    failed = [(p, e) for p, e, _, _ in results if e]
    if failed:
        print(f"\nerror: {len(failed)} notebook(s) failed (the traceback is in each HTML):", file=sys.stderr)
        for p, e in failed:
            print(f"  {p.stem}: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dfnb.report", description=__doc__.splitlines()[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        return run(args, ["python -m dfnb.report", *(sys.argv[1:] if argv is None else argv)])
    except DfnbError as e:
        print(f"dfnb report: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
