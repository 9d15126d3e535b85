"""SIGTERM handled like Ctrl-C, so ``timeout``, batch schedulers and ``docker stop`` end a sweep
cleanly: the KeyboardInterrupt path ends the pool workers (and with them multiprocessing's
resource tracker), keeps the stored points, and the command exits 143 (130 for Ctrl-C).
Python's default for SIGTERM is to die on the spot, leaving the workers running."""
from __future__ import annotations

import contextlib
import signal

EXIT_SIGINT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_SIGTERM = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind as for Ctrl-C, then exit 143."""


def _raise(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread."""
    try:
        old = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def exit_code(e: KeyboardInterrupt) -> int:
    return EXIT_SIGTERM if isinstance(e, Terminated) else EXIT_SIGINT
