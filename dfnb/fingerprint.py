"""Which official release do a folder's weights come from? Compare every weight tensor with the releases at hand.

Exporters store the same weights in different layouts: torch's legacy exporter folds BatchNorm into the conv
and writes GRU weights as ``[1, 3H, I]`` (gates z, r, h); the dynamo exporter keeps torch's ``[3H, I]`` (gates
r, z, n) and reorders them with Slice/Concat nodes; einsum weights may be transposed. A layout is a
permutation of the values, so each tensor is fingerprinted by its **sorted values**: two tensors hold the same
weights iff their sorted values agree (``max |a - b| <= tol``, tolerance 1e-6; sorting never increases the
largest difference). GRU biases ``B = [Wb | Rb]`` are also indexed by halves, for exporters that keep
torch's ``bias_ih`` and ``bias_hh`` apart.

Only float tensors with at least ``MIN_SIZE`` values that are not one value repeated count (shape constants,
pad values, zero initial states, lsnr scale/offset are not weights), nor do the ERB filterbanks a step graph holds
(derived from ``config.ini``). The verdict names the release whose tensors match the most weight values; the
weights *equal* that release when every weight of the folder is found in it and the folder holds at least 99 % of the
release's weight values (a re-export may drop modules the forward never calls, e.g. DeepFilterNet3's
``df_fc_a``).

Notebook: 07_third_party_folders
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DfnbError

__all__ = ["TOL", "MIN_SIZE", "WeightMatch", "graph_weights", "config_constants", "identify"]

TOL = 1e-6
MIN_SIZE = 16
_FOLD = {"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Cast"}


@dataclass(frozen=True)
class WeightMatch:
    """The best-matching release, and how well the folder's weights match it."""

    release: str | None  # model name, e.g. "DeepFilterNet3"
    tarball: str | None
    matched: int  # folder weight tensors found in the release
    total: int  # folder weight tensors
    covered_values: int  # release weight values present in the folder
    release_values: int
    max_abs_diff: float
    releases_at_hand: tuple[str, ...]  # the releases compared (the search stops at an equal one)
    tol: float = TOL

    @property
    def equal(self) -> bool:
        """Every folder weight is a release weight and the folder holds >= 99 % of the release's values."""
        return bool(self.release and self.total and self.matched == self.total
                    and self.covered_values >= 0.99 * self.release_values)

    def summary(self) -> str:
        if not self.releases_at_hand:
            return "not compared: no official release found (see `dfnb models`)"
        if self.release is None:
            return (f"not an official release: none of the {self.total} weight tensors equals a tensor of "
                    f"{', '.join(self.releases_at_hand)} (tol {self.tol:g})")
        pct = 100.0 * self.covered_values / max(1, self.release_values)
        head = f"equal to {self.tarball}" if self.equal else f"closest release {self.tarball}, NOT equal"
        return (f"{head}: {self.matched}/{self.total} weight tensors found (max |diff| {self.max_abs_diff:.2g} <= "
                f"{self.tol:g}), {pct:.1f} % of the release's weight values present")


def _arrays(graph) -> dict[str, np.ndarray]:
    """Float tensors of a graph: initializers, Constant nodes, and constants folded through layout ops."""
    import onnx
    from onnx import numpy_helper

    vals = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    derived = set()
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type in _FOLD and n.input and n.input[0] in vals:
            vals[n.output[0]] = vals[n.input[0]]  # same values, other layout: the fingerprint is layout-free
            derived.add(n.output[0])
    del onnx
    # constant fills (zero initial states, pads) are not weights
    return {k: v for k, v in vals.items() if k not in derived and v.dtype.kind == "f" and v.size >= MIN_SIZE
            and np.ptp(v) > 0}


def graph_weights(paths: Iterable[Path | str]) -> list[np.ndarray]:
    """The weight tensors (float, >= MIN_SIZE values) of ONNX files, each as sorted float32 values."""
    import onnx

    out = []
    for p in paths:
        try:
            g = onnx.load(str(p)).graph
        except Exception as e:  # noqa: BLE001 -- protobuf DecodeError and friends
            raise DfnbError(f"{p} is not a readable ONNX file ({e}); copy or export it again.") from None
        out += [np.sort(a.astype(np.float32).ravel()) for a in _arrays(g).values()]
    return out


