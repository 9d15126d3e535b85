"""Progress on stderr: a bar on a terminal, sparse lines with an ETA in a log, nothing when quiet."""
import io

import pytest

from planner.sweeps import progress as P


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_piped_prints_a_line_per_point_or_per_interval_whichever_is_rarer(monkeypatch):
    """Pins: in a log, fast points are batched into one line per interval; slow points get a line
    each; the ETA comes from the measured rate; the last point always prints."""
    clock = Clock()
    monkeypatch.setattr(P.time, "monotonic", clock)
    out = io.StringIO()
    p = P.Progress(10, quiet=False, stream=out, interval=5.0, tty=False)
    for _ in range(4):  # 4 points in 2 s: one line (the first), then quiet until 5 s have passed
        clock.t += 0.5
        p.step()
    clock.t += 4.0  # 6 s after the first line, point 5: a line; 5 points in 6 s -> ETA 6 s
    p.step()
    for _ in range(5):  # slow points, 10 s each: a line each
        clock.t += 10.0
        p.step()
    p.done()
    lines = out.getvalue().splitlines()
    assert len(lines) == 7 and lines[0].startswith("[1/10] points")
    assert lines[1] == "[5/10] points, 6 s elapsed, 0.83 points/s, ETA 6 s"
    assert lines[-1].startswith("[10/10] points in 56 s")
    assert "\r" not in out.getvalue()


def test_terminal_redraw_leaves_no_stale_characters_without_tqdm(monkeypatch):
    """Pins: the fallback redraw pads over a longer previous line and ends with a newline."""
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # import fails
    out = io.StringIO()
    p = P.Progress(2, quiet=False, stream=out, tty=True)
    p.width = 200  # as if the last line had been long
    p.step()
    p.note("retrying 1 failed point(s) once")
    p.step()
    p.done()
    text = out.getvalue()
    first = text.split("\r")[1]
    assert len(first) == 200 and first.rstrip().startswith("[1/2] points")
    assert "\rretrying 1 failed point(s) once\n\r[2/2]" in text and text.endswith("\n")


def test_terminal_uses_tqdm_and_quiet_prints_nothing():
    """Pins: tqdm draws the bar on a terminal; -q silences everything."""
    pytest.importorskip("tqdm")
    out = io.StringIO()
    p = P.Progress(3, quiet=False, stream=out, tty=True)
    assert p.bar is not None
    for _ in range(3):
        p.step()
    p.done()
    assert "3/3" in out.getvalue()
    quiet = io.StringIO()
    q = P.Progress(3, quiet=True, stream=quiet, tty=True)
    q.step()
    q.note("x")
    q.done()
    assert quiet.getvalue() == ""
