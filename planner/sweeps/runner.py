"""Run a sweep: points -> executor -> per-point store -> tables on disk.

- Executors: inline (one job), a local process pool (``jobs`` workers), or a Dask cluster.
  Workers are sent the scenario's YAML text and a point index, never pickled objects, and
  every point is seeded from the scenario alone: the rows do not depend on who ran them.
- Store (store.py): each finished point is written to ``OUT/.points/<key>.json`` (temp file +
  rename) the moment it returns, keyed by the point's config hash, the tool version and the
  simulate flag. A re-run of an interrupted sweep (Ctrl-C, SIGTERM, kill -9) reuses stored
  rows that pass their checks and evaluates the rest, so it ends with the same files as an
  uninterrupted run.
- A point that raises is retried once, then reported as a row with its error; the others
  are never lost.
"""
from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from planner.version import __version__
from planner.config.errors import ConfigError, Problem
from planner.plan.point import evaluate, failed
from planner.sweeps.export import csv_text, json_text, output_error, publish_all, stage_text
from planner.plan.scenario import Loaded, load
from planner.sweeps.outdir import claim
from planner.sweeps.store import Store
from planner.sweeps.tables import axis_columns, best, frame, pareto, row, speedup

EXECUTORS = ("local", "dask")


def load_source(source) -> Loaded:
    """A scenario from a path, a mapping (as its YAML would read; relative paths resolve against
    the current directory) or an already loaded scenario."""
    if isinstance(source, Loaded):
        return source
    if isinstance(source, dict):
        name = source.get("name", "scenario")
        return load(Path.cwd() / f"<{name}>.yaml", yaml.safe_dump(source, sort_keys=False))
    return load(source)


def require(module: str, what: str, extra: str) -> None:
    """An optional extra is installed, or a RuntimeError saying how to install it."""
    import importlib.util
    if importlib.util.find_spec(module) is None:
        raise RuntimeError(f"{what}: pip install 'wafer-planner[{extra}]'")


# ------------------------------------------------------------------ workers
_CACHE: dict[tuple[str, str], Loaded] = {}


def evaluate_index(text: str, file: str, index: int, simulate: bool | None) -> dict:
    """Worker entry point: load the scenario from its text (once per process), evaluate one point."""
    key = (text, file)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load(file, text)
    loaded = _CACHE[key]
    return row(evaluate(loaded, loaded.points[index], simulate))


def _inline(loaded: Loaded, todo: list[int], simulate, **_):
    for i in todo:
        yield i, row(evaluate(loaded, loaded.points[i], simulate))


def _worker_init(parent: int) -> None:
    """In each pool worker: leave Ctrl-C to the parent (it ends the workers itself, at once), and
    exit if the parent (pid ``parent``) dies without ending them (kill -9), so no worker
    outlives its sweep."""
    import signal
    import threading
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """End a process pool now: pending points cancelled, running ones abandoned, workers killed
    and reaped (a plain shutdown would wait for the points in progress)."""
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


def _local(loaded: Loaded, todo: list[int], simulate, jobs: int, **_):
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                               initargs=(os.getpid(),))
    try:
        futures = {pool.submit(evaluate_index, loaded.text, str(loaded.path), i, simulate): i for i in todo}
        for fut in as_completed(futures):
            try:
                got = fut.result()
            except Exception as e:  # noqa: BLE001 - a crashed worker: retried by the caller
                got = e
            yield futures[fut], got
    except BaseException:  # Ctrl-C, SIGTERM, a failed write, the caller closing early: stop now
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


