"""The simulator's own failures: a broken conservation law (a bug) or a run that stops progressing."""


class InvariantError(AssertionError):
    """The simulation broke a conservation law: a bug, never a user mistake."""


class Stalled(RuntimeError):
    """The simulation stopped making progress (an event budget far above any sane run)."""
