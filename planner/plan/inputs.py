"""Scenario files -> the simulator's inputs as arrays: empirical length distributions and
request traces (CSV), read and checked here with errors that name the file and row, so the
simulator itself never opens a file."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from planner.config.errors import ConfigError, Problem
from planner.config.schema import MAX_TOKENS, LengthDist, TimeDist
from planner.sim.workload import Sampler, Trace

MAX_SECONDS = 1e7  # an arrival time or a duration (as the schema's Seconds)


def sampler(d: LengthDist | TimeDist, base_dir: Path | None = None) -> Sampler:
    """A sampler for ``d``; an empirical one gets its values from its CSV file (relative paths
    resolve against ``base_dir``, the scenario's folder)."""
    whole = isinstance(d, LengthDist)
    return Sampler(d, _empirical(d, base_dir, whole) if d.dist == "empirical" else None)


def _empirical(d, base_dir: Path | None, whole: bool = True) -> np.ndarray:
    path = _resolve(d.file, base_dir)
    vals = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if d.column not in (reader.fieldnames or []):
            raise ConfigError([Problem(str(path), 1, 1, "", f"no column '{d.column}' (columns: "
                                       f"{', '.join(reader.fieldnames or [])})")])
        for n, row in enumerate(reader, start=2):
            try:
                x = float(row[d.column])
                if not (1 <= x <= MAX_TOKENS if whole else 0 <= x <= MAX_SECONDS):
                    raise ValueError
                v = int(x) if whole else x
            except (TypeError, ValueError):
                raise ConfigError([Problem(str(path), n, 1, d.column, f"must be a whole number from 1 to "
                                           f"{MAX_TOKENS:,}" if whole else f"must be seconds from 0 to {MAX_SECONDS:g}",
                                           row[d.column], True)]) from None
            vals.append(v)
    if not vals:
        raise ConfigError([Problem(str(path), None, None, "", "no rows")])
    return np.array(vals)


def find(file: str, base_dir: Path | None) -> Path | None:
    """The file a scenario names (relative paths: its folder first, then the working folder)."""
    p = Path(file)
    if not p.is_absolute() and base_dir is not None and (base_dir / p).exists():
        p = base_dir / p
    return p if p.is_file() else None


def _resolve(file: str, base_dir: Path | None) -> Path:
    p = find(file, base_dir)
    if p is None:
        raise ConfigError([Problem(str(file), None, None, "", "file not found")])
    return p


def read_trace(file: str, base_dir: Path | None = None) -> Trace:
    """``arrival_s,prompt_tokens,output_tokens`` with a header; errors name the row."""
    path = _resolve(file, base_dir)
    need = ("arrival_s", "prompt_tokens", "output_tokens")
    a, p, o, problems = [], [], [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError([Problem(str(path), 1, 1, "", f"header must have {', '.join(need)} "
                                       f"(missing {', '.join(missing)})")])
        last = 0.0
        for n, row in enumerate(reader, start=2):
            try:
                t = float(row["arrival_s"])
                pi, oi = int(row["prompt_tokens"]), int(row["output_tokens"])
            except (TypeError, ValueError):
                problems.append(Problem(str(path), n, 1, "", "arrival_s must be a number, token counts "
                                        "whole numbers", dict(row), True))
                continue
            if not (math.isfinite(t) and last <= t <= MAX_SECONDS):
                problems.append(Problem(str(path), n, 1, "arrival_s", f"must be finite, from 0 to {MAX_SECONDS:g} "
                                        "and non-decreasing", t, True))
            if not (1 <= pi <= MAX_TOKENS and 1 <= oi <= MAX_TOKENS):
                problems.append(Problem(str(path), n, 1, "", f"token counts must be from 1 to {MAX_TOKENS:,}",
                                        (pi, oi), True))
                continue
            last = max(last, t)
            a.append(t)
            p.append(pi)
            o.append(oi)
    if problems:
        raise ConfigError(problems[:20])
    if not a:
        raise ConfigError([Problem(str(path), None, None, "", "trace has no rows")])
    return Trace(np.array(a), np.array(p, dtype=np.int64), np.array(o, dtype=np.int64))
