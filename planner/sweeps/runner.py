"""Run a sweep: points -> executor -> per-point store -> tables on disk.

- Executors: inline (one job), a local process pool (``jobs`` workers), or a Dask cluster.
  Workers are sent the scenario's YAML text and a point index, never pickled objects, and
  every point is seeded from the scenario alone: the rows do not depend on who ran them.
- Store: each finished point is written to ``OUT/.points/<key>.json`` (temp file + rename) the
  moment it returns, keyed by the point's config hash, the tool version and the simulate
  flag. A re-run of an interrupted sweep (Ctrl-C, kill -9) takes stored rows as they are and
  evaluates the rest, so it ends with the same files as an uninterrupted run.
- A point that raises is retried once, then reported as a row with its error; the others
  are never lost.
"""
from __future__ import annotations

import hashlib
import json
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
from planner.plan.point import evaluate, failed
from planner.sweeps.columns import markdown as columns_markdown
from planner.sweeps.export import atomic_write_text, require, write_csv, write_json
from planner.sweeps.progress import Progress
from planner.sweeps.provenance import provenance
from planner.sweeps.workbook import write_xlsx
from planner.plan.scenario import Loaded, Point, load
from planner.sweeps import frontier
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


# ------------------------------------------------------------------ store
class Store:
    """Finished rows, one JSON file per point, so an interrupted sweep loses nothing.

    A row is reused only for the same resolved point, the same model and hardware spec
    contents (an edited spec file recomputes), the same planner code and the same simulate
    flag."""

    def __init__(self, out: Path, simulate: bool | None, loaded: Loaded):
        self.dir = out / ".points"
        self.loaded = loaded
        self.salt = f"{_code_hash()}|{simulate}"
        self.keys: dict[int, str] = {}

    def key(self, pt: Point) -> str:
        if pt.index not in self.keys:
            self.keys[pt.index] = self._key(pt)
        return self.keys[pt.index]

    def _key(self, pt: Point) -> str:
        cfg = pt.config
        specs = "" if cfg is None else json.dumps(
            [cfg.model.model_dump(mode="json"), cfg.hardware.model_dump(mode="json"),
             cfg.bonded.model_dump(mode="json") if cfg.bonded else None], sort_keys=True, default=str)
        blob = f"{self.salt}|{pt.config_hash}|{specs}"
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def get(self, pt: Point) -> dict | None:
        f = self.dir / f"{self.key(pt)}.json"
        try:
            row = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent, or unreadable: evaluate again
        # the same configuration may sit at another index or under other axes in this sweep
        row.update({"point": pt.index, "group": pt.group, **axis_columns(pt.values)})
        return row

    def put(self, pt: Point, row: dict) -> None:
        text = json.dumps(row, default=_plain, allow_nan=True)
        atomic_write_text(self.dir / f"{self.key(pt)}.json", text)

    def clear(self) -> None:
        for f in self.dir.glob("*.json"):
            f.unlink(missing_ok=True)


def _code_hash() -> str:
    """The planner's own source (and version): stored rows from other code are not reused."""
    h = hashlib.sha256(__version__.encode())
    root = Path(__file__).resolve().parents[1]  # the whole planner package
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _plain(o):
    return o.item() if isinstance(o, np.generic) else str(o)


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
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(evaluate_index, loaded.text, str(loaded.path), i, simulate): i for i in todo}
        try:
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except Exception as e:  # noqa: BLE001 - a crashed worker: retried by the caller
                    yield futures[fut], e
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _dask(loaded: Loaded, todo: list[int], simulate, jobs: int, scheduler: str | None = None, **_):
    require("distributed", "--executor dask needs dask.distributed", "dask")
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed
    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
    else:  # no scheduler given: a cluster of local processes for this run
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {}
        for i in todo:
            fut = client.submit(evaluate_index, loaded.text, str(loaded.path), i, simulate, pure=False, retries=0)
            futures[fut] = i
        for fut in dask_completed(list(futures)):
            try:
                yield futures[fut], fut.result()
            except Exception as e:  # noqa: BLE001 - a lost worker or an error: retried by the caller
                yield futures[fut], e
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
    stats = {"points": len(points), "reused": len(points) - len(todo), "evaluated": len(todo), "failed": 0}
    progress = Progress(len(todo), quiet)
    if stats["reused"]:
        progress.note(f"{stats['reused']} of {len(points)} points stored by an earlier run; evaluating {len(todo)}")
    if executor == "dask":
        run_batch = _dask
    else:
        run_batch = _inline if jobs == 1 or len(todo) < 2 else _local
    for attempt in (1, 2):
        retry = []
        for i, got in run_batch(loaded, todo, simulate, jobs=jobs, scheduler=scheduler):
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
        if not retry:
            break
        progress.note(f"retrying {len(retry)} failed point(s) once")
        todo = retry
    progress.done()
    return rows, stats


def run(source, out_dir: str | Path | None = None, quiet: bool = False, simulate: bool | None = None,
        jobs: int | None = None, executor: str = "local", scheduler: str | None = None, xlsx: bool = False,
        fresh: bool = False, report: bool = False) -> tuple[pd.DataFrame, Path]:
    """Evaluate every point; write results.csv, pareto.csv, best.csv, columns.md, run.json (and
    results.xlsx; with ``report`` the plots and summary.md of ``plan report``).

    The rows, and so the CSVs, are the same whatever ``jobs`` or ``executor`` is, and whether
    or not the sweep was interrupted and resumed. ``fresh`` discards stored points first."""
    started = time.time()
    if xlsx:  # missing extras fail before the sweep, not after it
        require("xlsxwriter", "--xlsx needs XlsxWriter", "xlsx")
    if executor == "dask":
        require("distributed", "--executor dask needs dask.distributed", "dask")
    loaded = load_source(source)
    out = Path(out_dir) if out_dir else Path("outputs") / loaded.scenario.name
    store = Store(out, simulate, loaded)
    if fresh:
        store.clear()
    rows, stats = evaluate_all(loaded, simulate, jobs, executor, scheduler, store, quiet)
    fr = pd.DataFrame([f for r in rows for f in r.get(frontier.FRONTIER_KEY, [])])
    df = results_frame(loaded, rows)
    tables = {"results": df, "pareto": pareto(df), "best": best(df), "frontier": fr,
              "crossover": frontier.crossover(fr)}
    if "task_p50_s" in df:
        ref = loaded.scenario.reference_group
        index = next((pt.index for pt in loaded.points if pt.group == ref), 0) if ref else 0
        tables["speedup"] = speedup(df, index)
    for name, t in tables.items():
        write_csv(t, out / f"{name}.csv")
    atomic_write_text(out / "columns.md", "# Columns of results.csv (pareto.csv and best.csv share them)\n\n"
                      + columns_markdown(list(df.columns)))
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
    write_json(meta, out / "run.json")
    if xlsx:
        write_xlsx(tables, out / "results.xlsx", meta)
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


def worker_count(jobs: int | None) -> int:
    """Worker processes: as asked, else one per core."""
    return max(1, jobs or os.cpu_count() or 1)


def results_frame(loaded: Loaded, rows: list[dict]) -> pd.DataFrame:
    """The results table: swept values as columns after the point's identity."""
    return frame(rows, [c for pt in loaded.points for c in axis_columns(pt.values)])


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
