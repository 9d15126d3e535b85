"""Report the main job's cost: `plan sweep scenarios/deepseek.yaml` (figures only; nothing asserted).

    python bench/bench_sweep.py [SCENARIO] [JOBS ...]        the whole sweep with each job count
    python bench/bench_sweep.py --sample STEP [SCENARIO]     every STEP-th point, in this process

The whole sweep starts from an empty output folder each time (no stored points to reuse), reports
wall time and CPU seconds (this process and its workers) and compares the runs' results.csv byte
for byte. A sample reports each point's CPU seconds (best of 2: the machine may be shared) and
the sum scaled to the whole sweep. Run from the repository root.
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import planner
from planner.plan.point import evaluate
from planner.sim import describe
from planner.sweeps.runner import load_source, run
from planner.sweeps.tables import row


def cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the sweep's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def whole(scenario: str, jobs: list[int]) -> None:
    outputs = []
    with tempfile.TemporaryDirectory() as tmp:
        for j in jobs:
            out = Path(tmp) / f"j{j}"
            t0, c0 = time.perf_counter(), cpu_s()
            df, _ = run(scenario, out, quiet=True, jobs=j)
            wall, cpu = time.perf_counter() - t0, cpu_s() - c0
            probes = df["capacity_probes"].sum() if "capacity_probes" in df else float("nan")
            print(f"{scenario} -j {j}: {len(df)} points in {wall:.1f} s wall, {cpu:.1f} CPU-s "
                  f"({int(df['feasible'].sum())} feasible, {probes:.0f} simulations in capacity searches)",
                  flush=True)
            outputs.append((out / "results.csv").read_bytes())
    print(f"results.csv identical across job counts: {all(o == outputs[0] for o in outputs)}")


def sample(scenario: str, step: int) -> None:
    loaded = load_source(scenario)
    points = range(0, len(loaded.points), step)
    total = 0.0
    for i in points:
        best = None
        for _ in range(2):
            t0 = time.process_time()
            r = row(evaluate(loaded, loaded.points[i]))
            cpu = time.process_time() - t0
            best = cpu if best is None else min(best, cpu)
        total += best
        print(f"point {i:4d} {r.get('hardware')} x{r.get('devices_per_replica')} ctx {r.get('context_tokens')}: "
              f"{best:.2f} CPU-s, {r.get('capacity_probes')} probes, {r.get('capacity_users_per_replica')} users",
              flush=True)
    print(f"{len(points)} points: {total:.1f} CPU-s; scaled to {len(loaded.points)} points: "
          f"{total * len(loaded.points) / len(points):.0f} CPU-s")


def main() -> None:
    args = sys.argv[1:]
    print(f"simulator: {describe()}; "
          f"planner from {Path(planner.__file__).parent}", flush=True)
    if args[:1] == ["--sample"]:
        sample(args[2] if len(args) > 2 else "scenarios/deepseek.yaml", int(args[1]))
        return
    scenario = args[0] if args else "scenarios/deepseek.yaml"
    whole(scenario, [int(j) for j in args[1:]] or [1, 2])


if __name__ == "__main__":
    main()
