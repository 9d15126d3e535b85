"""The output folder of a sweep, claimed before any work: created, locked, shown to be writable.

- Writable: the folder and ``.points`` are created and a probe file is written, synced and
  removed in each, so a read-only folder, a full disk or a path under /proc fails in
  milliseconds, not after the sweep has computed its points.
- Lock: ``OUT/.lock`` holds an advisory ``fcntl.flock`` for the whole run (and the pid, for
  the message), so two sweeps into one folder do not both compute every point. The kernel
  drops the lock when the process dies (kill -9 included); the file is removed at the end.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from planner.sweeps.export import OutputError


class Busy(OSError):
    """Another sweep holds the folder's lock (a runtime condition: exit 1, try again later)."""

    def __str__(self) -> str:
        return self.strerror


def claim(out: Path) -> "Claim":
    """The folder created, locked and probed, or OutputError / Busy naming it."""
    return Claim(out)


class Claim:
    def __init__(self, out: Path):
        self.out, self.fd = out, None
        self.lock = out / ".lock"
        _mkdir(out)
        self._take()
        try:
            for d in (out, out / ".points"):
                writable(d)
        except BaseException:
            self.release()
            raise

    def _take(self) -> None:
        while True:
            try:
                fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(e.errno, e.strerror, str(self.lock)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise OutputError(e.errno, e.strerror, str(self.lock)) from None
                raise Busy(errno.EBUSY, f"another sweep is writing to {self.out} (pid {_holder(self.lock)})",
                           str(self.out)) from None
            try:  # the holder before us may have removed the file between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            self.release()
            raise OutputError(e.errno, e.strerror, str(self.lock)) from None

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in that order: a newcomer re-checks the inode)."""
        if self.fd is None:
            return
        try:
            self.lock.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(lock: Path) -> str:
    try:
        return lock.read_text(encoding="utf-8").strip() or "unknown"
    except (OSError, ValueError):
        return "unknown"


def writable(d: Path) -> None:
    """``d`` exists (created if need be) and takes a file, or OutputError naming it."""
    _mkdir(d)
    _probe(d)


def _mkdir(d: Path) -> None:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(e.errno, e.strerror, str(e.filename or d)) from None


def _probe(d: Path) -> None:
    f = d / f".probe.{os.getpid()}"
    try:
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(f)
    except OSError as e:
        try:
            f.unlink(missing_ok=True)
        except OSError:
            pass
        raise OutputError(e.errno, e.strerror, str(d)) from None
