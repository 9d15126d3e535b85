"""Report the main job's wall time: `plan sweep scenarios/deepseek.yaml` with 1 and 2 jobs.

Each run starts from an empty output folder (no stored points to reuse) and the two runs'
results.csv are compared byte for byte. Run from the repository root:
    python bench/bench_sweep.py [SCENARIO] [JOBS ...]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from planner.sweeps.runner import run


def main() -> None:
    scenario = sys.argv[1] if len(sys.argv) > 1 else "scenarios/deepseek.yaml"
    jobs = [int(j) for j in sys.argv[2:]] or [1, 2]
    outputs = []
    with tempfile.TemporaryDirectory() as tmp:
        for j in jobs:
            out = Path(tmp) / f"j{j}"
            t0 = time.perf_counter()
            df, _ = run(scenario, out, quiet=True, jobs=j)
            wall = time.perf_counter() - t0
            probes = df["capacity_probes"].sum() if "capacity_probes" in df else float("nan")
            print(f"{scenario} -j {j}: {len(df)} points in {wall:.1f} s = {len(df) / wall:.2f} points/s "
                  f"({int(df['feasible'].sum())} feasible, {probes:.0f} simulations in capacity searches)",
                  flush=True)
            outputs.append((out / "results.csv").read_bytes())
    same = all(o == outputs[0] for o in outputs)
    print(f"results.csv identical across job counts: {same}")


if __name__ == "__main__":
    main()
