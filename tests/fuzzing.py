"""Seeded fuzzing of user inputs: mutated scenarios, hardware specs and traces, each run
through the CLI in-process (click's CliRunner) and judged. Used by tests/test_fuzz.py and
by hand (``python tests/fuzzing.py N SEED`` prints the counts).

A case passes when every command it runs exits 0, 1 ("does not fit") or 2, an exit 2 prints
only located lines (``FILE:LINE:COL: ...`` or ``FILE: ...``), nothing raises, no command
outlives ``BOUND_S``, and what exits 0 wrote no error rows and no infinite figure.
"""
from __future__ import annotations

import copy
import math
import random
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 30.0  # per command, generous for 2 busy cores; a hang is far beyond it

SCENARIOS = [
    {"name": "fz", "model": "llama-3.1-8b",
     "deployment": {"hardware": "cs3", "count": 1, "precision": {"weights": "bf16", "kv": "bf16"},
                    "prefill_chunk_tokens": 2048, "max_batch": 64},
     "hardware": {"bonded_sram": {"layers": 0}},
     "workload": {"context_tokens": 4096, "output_tokens": 256, "concurrent_users": 16,
                  "arrival": {"process": "poisson", "rate_per_s": 5}, "requests": 50, "warmup_fraction": 0.1},
     "slo": {"ttft_p99_s": 0.5, "decode_tok_s_per_user_p50": 100},
     "economics": {"amortisation_years": 4, "pue": 1.3, "usd_per_kwh": 0.08, "hosting_usd_per_kw_month": 10,
                   "utilisation": 1.0},
     "capacity": {"search": False, "tolerance": 0.05, "max_probes": 12},
     "seed": 0,
     "sweep": [{"name": "g", "axes": {"deployment.count": [1, 2], "workload.context_tokens": [2048, 8192]}}]},
    {"name": "gz", "model": "llama-3.1-70b",
     "deployment": {"hardware": "h100", "count": 8, "precision": {"weights": "fp8"},
                    "spec_decode": {"draft_tokens": 3, "acceptance_rate": 0.7, "draft_layers": 1}},
     "workload": {"prompt_tokens": 1024, "output_tokens": 128,
                  "arrival": {"process": "closed", "users": 8, "think_s": "2 s"},
                  "output_dist": {"dist": "lognormal", "median": 100, "sigma": 0.5, "max": 512}},
     "economics": {"capex": "rental", "pue": 1.2},
     "slo": {"tpot_p99_s": 0.05}},
    {"name": "hz", "model": "llama-3.1-8b",
     "deployment": {"hardware": "cs3", "count": 1},
     "hardware": {"bonded_sram": {"layers": 1, "bytes_per_layer": "150 GB", "bandwidth": "10 PB/s"}},
     "workload": {"context_tokens": 32768, "output_tokens": 1024,
                  "arrival": {"process": "gamma", "load": 0.5, "cv": 2.0}}},
]
HARDWARE = ["cs3", "h100", "groq-lpu"]
CHILD = {"name": "mychip", "extends": "cs3", "description": "a bigger wafer",
         "memory": {"capacity": "50 GB", "source": "assumption"}, "power": {"watts": "25 kW", "source": "guess"}}
TRACE_SCENARIO = {"name": "tz", "model": "llama-3.1-8b", "deployment": {"hardware": "cs3", "count": 1},
                  "workload": {"context_tokens": 2048, "output_tokens": 64, "requests": 12,
                               "arrival": {"process": "trace", "trace": "trace.csv"},
                               "output_dist": {"dist": "empirical", "file": "lens.csv", "column": "n"}}}
TRACE = [["arrival_s", "prompt_tokens", "output_tokens"]] + [[f"{0.05 * i:.2f}", str(200 + 37 * i), str(8 + 3 * i)]
                                                             for i in range(12)]
LENS = [["n"]] + [[str(v)] for v in (16, 32, 48, 20, 64)]

HOSTILE = [0, -1, -0.5, 1e308, math.inf, -math.inf, math.nan, 10 ** 30, 2 ** 63, "1e999 us", "1e999", "1e999 GB",
           "abc", "", [1, 2], {"x": 1}, True, None, "1e3", 1e3, 1.5, "10 GB/s", "-5 GB", "1e308 GB", "0 us",
           "1e308 kW", ".inf", "nan", "../..", "..", "a/b", 1e-300]
CELLS = ["abc", "", "-1", "0", "1e999", "nan", "inf", "-inf", "3.5", "1e12", "99999999999999999999", " 5 ", "1e3",
         "1", "1", "2", "100", "2047", "4000", "0.6"]


@dataclass
class Case:
    index: int
    kind: str  # scenario | hardware | trace
    files: dict  # relative path -> text
    commands: list = field(default_factory=list)  # argv lists (paths relative to the case folder)
    what: str = ""  # the mutations, for messages