DASK_CONNECT_TIMEOUT = 10  # seconds to reach a --scheduler before giving up (README: Clusters)


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler did not answer (a runtime condition: exit 1)."""

    def __str__(self) -> str:
        return self.strerror


def _dask(loaded: Loaded, todo: list[int], simulate, jobs: int, scheduler: str | None = None, **_):
    require("distributed", "--executor dask needs dask.distributed", "dask")
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{DASK_CONNECT_TIMEOUT}s")
        except (OSError, TimeoutError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SchedulerUnreachable(None, f"cannot reach the Dask scheduler at {scheduler} within "
                                             f"{DASK_CONNECT_TIMEOUT} s ({why})") from None
        except ValueError as e:  # not an address (an unknown scheme): a user input mistake, exit 2
            raise ConfigError([Problem("--scheduler", None, None, "", str(e).splitlines()[0], scheduler, True)]) \
                from None
    else:  # no scheduler given: a cluster of local processes for this run
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    futures = {}
    try:
        for i in todo:
            fut = client.submit(evaluate_index, loaded.text, str(loaded.path), i, simulate, pure=False, retries=0)
            futures[fut] = i
        for fut in dask_completed(list(futures)):
            try:
                got = fut.result()
            except Exception as e:  # noqa: BLE001 - a lost worker or an error: retried by the caller
                got = e
            yield futures[fut], got
    except BaseException:
        client.cancel(list(futures))  # stop now: nothing more is computed for this run
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------ run
def evaluate_all(loaded: Loaded, simulate: bool | None = None, jobs: int | None = None, executor: str = "local",
                 scheduler: str | None = None, store: Store | None = None, quiet: bool = True) -> tuple[list, dict]:
    """Every point's row (in point order) and counts: total, reused from the store, evaluated, failed."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    points = list(loaded.points)
    jobs = worker_count(jobs)
    rows: list[dict | None] = [store.get(pt) if store else None for pt in points]
    todo = [pt.index for pt in points if rows[pt.index] is None]
    stats = {"points": len(points), "reused": len(points) - len(todo), "evaluated": len(todo), "failed": 0,
             "stored_invalid": store.invalid if store else 0}
    progress = Progress(len(todo), quiet)
    if not quiet and stats["reused"]:
        print(f"{stats['reused']} of {len(points)} points stored by an earlier run; evaluating {len(todo)}",
              file=sys.stderr)
    if executor == "dask":
        run_batch = _dask
    else:
        run_batch = _inline if jobs == 1 or len(todo) < 2 else _local
    for attempt in (1, 2):
        retry = []
        batch = run_batch(loaded, todo, simulate, jobs=jobs, scheduler=scheduler)
        try:
            for i, got in batch:
                err = got if isinstance(got, BaseException) else None
                if err is None and got.get("bottleneck") == "error":
                    err = got
                if err is not None and attempt == 1:
                    retry.append(i)
                    continue
                rows[i] = got if not isinstance(got, BaseException) else row(failed(points[i], got))
                if err is None and store is not None:
                    store.put(points[i], rows[i])
                stats["failed"] += err is not None
                progress.step()
        finally:  # a failed write or an interrupt here stops the workers at once (GeneratorExit)
            batch.close()
        if not retry:
            break
        if not quiet:
            print(f"retrying {len(retry)} failed point(s) once", file=sys.stderr)
        todo = retry
    progress.done()
    return rows, stats


def run(source, out_dir: str | Path | None = None, quiet: bool = False, simulate: bool | None = None,
        jobs: int | None = None, executor: str = "local", scheduler: str | None = None, xlsx: bool = False,
        fresh: bool = False) -> tuple[pd.DataFrame, Path]:
    """Evaluate every point; write results.csv, pareto.csv, best.csv, run.json (and results.xlsx).

    The rows, and so the CSVs, are the same whatever ``jobs`` or ``executor`` is, and whether
    or not the sweep was interrupted and resumed. ``fresh`` discards stored points first.
    The output folder is claimed (created, locked, probed) before any point is evaluated:
    OutputError or Busy (both OSError) when it cannot be."""
    started = time.time()
    if xlsx:  # missing extras fail before the sweep, not after it
        require("xlsxwriter", "--xlsx needs XlsxWriter", "xlsx")
    if executor == "dask":
        require("distributed", "--executor dask needs dask.distributed", "dask")
    loaded = load_source(source)
    out = Path(out_dir) if out_dir else Path("outputs") / loaded.scenario.name
    with claim(out):
        store = Store(out, simulate, loaded)
        if fresh:
            store.clear()
        rows, stats = evaluate_all(loaded, simulate, jobs, executor, scheduler, store, quiet)
        df = results_frame(loaded, rows)
        tables = {"results": df, "pareto": pareto(df), "best": best(df)}
        if "task_p50_s" in df:
            ref = loaded.scenario.reference_group
            index = next((pt.index for pt in loaded.points if pt.group == ref), 0) if ref else 0
            tables["speedup"] = speedup(df, index)
        finished = time.time()
        meta = {
            "tool": "wafer-planner", "version": __version__, "scenario": str(loaded.path),
            "scenario_sha256": hashlib.sha256(loaded.text.encode()).hexdigest(),
            "scenario_resolved": loaded.scenario.model_dump(mode="json"), "seed": loaded.scenario.seed,
            "started": _iso(started), "finished": _iso(finished), "wall_s": round(finished - started, 3),
            "executor": executor, "jobs": worker_count(jobs), "scheduler": scheduler,
            **stats, "done": stats["points"] - stats["failed"], "feasible": int(df["feasible"].sum()),
            "slo_pass": int(df["slo_pass"].sum()), "pareto": int(df["pareto"].sum()),
            "failed_points": [{"point": int(r["point"]), "reason": r["reason"]}
                              for r in rows if r.get("bottleneck") == "error"],
        }
        write_tables(out, tables, meta, xlsx)
    return df, out


