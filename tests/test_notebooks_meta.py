"""House rules of the notebooks, checked without running them (``make test`` runs them through nbmake).

Every ``notebooks/NN_*.py`` and the fidelity report ``notebooks/fidelity_report.py`` (jupytext percent format,
the source of truth) has a paired ``.ipynb`` that:
is committed without outputs, has one parameters cell (tagged ``parameters``) reading ``DFNB_FAST``, opens with
a markdown cell stating the question and "What you will learn", ends with a markdown "Summary" (and "Where to
go next"), and holds exactly the cells of its ``.py`` (a jupytext round trip).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NUMBERED = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
SOURCES = NUMBERED + [NOTEBOOKS / "fidelity_report.py"]
FIX = "regenerate it with `.venv/bin/jupytext --to ipynb notebooks/{stem}.py` (outputs stay stripped)"


def _ipynb(py: Path) -> dict:
    return json.loads(py.with_suffix(".ipynb").read_text(encoding="utf-8"))


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def test_the_story_notebooks_exist():
    stems = [p.stem[:2] for p in NUMBERED]
    assert stems[:6] == ["00", "01", "02", "03", "04", "05"], f"notebooks/ holds {[p.name for p in NUMBERED]}"
    assert stems == sorted(set(stems)), f"two notebooks share a number: {[p.name for p in NUMBERED]}"
    orphans = {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")} - {p.stem for p in NUMBERED}
    assert not orphans, f"notebooks without a .py source: {sorted(orphans)}; the .py is the source of truth"


@pytest.fixture(params=SOURCES, ids=[p.stem for p in SOURCES])
def py(request) -> Path:
    p = request.param
    assert p.with_suffix(".ipynb").exists(), f"{p.name} has no paired .ipynb: " + FIX.format(stem=p.stem)
    return p


def test_outputs_stripped(py):
    nb = _ipynb(py)
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{py.stem}.ipynb has outputs in cells {dirty}: " + FIX.format(stem=py.stem)


def test_one_parameters_cell_reading_fast(py):
    cells = [c for c in _ipynb(py)["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{py.stem}: expected one cell tagged 'parameters', found {len(cells)}"
    assert cells[0]["cell_type"] == "code"
    assert 'os.environ.get("DFNB_FAST") == "1"' in _src(cells[0]), f"{py.stem}: the parameters cell must set FAST"


def test_opens_with_the_question(py):
    first = _ipynb(py)["cells"][0]
    text = _src(first)
    assert first["cell_type"] == "markdown", f"{py.stem}: the first cell must be markdown"
    assert "Question" in text and "?" in text, f"{py.stem}: the first cell must state the question"
    assert "What you will learn" in text, f"{py.stem}: the first cell must say 'What you will learn'"


def test_ends_with_summary(py):
    last = _ipynb(py)["cells"][-1]
    text = _src(last)
    assert last["cell_type"] == "markdown", f"{py.stem}: the last cell must be markdown"
    assert "## Summary" in text and "Where to go next" in text, f"{py.stem}: end with Summary + Where to go next"


def test_ipynb_matches_py(py):
    jupytext = pytest.importorskip("jupytext")

    def cells(nb) -> list[tuple]:
        return [(c["cell_type"], _src(c).strip(), tuple(c.get("metadata", {}).get("tags", []))) for c in nb["cells"]]

    from_py = json.loads(jupytext.writes(jupytext.read(py), fmt="ipynb"))
    assert cells(_ipynb(py)) == cells(from_py), f"{py.stem}.ipynb differs from {py.name}: " + FIX.format(stem=py.stem)


def test_report_runs_every_notebook_in_full_mode(monkeypatch):
    import os

    from dfnb import report

    assert [p.stem for p in report.find_notebooks()] == [p.stem for p in NUMBERED]
    assert [p.stem for p in report.find_notebooks(only=["03"])] == ["03_compare_outputs"]
    assert report.FIDELITY_NOTEBOOK.exists() and report.FIDELITY_NOTEBOOK.stem == "fidelity_report"
    monkeypatch.setenv("DFNB_FAST", "1")
    with report._mode(fast=False):
        assert "DFNB_FAST" not in os.environ
    with report._mode(fast=True):
        assert os.environ["DFNB_FAST"] == "1"
    assert os.environ["DFNB_FAST"] == "1"
