"""Report how long ``plan --help`` and ``plan estimate`` take as whole processes (figures only;
nothing is asserted). Each command runs REPEAT times in a fresh interpreter; the report gives
the best and the median wall time and the best CPU seconds (user + system of the child), and
the same for bare imports of the libraries the command cannot do without (its floor).

Run: python bench/bench_startup.py [REPEAT]   (from the repository root; default 15)

Python must find compiled bytecode as an installed package has it: with PYTHONDONTWRITEBYTECODE
set, every start compiles the package from source (~0.1 s more), so the script compiles it once
first. For where the time goes: python -X importtime -m planner.cli estimate ... 2>&1 | sort -t'|' -k2 -n
"""
from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import planner

FLOOR_WITH_MODEL = """import click, yaml, numpy
from pydantic import BaseModel, Field
class A(BaseModel):
    x: float = Field(gt=0)
    y: list[int] = []
A.model_validate({"x": 1.0, "y": [1]})"""

COMMANDS = {
    "plan --help": ["--help"],
    "plan estimate (llama-3.1-8b on h100)": ["estimate", "--model", "llama-3.1-8b", "--hardware", "h100"],
    "plan estimate (deepseek-v3 fp8 on cs3)": ["estimate", "--model", "deepseek-v3", "--hardware", "cs3",
                                               "--precision", "fp8", "--context", "9k"],
    "python -c pass (the interpreter alone)": "pass",
    # the floor the dependencies set before any planner code runs: the CLI, YAML, the step
    # model's arrays and the validated specs need these four
    "import click, yaml, numpy": "import click, yaml, numpy",
    "import click, yaml, numpy, pydantic.BaseModel": "import click, yaml, numpy\nfrom pydantic import BaseModel",
    # ... and what any validated config costs on top: pydantic's model machinery (field
    # collection, schema generation, the validator) for one two-field model, used once
    "... + one pydantic model defined and validated": FLOOR_WITH_MODEL,
}


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    compileall.compile_dir(str(Path(planner.__file__).parent), quiet=1)
    cwd = tempfile.gettempdir()  # not the repository: ``-m`` puts the current folder first on sys.path
    print(f"planner from {Path(planner.__file__).parent}")
    for label, args in COMMANDS.items():
        argv = [sys.executable, "-c", args] if isinstance(args, str) else [sys.executable, "-m", "planner.cli", *args]
        walls, cpus = [], []
        for _ in range(repeat):
            c0, t0 = child_cpu(), time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=os.environ, cwd=cwd)
            walls.append(time.perf_counter() - t0)
            cpus.append(child_cpu() - c0)
        print(f"{label:46s} wall best {min(walls):.3f} s, median {statistics.median(walls):.3f} s; "
              f"CPU best {min(cpus):.3f} s", flush=True)


if __name__ == "__main__":
    main()
