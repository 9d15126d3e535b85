"""Report the analytic pre-pass speed: `plan sweep scenarios/deepseek.yaml --analytic-only -j 1`.

Run: python bench/bench_analytic.py  (prints figures; asserts nothing)
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from planner.physics.point import Config
from planner.plan.estimate import estimate
from planner import catalog
from planner.sweeps.runner import run

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            df, _ = run(REPO / "scenarios" / "deepseek.yaml", d, quiet=True, simulate=False, jobs=1)
            times.append(time.perf_counter() - t)
    best = min(times)
    print(f"plan sweep scenarios/deepseek.yaml --analytic-only -j 1: {len(df)} points, best of 3 {best:.2f} s "
          f"(median {statistics.median(times):.2f} s), {len(df) / best:.0f} points/s, one process")
    cfg = Config(catalog.load_model("deepseek-v3"), catalog.load_hardware("cs3"), weights="fp8", context=32768)
    n, t = 200, time.perf_counter()
    for _ in range(n):
        estimate(cfg)
    print(f"plan estimate deepseek-v3 on cs3 fp8 32K: {(time.perf_counter() - t) / n * 1e3:.2f} ms per estimate")


if __name__ == "__main__":
    main()