def _leaves(node, path=()):
    """Every path into ``node`` (mappings and lists), the root excluded."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        out.append(path + (k,))
        out.extend(_leaves(v, path + (k,)))
    return out


def _get(node, path):
    for p in path:
        node = node[p]
    return node


# hostile numbers, and extreme but valid ones (so that some cases get past validation and
# into the physics: one device, a thousand, a reply of one token, a million-token context)
NUMERIC = [0, -1, -1e-9, 1e-300, 1e308, math.inf, -math.inf, math.nan, 10 ** 30, 2 ** 63, 1e12, 1e7, 123456789,
           1, 1, 2, 3, 0.5, 0.999, 64, 1000, 65536, 1e6]
SCALES = ["0", "-1", "1e999", "1e308", "1e-300", "1e30", "nan", "inf", "1", "0.001", "3", "1e3", "1e15"]


def _numeric(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
        isinstance(v, str) and re.match(r"^[-+]?\.?\d", v) is not None)


def _hostile_number(v, rng: random.Random):
    """A hostile replacement of a number (or of the number in a quantity such as "44 GB")."""
    if isinstance(v, str) and " " in v and rng.random() < 0.7:
        return rng.choice(SCALES) + v[v.index(" "):]
    return copy.deepcopy(rng.choice(NUMERIC + ["1e999 us", "1e308 GB", "1e3"]))


def mutate(data, rng: random.Random, n: int) -> tuple[object, list[str], bool]:
    """``n`` mutations of a copy of ``data``: (data, what was done, duplicate a key in the text).
    Mostly numbers made hostile (0, negative, tiny, huge, inf, nan, overflowing quantities),
    else any value replaced, a key dropped, a type swapped, an unknown or a duplicate key."""
    data = copy.deepcopy(data)
    done, dup = [], False
    for _ in range(n):
        paths = _leaves(data)
        nums = [q for q in paths if _numeric(_get(data, q))]
        op = rng.choices(["number", "value", "drop", "swap", "extra", "dup"], [50, 20, 10, 8, 4, 8])[0]
        if not paths or op == "dup":
            dup = True
            done.append("duplicate key")
            continue
        path = rng.choice(nums if op == "number" and nums else paths)
        parent, key = _get(data, path[:-1]), path[-1]
        if op == "number":
            parent[key] = _hostile_number(parent[key], rng)
        elif op == "value":
            parent[key] = copy.deepcopy(rng.choice(HOSTILE))
        elif op == "drop":
            del parent[key]
        elif op == "extra" and isinstance(parent, dict):
            parent["bogus_" + str(rng.randrange(9))] = 1
        else:
            v = parent[key]
            parent[key] = (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else
                           7 if isinstance(v, str) else list(v.values()) if isinstance(v, dict) else
                           v[0] if isinstance(v, list) and v else "x")
        done.append(f"{op} {'.'.join(map(str, path))}={_short(parent.get(key) if isinstance(parent, dict) else None)}")
    return data, done, dup


def _short(v) -> str:
    return repr(v)[:24]


def dump(data, rng: random.Random, dup: bool) -> str:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if dup:  # repeat one "key: value" line at its own indentation
        lines = text.splitlines()
        keyed = [i for i, ln in enumerate(lines) if re.match(r"^\s*[A-Za-z_][\w.]*: \S", ln)]
        if keyed:
            i = rng.choice(keyed)
            lines.insert(i + 1, lines[i])
        text = "\n".join(lines) + "\n"
    return text


def _csv(rows) -> str:
    return "\n".join(",".join(r) for r in rows) + "\n"


def make_case(index: int, seed: int) -> Case:
    rng = random.Random(seed * 1_000_003 + index)
    kind = rng.choices(["scenario", "hardware", "trace"], [5, 3, 2])[0]
    n = rng.choices([1, 2, 3], [6, 3, 1])[0]
    if kind == "scenario":
        data, what, dup = mutate(rng.choice(SCENARIOS), rng, n)
        return Case(index, kind, {"s.yaml": dump(data, rng, dup)},
                    [["validate", "s.yaml"], ["sweep", "s.yaml", "--analytic-only", "-o", "out", "-q", "-j", "1",
                                              "--max-points", "50"]], "; ".join(what))
    if kind == "hardware":
        if rng.random() < 0.3:
            base = CHILD
        else:
            base = yaml.safe_load((REPO / "hardware_specs" / f"{rng.choice(HARDWARE)}.yaml").read_text())
        data, what, dup = mutate(base, rng, n)
        path = "hardware_specs/chip.yaml"
        est = ["estimate", "--model", "llama-3.1-8b", "--hardware", path, "--json"]
        return Case(index, kind, {path: dump(data, rng, dup)}, [["validate", path], est], "; ".join(what))
    trace, lens = copy.deepcopy(TRACE), copy.deepcopy(LENS)
    what = []
    sc = copy.deepcopy(TRACE_SCENARIO)
    for _ in range(n):
        op = rng.choice(["cell", "cell", "cell", "lens", "drop_col", "swap_rows", "missing", "scenario"])
        if op == "cell":
            r = rng.randrange(len(trace)) if rng.random() < 0.1 else rng.randrange(1, len(trace))  # 0: the header
            c = rng.randrange(len(trace[r]))
            trace[r][c] = rng.choice(CELLS)
        elif op == "lens":
            lens[rng.randrange(len(lens))][0] = rng.choice(CELLS)
        elif op == "drop_col":
            c = rng.randrange(3)
            trace = [row[:c] + row[c + 1:] for row in trace]
        elif op == "swap_rows" and len(trace) > 3:
            trace[2], trace[3] = trace[3], trace[2]
        elif op == "missing":
            sc["workload"]["arrival"]["trace"] = rng.choice(["nope.csv", "dir/none.csv"])
        else:
            sc, w, _ = mutate(sc, rng, 1)
            what += w
            continue
        what.append(op)
    cmds = [["validate", "s.yaml"], ["run", "s.yaml", "-o", "out", "-q"]]
    return Case(index, kind, {"s.yaml": dump(sc, rng, False), "trace.csv": _csv(trace), "lens.csv": _csv(lens)},
                cmds, "; ".join(what))


class Hang(BaseException):
    """A command outlived BOUND_S (BaseException: nothing in the planner may swallow it)."""


def _alarm(signum, frame):
    raise Hang()


LOCATED = re.compile(r"^(?!error:|Error:|Usage:)[^\s]+?(:\d+:\d+)?: \S")


def judge(case: Case, root: Path, bound: float = BOUND_S) -> tuple[str, str]:
    """(outcome, detail): ok, traceback, hang, bad_exit, unlocated, validate_missed (validate
    passed what a later command refused), error_row or non_finite."""
    import pandas as pd
    from click.testing import CliRunner
    from planner.cli import main
    d = root / f"c{case.index}"
    for rel, text in case.files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text, encoding="utf-8")
    runner = CliRunner()
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for argv in case.commands:
            argv = [str(d / a) if (d / a).exists() or a in ("out",) or a.endswith((".yaml", ".csv")) else a
                    for a in argv]
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, bound)
            try:
                r = runner.invoke(main, argv, catch_exceptions=True)
            except Hang:
                return "hang", f"{argv[0]} over {bound:g} s"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if r.exception is not None and not isinstance(r.exception, SystemExit):
                return "traceback", f"{argv[0]}: {type(r.exception).__name__}: {r.exception}"[:300]
            if r.exit_code not in (0, 1, 2):
                return "bad_exit", f"{argv[0]} exit {r.exit_code}"
            if "Traceback" in r.output or "Traceback" in r.stderr:
                return "traceback", f"{argv[0]} printed a traceback"
            if r.exit_code == 2 and argv[0] != "validate" and case.commands[0][0] == "validate":
                return "validate_missed", f"validate passed, {argv[0]}: {r.stderr.strip()[:200]!r}"
            if r.exit_code == 2:
                lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
                if not lines or not all(LOCATED.match(ln) for ln in lines):
                    return "unlocated", f"{argv[0]}: {r.stderr.strip()[:200]!r}"
            if r.exit_code != 0:
                return "ok", f"{argv[0]} exit {r.exit_code} ({time.perf_counter() - t0:.2f} s)"
            res = d / "out" / "results.csv"
            if argv[0] == "sweep" and res.exists():
                df = pd.read_csv(res)
                if (df["bottleneck"] == "error").any():
                    return "error_row", str(df.loc[df["bottleneck"] == "error", "reason"].iloc[0])[:300]
                feas = df[df["feasible"].astype(bool)]
                for c in ("cost_usd_per_mtok_out", "throughput_out_tok_s", "usd_per_h"):
                    if c in feas and not pd.to_numeric(feas[c], errors="coerce").map(math.isfinite).all():
                        return "non_finite", f"{c} not finite in a feasible row"
    finally:
        signal.signal(signal.SIGALRM, old)
    return "ok", ""


def campaign(n: int, seed: int, root: Path, bound: float = BOUND_S) -> dict:
    """Run ``n`` cases; {outcome: count} plus 'examples' (first few failures per outcome)."""
    counts: dict = {"inputs": n}
    examples: dict = {}
    for i in range(n):
        case = make_case(i, seed)
        outcome, detail = judge(case, root, bound)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome != "ok" and len(examples.setdefault(outcome, [])) < 5:
            examples[outcome].append(f"case {i} ({case.kind}: {case.what}): {detail}")
    counts["examples"] = examples
    return counts


if __name__ == "__main__":  # python tests/fuzzing.py N SEED
    import json
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(campaign(int(sys.argv[1]), int(sys.argv[2]), Path(tmp)), indent=1))
