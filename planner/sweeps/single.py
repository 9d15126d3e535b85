"""One point simulated on its own (``plan run`` / ``planner.run``): the base scenario with
overrides, its results row and the per-request, per-replica and per-task files."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from planner.plan.point import run_point
from planner.plan.scenario import load, override
from planner.sim.engine import SimResult
from planner.sweeps.export import write_csv, write_json
from planner.sweeps.outdir import writable
from planner.sweeps.tables import row as result_row


def run(scenario, sets: list[str] | tuple = (), out: str | Path | None = None) -> tuple[dict, SimResult | None, Path]:
    """(summary, simulation or None, folder): the base scenario (sweep ignored) with ``key.path=value``
    overrides, simulated; writes summary.json, requests.csv, timeseries.csv (and tasks.csv)."""
    loaded = load(scenario)
    pt = override(loaded, list(sets))
    path = Path(out) if out else Path("outputs") / pt.scenario.name / "run"
    writable(path)  # before simulating: an output that cannot be written fails in milliseconds
    result, res = run_point(loaded, pt, simulate=True)
    summary = {"scenario": str(scenario), "overrides": pt.values, **result_row(result)}
    if res is not None:
        full = res.summary.as_dict()
        for k in ("wall_s", "stage_utilisation", "stage_kv_occupancy_peak", "stage_kv_occupancy_avg"):
            summary[k] = list(full[k]) if isinstance(full[k], tuple) else full[k]
        write_csv(res.requests, path / "requests.csv")
        write_csv(res.timeseries, path / "timeseries.csv")
        if res.tasks is not None:  # agent tasks: one row per task with its time breakdown
            t = res.tasks
            write_csv(pd.DataFrame({"task": range(len(t.start)), "start_s": t.start, "end_s": t.end,
                                    "duration_s": t.end - t.start, **{f"{k}_s": v for k, v in t.parts.items()}}),
                      path / "tasks.csv")
    write_json({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()},
               path / "summary.json")
    return summary, res, path
