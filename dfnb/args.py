"""Argument checks shared by the public entry points: a value of the wrong type or range is a
:class:`~dfnb.errors.ArgumentError` (or the :class:`~dfnb.errors.DfnbError` subclass a caller passes) that names
the argument, shows what it got and says what to pass — never a bare ``TypeError``/``ValueError`` from deep
inside numpy, onnxruntime or torch.

"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArgumentError, DfnbError

__all__ = ["check_flag", "check_int", "check_number", "check_path", "check_paths", "check_choice", "check_names",
           "shown"]


def shown(value: Any) -> str:
    """A short, one-line ``repr`` of a bad value (arrays by dtype and shape)."""
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} {list(value.shape)}"
    r = repr(value)
    return (r[:60] + "…") if len(r) > 61 else r


def check_flag(value: Any, name: str, *, error: type[DfnbError] = ArgumentError) -> bool:
    """``value`` as a bool; only ``True``/``False`` (or numpy bools) are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise error(f"{name} must be True or False, got {shown(value)}.")


def check_int(value: Any, name: str, *, minimum: int = 1, error: type[DfnbError] = ArgumentError,
              hint: str = "") -> int:
    """``value`` as an int ``>= minimum``; bools, floats and strings are refused (``threads='2'`` is a
    mistake, not a request for two threads)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise error(f"{name} must be {kind}, got {shown(value)}{'; ' + hint if hint else ''}.")
    return int(value)


def check_number(value: Any, name: str, *, error: type[DfnbError] = ArgumentError, low: float = -np.inf,
                 high: float = np.inf, allow_inf: bool = False) -> float:
    """``value`` as a float in ``[low, high]``, finite unless ``allow_inf`` (a threshold where ±inf means
    "always"/"never"); NaN, bools and strings are refused."""
    ok = not isinstance(value, (bool, np.bool_, str, bytes)) and isinstance(value, (int, float, np.integer,
                                                                                   np.floating))
    bounded = ok and (np.isfinite(float(value)) or (allow_inf and not np.isnan(float(value))))
    if not bounded or not low <= float(value) <= high:
        rng = "" if (low, high) == (-np.inf, np.inf) else f" in [{low:g}, {high:g}]"
        kind = "a number (±inf allowed)" if allow_inf else "a finite number"
        raise error(f"{name} must be {kind}{rng}, got {shown(value)}.")
    return float(value)


def check_path(value: Any, name: str, *, error: type[DfnbError] = ArgumentError, what: str = "a path") -> Path:
    """``value`` as a :class:`~pathlib.Path` (``str`` or ``os.PathLike``); anything else names what to pass."""
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes) and str(value):
        return Path(value)
    raise error(f"{name} must be {what} (str or pathlib.Path), got {shown(value)}.")


def check_paths(value: Any, name: str, *, error: type[DfnbError] = ArgumentError) -> list[Path]:
    """An iterable of paths (``sources=[input_file]``) as a list of :class:`~pathlib.Path`; ``None`` items skipped."""
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        items = None
    if items is None or not all(v is None or (isinstance(v, (str, os.PathLike)) and not isinstance(v, bytes))
                                for v in items):
        raise error(f"{name} must be a list of paths (str or pathlib.Path), got {shown(value)}.")
    return [Path(v) for v in items if v is not None]


def check_choice(value: Any, name: str, choices: Iterable[str], *, error: type[DfnbError] = ArgumentError) -> str:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if isinstance(value, str) and value in choices:
        return value
    raise error(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {shown(value)}.")


def check_names(value: Any, name: str, *, error: type[DfnbError] = ArgumentError) -> tuple[str, ...]:
    """A string or an iterable of strings as a tuple of names (``probes=['enc_emb_gru']``, ``carry=(...)``)."""
    if isinstance(value, str):
        return (value,)
    try:
        names = tuple(value)
    except TypeError:
        names = None
    if names is None or not all(isinstance(n, str) for n in names):
        raise error(f"{name} must be a list of names (str), got {shown(value)}.")
    return names
