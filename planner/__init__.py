"""Wafer-scale (and GPU) LLM inference planner: memory fit, speed, latency, capacity, cost.

Layers, each importing only from those before it:
config (files, schema, catalog) -> physics (model, hardware, placement, step time) ->
sim (discrete-event engine) -> plan (estimate, capacity, costs per point) ->
sweeps (runner, store, tables, report) -> cli.
"""
from planner.version import __version__


def sweep(scenario, jobs: int | None = None, executor: str = "local", scheduler: str | None = None,
          simulate: bool | None = None, out=None, report: bool = False):
    """Evaluate every point of a scenario (a path, or a mapping as its YAML would read) and
    return the results table as a pandas DataFrame, the columns of results.csv (``plan sweep``).

    ``jobs`` worker processes (default: all cores), ``executor`` "local" or "dask" (with
    ``scheduler`` "tcp://host:8786", else a local Dask cluster). Nothing is written unless
    ``out`` names a folder, which then gets the tables of ``plan sweep -o`` (and resumes; with
    ``report`` also its plots and summary.md)."""
    from planner.sweeps import runner
    if out is not None:
        return runner.run(scenario, out, quiet=True, simulate=simulate, jobs=jobs, executor=executor,
                          scheduler=scheduler, report=report)[0]
    loaded = runner.load_source(scenario)
    rows, _ = runner.evaluate_all(loaded, simulate, jobs, executor, scheduler)
    return runner.results_frame(loaded, rows)


def run(scenario, sets=(), out=None):
    """Simulate one point, as ``plan run`` does: the base scenario (sweep ignored) with
    ``key.path=value`` overrides. Returns (summary dict, SimResult or None, output folder);
    writes summary.json, requests.csv, timeseries.csv (and tasks.csv) there."""
    from planner.sweeps.single import run as run_one
    return run_one(scenario, sets, out)


__all__ = ["__version__", "run", "sweep"]
