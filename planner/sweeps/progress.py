"""Progress of a sweep on stderr: a tqdm bar on a terminal, plain lines in a log.

Why two forms: a bar redrawn in place is what a person watching wants, but in a CI log or
``2>file`` every redraw would be a line; there a line is printed when a point finished and
``interval`` seconds have passed since the last one (whichever is rarer), with an ETA from
the measured rate. tqdm is a dependency; without it the terminal gets a plain redrawn line
that clears what the last one left.
"""
from __future__ import annotations

import shutil
import sys
import time

INTERVAL_S = 5.0


def _dur(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


class Progress:
    """Points (or other ``unit``s) done of ``total``; ``step()`` per finished one, ``note(msg)`` for
    a message that must not be drawn over, ``done()`` at the end."""

    def __init__(self, total: int, quiet: bool, stream=None, interval: float = INTERVAL_S, tty: bool | None = None,
                 unit: str = "point"):
        self.total, self.quiet, self.done_n, self.unit = total, quiet, 0, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval, self.t0, self.last = interval, time.monotonic(), -1.0
        self.bar, self.width = None, 0
        if quiet or not total or not self.tty:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # installed without its dependencies: a plain redrawn line
            return
        # a pseudo-terminal of unknown size (script, some CI runners) reports 0 x 0: tqdm would draw nothing
        width = {} if shutil.get_terminal_size((0, 0)).columns else {"ncols": 100, "nrows": 24}
        self.bar = tqdm(total=total, unit=unit, file=self.stream, dynamic_ncols=not width, smoothing=0.1,
                        desc=unit + "s", leave=True, **width)

    def line(self) -> str:
        el = time.monotonic() - self.t0
        rate = self.done_n / el if el > 0 else 0.0
        eta = (self.total - self.done_n) / rate if rate > 0 else float("nan")
        eta_s = _dur(eta) if eta == eta else "?"
        u = self.unit + "s"
        return (f"[{self.done_n}/{self.total}] {u}, {_dur(el)} elapsed, {rate:.2f} {u}/s, "
                f"ETA {eta_s}" if self.done_n < self.total else
                f"[{self.done_n}/{self.total}] {u} in {_dur(el)} ({rate:.2f} {u}/s)")

    def step(self) -> None:
        self.done_n += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.monotonic()
        if not self.tty:
            if self.done_n < self.total and now - self.last < self.interval:
                return
            self.last = now
            print(self.line(), file=self.stream, flush=True)
            return
        msg = self.line()
        pad = " " * max(0, self.width - len(msg))  # no stale characters from a longer last line
        self.width = len(msg)
        print("\r" + msg + pad, end="", file=self.stream, flush=True)

    def note(self, msg: str) -> None:
        """A message on its own line, the bar redrawn below it."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(msg, file=self.stream)
        elif self.tty and self.width:
            print("\r" + " " * self.width + "\r" + msg, file=self.stream, flush=True)
            self.width = 0
        else:
            print(msg, file=self.stream, flush=True)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.tty and not self.quiet and self.width:
            print(file=self.stream, flush=True)
            self.width = 0
