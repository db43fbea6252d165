"""One object, one thread: the guard every stateful dfnb object puts around its calls.

A runtime (:class:`dfnb.runtime.Runtime`) or a many-stream host (:class:`dfnb.hosts.batched.BatchedHost`)
holds stream state between calls; two threads calling it at once would interleave their hops and corrupt
both streams silently. :class:`ThreadGuard` turns that into a :class:`~dfnb.errors.StateError` for the
second thread, and lets one thread hold the object for a whole run (``exclusive``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from .errors import StateError

__all__ = ["ThreadGuard"]


class ThreadGuard:
    """The single-thread contract of one stateful object (a runtime, :class:`dfnb.hosts.batched.BatchedHost`).

    ``with guard.call("process"):`` around every call that touches state: a second thread inside at the same
    time, or any other thread while one holds the object for a whole run (``with guard.exclusive(obj):``),
    gets a :class:`~dfnb.errors.StateError` naming ``owner.label`` instead of silently mixed states.
    """

    __slots__ = ("owner", "noun", "state", "runs", "busy", "held", "holder")

    def __init__(self, owner: Any, noun: str = "runtime", state: str = "one stream's state",
                 runs: str = "enhance/enhance_file"):
        self.owner, self.noun, self.state, self.runs = owner, noun, state, runs
        self.busy, self.held = threading.Lock(), threading.Lock()
        self.holder: int | None = None

    def call(self, what: str) -> _Call:
        return _Call(self, what)

    @contextlib.contextmanager
    def exclusive(self, value: Any = None) -> Iterator[Any]:
        """Hold the object for a whole run (yields ``value``)."""
        if not self.held.acquire(blocking=False):
            raise StateError(f"{self.owner.label}: another thread is running a whole stream through this {self.noun} "
                             f"({self.runs}); a {self.noun} holds {self.state}: create one per thread or stream.")
        try:
            self.holder = threading.get_ident()
            yield value
        finally:
            self.holder = None
            self.held.release()


class _Call:
    """One guarded call (a plain class, not a generator context manager: it runs on every hop)."""

    __slots__ = ("g", "what")

    def __init__(self, g: ThreadGuard, what: str):
        self.g, self.what = g, what

    def __enter__(self) -> None:
        g = self.g
        if not g.busy.acquire(blocking=False):
            raise StateError(f"{g.owner.label}: {self.what}() called while another thread is inside this {g.noun}; a "
                             f"{g.noun} holds {g.state} and is single-threaded: create one per thread or stream.")
        if g.holder is not None and g.holder != threading.get_ident():
            g.busy.release()
            raise StateError(f"{g.owner.label}: {self.what}() called while another thread runs a whole stream "
                             f"through this {g.noun} ({g.runs}); a {g.noun} holds {g.state}: create one per thread "
                             "or stream.")

    def __exit__(self, *exc) -> bool:
        self.g.busy.release()
        return False
