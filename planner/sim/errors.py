"""The simulator's own failures: a broken conservation law (a bug), a run that stops
progressing, or an input beyond what it runs (a request too large for a replica, too many)."""


class InvariantError(AssertionError):
    """The simulation broke a conservation law: a bug, never a user mistake."""


class Stalled(RuntimeError):
    """The simulation stopped making progress (simulated time stuck, or an event budget far
    above what the run's rounds need)."""


class TooLarge(ValueError):
    """An input the engine will not run: more requests than MAX_REQUESTS, or a request whose
    KV outgrows a replica (``kv`` True: a memory limit of the configuration)."""

    def __init__(self, message: str, kv: bool = False):
        super().__init__(message)
        self.kv = kv
