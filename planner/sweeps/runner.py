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
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path

import pandas as pd
import yaml

from planner.version import __version__
from planner.config.errors import ConfigError, Problem
from planner.plan.point import evaluate, failed
from planner.plan.scenario import Loaded, Point, load
from planner.sweeps import frontier
from planner.sweeps.columns import markdown as columns_markdown
from planner.sweeps.export import csv_text, json_text, publish_all, require, stage_text
from planner.sweeps.outdir import claim
from planner.pool import start_pool, stop_pool, worker_count
from planner.sweeps.progress import Progress
from planner.sweeps.provenance import provenance
from planner.sweeps.store import Store
from planner.sweeps.tables import axis_columns, best, frame, pareto, row, speedup
from planner.sweeps.workbook import stage_xlsx

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


# ------------------------------------------------------------------ workers
_CACHE: dict[tuple[str, str], Loaded] = {}


def evaluate_index(text: str, file: str, index: int, simulate: bool | None) -> dict:
    """Worker entry point: load the scenario from its text (once per process), evaluate one point."""
    key = (text, file)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load(file, text)
    loaded = _CACHE[key]
    return evaluated(loaded, loaded.points[index], simulate)


def evaluated(loaded: Loaded, pt: Point, simulate: bool | None) -> dict:
    """A point's results row, its frontier rows riding along under FRONTIER_KEY."""
    result = evaluate(loaded, pt, simulate)
    out = row(result)
    out[frontier.FRONTIER_KEY] = frontier.frontier_rows(result, out)
    return out


def _inline(loaded: Loaded, todo: list[int], simulate, **_):
    for i in todo:
        yield i, evaluated(loaded, loaded.points[i], simulate)


def _local(loaded: Loaded, todo: list[int], simulate, jobs: int, **_):
    pool = start_pool(jobs)
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
    if stats["reused"]:
        progress.note(f"{stats['reused']} of {len(points)} points stored by an earlier run; evaluating {len(todo)}")
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
        progress.note(f"retrying {len(retry)} failed point(s) once")
        todo = retry
    progress.done()
    return rows, stats


def run(source, out_dir: str | Path | None = None, quiet: bool = False, simulate: bool | None = None,
        jobs: int | None = None, executor: str = "local", scheduler: str | None = None, xlsx: bool = False,
        fresh: bool = False, report: bool = False) -> tuple[pd.DataFrame, Path]:
    """Evaluate every point; write results.csv, pareto.csv, best.csv, frontier.csv, crossover.csv,
    columns.md, run.json (and results.xlsx; with ``report`` the plots and summary.md).

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
        fr = frontier.table(rows)
        df = results_frame(loaded, rows)
        tables = {"results": df, "pareto": pareto(df), "best": best(df), "frontier": fr,
                  "crossover": frontier.crossover(fr)}
        if "task_p50_s" in df:
            ref = loaded.scenario.reference_group
            index = next((pt.index for pt in loaded.points if pt.group == ref), 0) if ref else 0
            tables["speedup"] = speedup(df, index)
        finished = time.time()
        meta = {
            "tool": "wafer-planner", "version": __version__, **provenance(), "scenario": str(loaded.path),
            "scenario_sha256": hashlib.sha256(loaded.text.encode()).hexdigest(),
            "scenario_resolved": loaded.scenario.model_dump(mode="json"), "seed": loaded.scenario.seed,
            "started": _iso(started), "finished": _iso(finished), "wall_s": round(finished - started, 3),
            "executor": executor, "jobs": worker_count(jobs), "scheduler": scheduler,
            **stats, "done": stats["points"] - stats["failed"], "feasible": int(df["feasible"].sum()),
            "slo_pass": int(df["slo_pass"].sum()), "pareto": int(df["pareto"].sum()),
            "failed_points": [{"point": int(r["point"]), "reason": r["reason"]}
                              for r in rows if r.get("bottleneck") == "error"],
        }
        columns = "# Columns of results.csv (pareto.csv and best.csv share them)\n\n" + columns_markdown(list(df.columns))
        write_tables(out, tables, meta, xlsx, {"columns.md": columns})
    if report:
        _report(out, quiet)
    return df, out


def _report(out: Path, quiet: bool) -> None:
    """Plots and summary.md; the results are written already, so a plotting failure only says so."""
    from planner.sweeps.report import write_report
    try:
        write_report(out)
    except Exception as e:  # noqa: BLE001 - matplotlib missing (a --no-deps install) or broken
        if not quiet:
            print(f"plots skipped ({e}); results are complete. Install matplotlib, then: plan report {out}",
                  file=sys.stderr)


def write_tables(out: Path, tables: dict[str, pd.DataFrame], meta: dict, xlsx: bool = False,
                 texts: dict[str, str] | None = None) -> None:
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
        for name, text in (texts or {}).items():
            staged.append((stage_text(out / name, text), out / name))
        if xlsx:
            staged.append((stage_xlsx(tables, out / "results.xlsx", meta), out / "results.xlsx"))
        staged.append((stage_text(out / "run.json", json_text({**meta, "tables": digests})), out / "run.json"))
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    publish_all(staged)


def results_frame(loaded: Loaded, rows: list[dict]) -> pd.DataFrame:
    """The results table: swept values as columns after the point's identity."""
    return frame(rows, [c for pt in loaded.points for c in axis_columns(pt.values)])


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