@lru_cache(maxsize=8)
def _release_index(name: str) -> tuple[str, dict[int, list[np.ndarray]], int]:
    """``(tarball name, size -> sorted tensors, total weight values)`` of one official release."""
    import onnx

    from .onnx_import import ONNX_PARTS, read_release
    from .releases import find_release_tarball

    path, _ = find_release_tarball(name)
    files = read_release(path)
    idx: dict[int, list[np.ndarray]] = {}
    total = 0
    for part in ONNX_PARTS:
        g = onnx.load_model_from_string(files[f"{part}.onnx"]).graph
        arrays = _arrays(g)
        for a in arrays.values():
            s = np.sort(a.astype(np.float32).ravel())
            idx.setdefault(s.size, []).append(s)
            total += s.size
        for n in g.node:  # GRU biases [Wb | Rb] also by halves
            if n.op_type == "GRU" and len(n.input) > 3 and n.input[3]:
                b = arrays.get(n.input[3])
                if b is not None:
                    for half in np.split(b.astype(np.float32).ravel(), 2):
                        idx.setdefault(half.size, []).append(np.sort(half))
    return path.name, idx, total


def _match(t: np.ndarray, cands: list[np.ndarray], tol: float) -> float | None:
    best = None
    for c in cands:
        d = float(np.max(np.abs(c - t))) if t.size else 0.0
        if d <= tol and (best is None or d < best):
            best = d
    return best


def config_constants(cfg: Any) -> list[np.ndarray]:
    """The ERB filterbank and its inverse a graph may hold as constants: derived from config.ini, not weights."""
    from .dsp import DspConfig

    d = DspConfig.build(cfg.sr, cfg.fft_size, cfg.hop_size, cfg.nb_erb, cfg.nb_df, cfg.min_nb_erb_freqs, cfg.norm_tau)
    inv = np.repeat(np.eye(cfg.nb_erb, dtype=np.float32), d.erb_widths, axis=1)
    fwd = (inv / np.asarray(d.erb_widths, np.float32)[:, None]).T
    return [np.sort(inv.ravel()), np.sort(fwd.ravel())]


def identify(paths: Iterable[Path | str], *, tol: float = TOL, prefer: Iterable[str] = (),
             known: Iterable[np.ndarray] = ()) -> WeightMatch:
    """Compare the weights of ONNX files with every official release at hand (see the module docstring).

    Parameters
    ----------
    paths : iterable of path
        The ONNX files of one model (e.g. the files :func:`dfnb.formats.recognise` assigned roles to).
    tol : float
        Largest allowed difference between sorted values.
    prefer : iterable of str
        Model names to compare first; the search stops at the first release the weights equal.
    known : iterable of arrays
        Sorted constants that are not weights (:func:`config_constants`); tensors equal to one are skipped.

    Returns
    -------
    WeightMatch

    Examples
    --------
    >>> identify(["models/dfn3_h0/enc.onnx", "models/dfn3_h0/erb_dec.onnx"]).summary()  # doctest: +SKIP
    'equal to DeepFilterNet3_onnx.tar.gz: ...'

    Notebook: 07_third_party_folders
    """
    from .errors import AssetNotFoundError, ChecksumError
    from .releases import MODEL_NAMES

    known = list(known)
    mine = [t for t in graph_weights(paths) if _match(t, [k for k in known if k.size == t.size], tol) is None]
    best = None
    at_hand = []
    order = [n for n in prefer if n in MODEL_NAMES] + [n for n in MODEL_NAMES if n not in set(prefer)]
    for name in order:
        try:
            tarball, idx, total = _release_index(name)
        except (AssetNotFoundError, ChecksumError):
            continue
        at_hand.append(tarball)
        matched, worst, used = 0, 0.0, 0
        for t in mine:
            d = _match(t, idx.get(t.size, []), tol)
            if d is not None:
                matched += 1
                worst = max(worst, d)
                used += t.size
        score = (matched, used)
        if matched and (best is None or score > best[0]):
            best = (score, name, tarball, matched, used, total, worst)
        if matched == len(mine) and used >= 0.99 * total:  # equal: no other release can do better
            break
    if best is None:
        return WeightMatch(None, None, 0, len(mine), 0, 0, float("nan"), tuple(at_hand), tol)
    _, name, tarball, matched, used, total, worst = best
    return WeightMatch(name, tarball, matched, len(mine), min(used, total), total, worst, tuple(at_hand), tol)
