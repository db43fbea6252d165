"""The tidy table of the quality-cost study: one row per (model, variant, chunk, clip) cell, one column per score.

:func:`write_table` saves it as CSV (and Parquet when pyarrow is installed), :func:`append_rows` adds rows to
a CSV as they finish (a study's checkpoint), :func:`read_table` reads it back; :func:`median_table`,
:func:`paired_gap` and :func:`below_noisy` summarise it. Plain Python and numpy.

Notebook: 06_quality_cost
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DfnbError
from .quality import SCORES

__all__ = ["KEYS", "COLUMNS", "VARIANT_ORDER", "write_table", "append_rows", "read_table", "median_table",
           "paired_gap", "below_noisy"]

KEYS = ("model", "variant", "chunk", "clip")
#: Columns of the tidy table: the cell, whether the clip has a clean reference, the scores, seconds spent.
COLUMNS = KEYS + ("has_clean",) + SCORES + ("enhance_s", "score_s")
#: Row order of the summaries (the study's variants; a variant not listed goes last).
VARIANT_ORDER = ("noisy", "offline", "naive", "stateless", "h0", "gru", "full", "step")
_REFERENCES = ("noisy", "offline")  # variants without a chunk size


def _csv_row(r: dict) -> dict:
    return {k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS}


def write_table(rows: Sequence[dict], out: Path | str, name: str = "quality") -> list[Path]:
    """Write the tidy table as ``out/<name>.csv`` (and ``.parquet`` when pyarrow is installed); the paths.

    Notebook: 06_quality_cost
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows(_csv_row(r) for r in rows)
    paths = [path]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return paths
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in COLUMNS} for r in rows]), out / f"{name}.parquet")
    return paths + [out / f"{name}.parquet"]


def append_rows(rows: Iterable[dict], path: Path | str) -> None:
    """Append rows to the CSV at ``path`` (header written when the file is new), flushed at once.

    Notebook: 06_quality_cost
    """
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(_csv_row(r) for r in rows)


def read_table(path: Path | str) -> list[dict]:
    """Rows of a CSV written by :func:`write_table`, with numbers, None chunks and booleans restored."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            missing = [k for k in COLUMNS if k not in r]
            if missing:
                raise DfnbError(f"{path} is not a quality table (no column(s) {missing}); write it with write_table")
            row: dict[str, Any] = {k: r[k] for k in ("model", "variant", "clip")}
            row["chunk"] = int(r["chunk"]) if r["chunk"] else None
            row["has_clean"] = r["has_clean"] == "True"
            row.update({k: float(r[k]) if r[k] != "" else math.nan for k in SCORES + ("enhance_s", "score_s")})
            rows.append(row)
    return rows


def _groups(rows: Iterable[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["variant"], r["chunk"]), []).append(r)
    return groups


def median_table(rows: Sequence[dict], scores: Sequence[str] = SCORES) -> list[dict]:
    """Median over clips per (model, variant, chunk), nan ignored: PESQ/STOI/SI-SDR over the clips with a clean
    recording, DNSMOS/PLCMOS over all clips. Rows in study order (noisy, offline, then each variant by chunk).

    Notebook: 06_quality_cost
    """
    order = {v: i for i, v in enumerate(VARIANT_ORDER)}
    out = []
    for (m, v, c), rs in _groups(rows).items():
        med = {"model": m, "variant": v, "chunk": c, "clips": len(rs), "clean_clips": sum(r["has_clean"] for r in rs)}
        for s in scores:
            vals = np.array([r[s] for r in rs], dtype=np.float64)
            vals = vals[~np.isnan(vals)]
            med[s] = float(np.median(vals)) if vals.size else math.nan
        out.append(med)
    models = list(dict.fromkeys(r["model"] for r in rows))
    return sorted(out, key=lambda r: (models.index(r["model"]), order.get(r["variant"], 99), r["chunk"] or 0))


def paired_gap(rows: Sequence[dict], score: str, variant: str = "stateless", against: str = "offline") -> list[dict]:
    """Per (model, chunk): the median over clips of ``score(variant) - score(against)`` on the same clip.

    ``against`` may be a reference (``offline``, ``noisy``: compared with every chunk) or a chunked variant.

    Notebook: 06_quality_cost
    """
    base = {(r["model"], r["chunk"], r["clip"]): r[score] for r in rows if r["variant"] == against}
    gaps: dict[tuple, list[float]] = {}
    for r in rows:
        if r["variant"] != variant:
            continue
        b = base.get((r["model"], None if against in _REFERENCES else r["chunk"], r["clip"]))
        if b is not None and not (math.isnan(b) or math.isnan(r[score])):
            gaps.setdefault((r["model"], r["chunk"]), []).append(r[score] - b)
    return [{"model": m, "chunk": c, "clips": len(g), f"{score} {variant}-{against}": float(np.median(g)),
             "worst": float(np.min(g)), "best": float(np.max(g))} for (m, c), g in gaps.items()]


def below_noisy(medians: Sequence[dict], scores: Sequence[str] = ("pesq", "stoi", "si_sdr_db", "dnsmos_ovrl")
                ) -> list[dict]:
    """The median rows where a variant scores below the unprocessed input: ``[{model, variant, chunk, score,
    value, noisy}]`` — where running the model this way is worse than doing nothing.

    Notebook: 06_quality_cost
    """
    noisy = {r["model"]: r for r in medians if r["variant"] == "noisy"}
    out = []
    for r in medians:
        n = noisy.get(r["model"])
        if n is None or r["variant"] == "noisy":
            continue
        for s in scores:
            if not (math.isnan(r[s]) or math.isnan(n[s])) and r[s] < n[s]:
                out.append({"model": r["model"], "variant": r["variant"], "chunk": r["chunk"], "score": s,
                            "value": r[s], "noisy": n[s]})
    return out
