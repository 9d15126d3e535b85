"""Count the engine's instructions per simulated request (figures only; nothing is asserted).

CPU seconds on a shared machine move by 10-30% from run to run; instructions do not. Each case
runs twice under valgrind's callgrind, both times warming the round caches with 2,000
requests; the second run then simulates REQUESTS more. The difference over REQUESTS is the
cost of one request, its share of the run's summary and invariant checks included.
Same setup as bench_sim.py (a): 1,024 in / 256 out, Poisson at 80% of the analytic capacity.

Run: python bench/bench_instructions.py [REQUESTS]   (needs valgrind; ~2 min; default 3,000)
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CASE = """
import dataclasses, sys
sys.path.insert(0, {bench!r})
from bench_sim import Config, catalog, setup, simulate
which, n = sys.argv[1], int(sys.argv[2])
cfg = Config(catalog.load_model("llama-3.1-8b"), catalog.load_hardware("h100"), count=1, context=1280,
             prompt=1024, output=256) if which == "h100" else \\
    Config(catalog.load_model("llama-3.1-70b"), catalog.load_hardware("cs3"), count=4, context=1280,
           prompt=1024, output=256)
rounds, spec = setup(cfg, 1024, 256, max(n, 1), 0.8)
simulate(dataclasses.replace(spec, requests=2000), rounds)
if n:
    simulate(spec, rounds)
"""


def instructions(script: Path, which: str, n: int, out: Path) -> int:
    log = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                          str(script), which, str(n)], capture_output=True, text=True, check=True).stderr
    return int(re.search(r"I\s+refs:\s+([\d,]+)", log).group(1).replace(",", ""))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: this benchmark counts instructions with callgrind")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "case.py"
        script.write_text(CASE.format(bench=str(Path(__file__).resolve().parent)))
        for which, label in (("h100", "llama-3.1-8b 1 x h100"), ("cs3", "llama-3.1-70b 4 x cs3")):
            base = instructions(script, which, 0, Path(tmp) / "a.out")
            full = instructions(script, which, n, Path(tmp) / "b.out")
            print(f"{label} 1024/256 @ 80% load: {(full - base) / n / 1e3:,.0f}k instructions per simulated "
                  f"request ({n:,} requests)", flush=True)


if __name__ == "__main__":
    main()
