"""A local process pool that behaves under Ctrl-C, SIGTERM and kill -9: shared by sweeps and
``plan calibrate``.

Workers are spawned (not forked: a fork copies the parent's threads and locks), ignore Ctrl-C
(the parent ends them itself, at once) and exit if the parent dies without ending them, so no
worker outlives its run."""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor


def worker_count(jobs: int | None) -> int:
    """Worker processes: as asked, else one per core."""
    return max(1, jobs or os.cpu_count() or 1)


def _worker_init(parent: int, init=None, initargs: tuple = ()) -> None:
    """In each worker: leave Ctrl-C to the parent, exit when the parent (pid ``parent``) is
    gone, then run the caller's ``init(*initargs)``."""
    import signal
    import threading
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if init is not None:
        init(*initargs)


def start_pool(jobs: int, init=None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """``jobs`` spawned workers; ``init`` (a module-level function) runs once in each."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(), init, initargs))


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """End a process pool now: pending work cancelled, running work abandoned, workers killed
    and reaped (a plain shutdown would wait for the work in progress)."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14+
        pool.terminate_workers()
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
    pool.shutdown(wait=True)