def write_tables(out: Path, tables: dict[str, pd.DataFrame], meta: dict, xlsx: bool = False) -> None:
    """The tables (and workbook) and run.json as one set: every file is written to a temp name
    first, then all are renamed, run.json last, so a failure while writing leaves the earlier
    set untouched. run.json's ``tables`` holds each CSV's sha256: ``plan report`` refuses a
    folder whose CSVs do not match it (a set mixed by a crash between two renames)."""
    staged: list[tuple[str, Path]] = []
    try:
        digests = {}
        for name, t in tables.items():
            text = csv_text(t)
            path = out / f"{name}.csv"
            staged.append((stage_text(path, text), path))
            digests[path.name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if xlsx:
            staged.append((stage_xlsx(tables, out / "results.xlsx"), out / "results.xlsx"))
        staged.append((stage_text(out / "run.json", json_text({**meta, "tables": digests})), out / "run.json"))
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    publish_all(staged)


def worker_count(jobs: int | None) -> int:
    """Worker processes: as asked, else one per core."""
    return max(1, jobs or os.cpu_count() or 1)


def results_frame(loaded: Loaded, rows: list[dict]) -> pd.DataFrame:
    """The results table: swept values as columns after the point's identity."""
    return frame(rows, [c for pt in loaded.points for c in axis_columns(pt.values)])


def write_xlsx(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """The tables as sheets of one workbook, written atomically (XlsxWriter, an optional extra)."""
    publish_all([(stage_xlsx(tables, path), path)])


def stage_xlsx(tables: dict[str, pd.DataFrame], path: Path) -> str:
    """The workbook in a temp file beside ``path``: the temp file's name."""
    require("xlsxwriter", "--xlsx needs XlsxWriter", "xlsx")
    import tempfile
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".xlsx", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise output_error(e, path) from None
    try:
        with pd.ExcelWriter(tmp, engine="xlsxwriter") as xw:
            for name, t in tables.items():
                t.replace([math.inf, -math.inf], np.nan).to_excel(xw, sheet_name=name, index=False)
                xw.sheets[name].freeze_panes(1, 0)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = e if isinstance(e, OSError) else e.__context__  # XlsxWriter wraps the OSError
        if isinstance(cause, OSError):
            raise output_error(cause, path) from None
        raise
    return tmp


class Progress:
    """Points done and ETA on stderr: redrawn in place on a terminal, a line per 10% in logs."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.done_n, self.t0 = total, quiet, 0, time.time()
        self.tty = sys.stderr.isatty()
        self.next_pct = 10

    def step(self) -> None:
        self.done_n += 1
        if self.quiet:
            return
        pct = 100 * self.done_n / max(self.total, 1)
        if not self.tty and pct < self.next_pct and self.done_n != self.total:
            return
        self.next_pct = (int(pct) // 10 + 1) * 10
        el = time.time() - self.t0
        eta = el / self.done_n * (self.total - self.done_n)
        msg = f"[{self.done_n}/{self.total}] points, {el:.1f} s elapsed, ETA {eta:.1f} s"
        print(("\r" + msg) if self.tty else msg, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and not self.quiet and self.done_n:
            print(file=sys.stderr)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
