"""Where a result came from, said without leaking the machine's paths: provenance and path scrubbing.

:func:`collect` records what a reader needs to trust or reproduce a report — the dfnb commit (and whether the
checkout had uncommitted changes), the versions of dfnb, torch, onnxruntime, onnx, deepfilternet and numpy, the
date, the machine (OS, CPU, cores) and the exact command. :class:`Scrubber` rewrites absolute paths into names a
shared page can show: a file or folder the user passed becomes its name, the repository ``[repo]``, the shared
assets ``[shared]`` (or ``$DFNB_MIRROR``), the temporary directory ``[tmp]``, the home directory ``~``, the Python
installation ``[python]``.

Notebook: fidelity_report
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from .assets import MIRROR_ENV, REPO_ROOT, mirror_dir, shared_dir

__all__ = ["PACKAGES", "Scrubber", "git_commit", "collect", "markdown"]

#: Distributions whose versions a report records.
PACKAGES = ("dfnb", "torch", "onnxruntime", "onnx", "deepfilternet", "numpy")


def git_commit(repo: Path = REPO_ROOT) -> str:
    """``"<short sha>"`` of the checkout, ``+ uncommitted changes`` when it is dirty, or ``"unknown"``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + (" + uncommitted changes" if dirty else "")) if sha else "unknown"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Scrubber:
    """Replace absolute paths by display names in any text.

    ``names`` maps paths the user passed (a clip, a folder, an output directory) to what the page shows; the
    repository, the temp directory, the home directory and the Python prefix are always replaced. Longer paths
    are replaced first, so a file inside the repository keeps its repository-relative name.
    """

    def __init__(self, names: Mapping[str | Path, str] | None = None):
        pairs: dict[str, str] = {}
        for p, name in (names or {}).items():
            for variant in {str(p), str(Path(p).absolute()), str(Path(p).resolve())}:
                pairs[variant.rstrip("/")] = name
        roots = [(REPO_ROOT, "[repo]"), (shared_dir(), "[shared]"), (Path(sys.prefix), "[python]"),
                 (Path(sys.base_prefix), "[python]"), (Path(tempfile.gettempdir()), "[tmp]"), (Path.home(), "~")]
        if mirror_dir() is not None:
            roots.insert(0, (mirror_dir(), f"${MIRROR_ENV}"))
        for p, name in roots:
            for variant in {str(p), str(p.resolve())}:
                if len(variant) > 1:
                    pairs.setdefault(variant.rstrip("/"), name)
        self.pairs = sorted(pairs.items(), key=lambda kv: -len(kv[0]))

    def __call__(self, text: str) -> str:
        for path, name in self.pairs:
            if path and path in text:
                text = re.sub(re.escape(path) + r"(?![\w.-])", name.replace("\\", "\\\\"), text)
        return text


def collect(argv: Iterable[str] | None = None, *, scrub: Scrubber | None = None, mode: str = "") -> dict:
    """Provenance of this run as a flat dict of strings (see the module docstring); paths scrubbed.

    Examples
    --------
    >>> p = collect(["dfnb", "report", "--fast"])  # doctest: +SKIP
    >>> p["commit"], p["torch"]  # doctest: +SKIP

    Notebook: fidelity_report
    """
    scrub = scrub or Scrubber()
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    argv = list(sys.argv if argv is None else argv)
    if argv and os.sep in argv[0]:
        argv[0] = Path(argv[0]).name  # .venv/bin/dfnb -> dfnb
    return {
        "command": scrub(" ".join(a if " " in a and i == 0 else shlex.quote(a) for i, a in enumerate(argv))),
        "commit": git_commit(),
        **versions,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {_cpu()}, {os.cpu_count()} logical cores",
        "mode": mode,
    }


def markdown(prov: Mapping[str, str]) -> str:
    """A compact markdown header: one line of what ran where, one of versions."""
    versions = ", ".join(f"{k} {prov[k]}" for k in PACKAGES if k in prov)
    lines = [f"**Provenance** — `{prov.get('command', '')}`" + (f" ({prov['mode']})" if prov.get("mode") else ""),
             f"dfnb commit {prov.get('commit')}; {versions}; Python {prov.get('python')}",
             f"run {prov.get('date')} on {prov.get('machine')}"]
    return "<small>\n\n" + "  \n".join(lines) + "\n\n</small>"
