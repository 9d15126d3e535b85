"""Runs that end as soon as their verdict is known: an observer (plan/probe.py's Watch, for a
capacity probe) installed for the runs started in a context is told of each first token, each
finish and each span start, and ends the run by raising ``Settled``, which leaves simulate()
(no result, no invariants: the run is abandoned on purpose)."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

WATCH: ContextVar = ContextVar("watch", default=None)


class Settled(Exception):
    """A run's verdict is known before its end: ``misses`` (SLO targets), rough ``figures``."""

    def __init__(self, misses: list[str], figures: dict):
        super().__init__(misses, figures)  # SimPy re-raises a process's exception from its args

    @property
    def misses(self) -> list[str]:
        return self.args[0]

    @property
    def figures(self) -> dict:
        return self.args[1]


@contextmanager
def watching(watch):
    """Runs simulated inside this block report to ``watch``."""
    token = WATCH.set(watch)
    try:
        yield watch
    finally:
        WATCH.reset(token)
