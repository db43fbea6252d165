"""House rules of the package, checked on the source without running it (fast: AST and text only).

* no module of ``dfnb/`` imports a ``_private`` name from another module;
* every ``dfnb`` module is short enough to read in one sitting (<= 400 lines);
* every ``Notebook: NN_name`` tag in a docstring names a notebook that exists and imports that module, and
  every ``dfnb`` module a notebook imports carries such a tag (notebooks added later are picked up by glob);
* ``docs/architecture.md`` lists exactly the modules of ``dfnb/`` in its room list.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PKG = REPO / "dfnb"
NOTEBOOKS = REPO / "notebooks"
MAX_LINES = 400
TAG = re.compile(r"Notebook: (\d\d_\w+)")

# Private imports and oversized modules waiting for a split scheduled in another branch (none now). When one is
# gone, the tests below fail until its entry is removed here, so these lists cannot go stale.
PENDING_PRIVATE: set[tuple[str, str, str]] = set()
PENDING_SIZE: set[str] = set()


def _modules() -> dict[str, Path]:
    """``{"dfnb.hosts.onnx": path, ...}`` for every module of the package (``dfnb`` itself included)."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _rel(p: Path) -> str:
    return p.relative_to(REPO).as_posix()


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` in ``module`` reads from (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported_modules(tree: ast.AST, module: str = "") -> set[str]:
    """The dfnb modules a file imports: ``import dfnb.x``, ``from dfnb.x import y`` (y a module or a name)."""
    found = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            found |= {a.name for a in n.names if a.name in MODULES}
        elif isinstance(n, ast.ImportFrom):
            src = _absolute(module, n) if module else (n.module or "")
            for a in n.names:
                sub = f"{src}.{a.name}"
                if sub in MODULES:
                    found.add(sub)
                elif src in MODULES:
                    found.add(src)
    return found


# -- private names --------------------------------------------------------------------------------------------
def _private_imports() -> set[tuple[str, str, str]]:
    hits = set()
    for module, path in MODULES.items():
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(n, ast.ImportFrom):
                src = _absolute(module, n)
                hits |= {(_rel(path), src, a.name) for a in n.names
                         if a.name.startswith("_") and not a.name.startswith("__") and src != module}
    return hits


def test_no_private_names_imported_across_modules():
    hits = _private_imports()
    new = sorted(hits - PENDING_PRIVATE)
    assert not new, (f"imports of private names from another module: {new}; make the name public (and list it "
                     "in that module's __all__) or stop needing it")
    fixed = sorted(PENDING_PRIVATE - hits)
    assert not fixed, f"{fixed} no longer import a private name: remove them from PENDING_PRIVATE"


def test_the_private_import_check_sees_relative_imports():
    """The AST check resolves ``from .models import _x`` in ``dfnb.cli`` and ``from ..x import _y`` in a host."""
    tree = ast.parse("from .models import _models_dir\nfrom ..folder import _read\nfrom . import dsp\n")
    nodes = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert _absolute("dfnb.cli", nodes[0]) == "dfnb.models"
    assert _absolute("dfnb.hosts.onnx", nodes[1]) == "dfnb.folder"
    assert _absolute("dfnb.hosts", nodes[0]) == "dfnb.hosts.models"  # a package's "." is the package itself
    assert _imported_modules(tree, "dfnb.cli") == {"dfnb.models", "dfnb.dsp"}


# -- size -------------------------------------------------------------------------------------------------------
def test_every_module_reads_in_one_sitting():
    sizes = {_rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES.values()}
    long = {f: n for f, n in sizes.items() if n > MAX_LINES and f not in PENDING_SIZE}
    assert not long, f"modules over {MAX_LINES} lines: {long}; split them by concept"
    done = sorted(f for f in PENDING_SIZE if sizes.get(f, 0) <= MAX_LINES)
    assert not done, f"{done} are now <= {MAX_LINES} lines: remove them from PENDING_SIZE"


# -- notebook tags ----------------------------------------------------------------------------------------------
def _tags(path: Path) -> dict[str, set[str]]:
    """``{notebook: {where, ...}}`` for the tags in the module docstring and its public functions/classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    owners: list = [("module", tree)]
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_"):
            owners.append((n.name, n))
    tags: dict[str, set[str]] = {}
    for where, node in owners:
        for nb in TAG.findall(ast.get_docstring(node) or ""):
            tags.setdefault(nb, set()).add(where)
    return tags


def _notebook_imports() -> dict[str, set[str]]:
    return {p.stem: _imported_modules(ast.parse(p.read_text(encoding="utf-8")))
            for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))}


NB_IMPORTS = _notebook_imports()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_notebook_tags_point_to_a_notebook_importing_the_module(module):
    for nb, where in sorted(_tags(MODULES[module]).items()):
        assert nb in NB_IMPORTS, (f"{module} ({sorted(where)}) names notebook {nb}, which does not exist; "
                                  f"notebooks: {sorted(NB_IMPORTS)}")
        assert module in NB_IMPORTS[nb], (f"{module} ({sorted(where)}) names notebook {nb}, which does not import "
                                          f"it (it imports {sorted(NB_IMPORTS[nb])}); name a notebook that uses "
                                          "this module, or drop the tag")


def test_every_module_a_notebook_imports_names_a_notebook():
    used = {m: sorted(nb for nb, mods in NB_IMPORTS.items() if m in mods) for m in MODULES}
    # the bare package holds only __version__: `import dfnb` imports no room
    untagged = {m: nbs for m, nbs in used.items() if nbs and m != "dfnb" and not _tags(MODULES[m])}
    assert not untagged, (f"modules imported by notebooks without a `Notebook: NN_name` tag: {untagged}; add the "
                          "tag of the notebook that explains them to the module docstring")


def test_the_tag_check_reads_notebook_imports():
    tree = ast.parse("import dfnb\nfrom dfnb import clips, plot\nfrom dfnb.hosts.onnx import Host\n"
                     "from dfnb.layout import STATE_GROUPS\nimport numpy\n")
    assert _imported_modules(tree) == {"dfnb", "dfnb.clips", "dfnb.plot", "dfnb.hosts.onnx", "dfnb.layout"}


# -- the room list ----------------------------------------------------------------------------------------------
ROW = re.compile(r"^\| `([\w./]+\.py)` \| (.+?) \| (.+?) \|$", flags=re.M)


def _rooms() -> dict[str, set[str]]:
    """``{module: {dfnb modules it may import}}`` from the room list of docs/architecture.md."""
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Rooms", 1)[1].split("\n## ", 1)[0]
    rooms = {}
    for path, _, may in ROW.findall(section):
        parts = Path("dfnb", path).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        rooms[module] = {t if t == "dfnb" else f"dfnb.{t}" for t in re.findall(r"`([\w.]+)`", may)}
    return rooms


def test_architecture_lists_every_module_and_only_those():
    listed, files = set(_rooms()), set(MODULES)
    assert listed == files, (f"docs/architecture.md's room list is out of date: missing {sorted(files - listed)}, "
                             f"listed but gone {sorted(listed - files)}")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_room_imports_only_what_the_architecture_allows(module):
    allowed = _rooms().get(module)
    if allowed is None:
        pytest.fail(f"{module} is not in docs/architecture.md's room list")
    used = _imported_modules(ast.parse(MODULES[module].read_text(encoding="utf-8")), module) - {module}
    extra = sorted(used - allowed)
    assert not extra, (f"{module} imports {extra}, which docs/architecture.md does not allow it; import through "
                       "an allowed room, or update the room list (and the data flow) if the design changed")
