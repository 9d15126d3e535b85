"""Wafer-scale (and GPU) LLM inference planner: memory fit, speed, latency, capacity, cost."""
__version__ = "0.2.0"


def sweep(scenario, jobs: int | None = None, executor: str = "local", scheduler: str | None = None,
          simulate: bool | None = None, out=None):
    """Evaluate every point of a scenario (a path, or a mapping as its YAML would read) and
    return the results table as a pandas DataFrame, the columns of results.csv.

    ``jobs`` worker processes (default: all cores), ``executor`` "local" or "dask" (with
    ``scheduler`` "tcp://host:8786", else a local Dask cluster). Nothing is written unless
    ``out`` names a folder, which then gets the files of ``plan sweep -o`` (and resumes)."""
    from . import runner
    if out is not None:
        return runner.run(scenario, out, quiet=True, simulate=simulate, jobs=jobs, executor=executor,
                          scheduler=scheduler)[0]
    loaded = runner.load_source(scenario)
    rows, _ = runner.evaluate_all(loaded, simulate, jobs, executor, scheduler)
    return runner.results_frame(loaded, rows)
