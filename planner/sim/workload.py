"""Request streams: token-length samplers, arrival processes, trace files.

Randomness comes from numpy Generators handed in by the engine (one per stream, spawned
from the scenario seed), so a run is reproducible whatever else runs in the process.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.errors import ConfigError, Problem
from ..config.schema import LengthDist, TimeDist


class Sampler:
    """Draws token counts (ints >= 1) from a :class:`LengthDist`, or seconds (floats >= 0) from
    a :class:`TimeDist`."""

    def __init__(self, d: LengthDist | TimeDist, base_dir: Path | None = None):
        self.d = d
        self.integer = isinstance(d, LengthDist)
        self.values = _empirical(d, base_dir, self.integer) if d.dist == "empirical" else None

    @property
    def mean(self) -> float:
        d = self.d
        m = {"fixed": lambda: d.value, "uniform": lambda: (d.low + d.high) / 2,
             "lognormal": lambda: d.median * np.exp(d.sigma ** 2 / 2), "exponential": lambda: d.mean,
             "empirical": lambda: float(np.mean(self.values))}[d.dist]()
        return float(min(m, d.max)) if d.max else float(m)

    @property
    def upper(self) -> int:
        """A bound used to size KV for the worst request (clip or a high quantile)."""
        d = self.d
        if d.max:
            return d.max
        return int({"fixed": lambda: d.value, "uniform": lambda: d.high,
                    "lognormal": lambda: d.median * np.exp(3 * d.sigma),
                    "exponential": lambda: d.mean * 7, "empirical": lambda: max(self.values)}[d.dist]())

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        d, whole = self.d, self.integer
        if d.dist == "fixed":
            x = np.full(n, d.value)
        elif d.dist == "uniform":
            x = rng.integers(d.low, d.high + 1, n) if whole else rng.uniform(d.low, d.high, n)
        elif d.dist == "lognormal":
            x = d.median * np.exp(d.sigma * rng.standard_normal(n))
            x = np.rint(x) if whole else x
        elif d.dist == "exponential":
            x = rng.geometric(1.0 / d.mean, n) if whole else rng.exponential(d.mean, n)
        else:
            x = rng.choice(self.values, n)
        x = np.maximum(np.asarray(x, dtype=np.int64), 1) if whole else np.maximum(np.asarray(x, dtype=float), 0.0)
        return np.minimum(x, d.max) if d.max else x


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
                v = int(float(row[d.column])) if whole else float(row[d.column])
                if (v < 1) if whole else not (v >= 0):
                    raise ValueError
            except (TypeError, ValueError):
                raise ConfigError([Problem(str(path), n, 1, d.column, "must be a whole number >= 1" if whole
                                           else "must be seconds >= 0", row[d.column], True)]) from None
            vals.append(v)
    if not vals:
        raise ConfigError([Problem(str(path), None, None, "", "no rows")])
    return np.array(vals)


def _resolve(file: str, base_dir: Path | None) -> Path:
    p = Path(file)
    if not p.is_absolute() and base_dir is not None and (base_dir / p).exists():
        p = base_dir / p
    if not p.is_file():
        raise ConfigError([Problem(str(file), None, None, "", "file not found")])
    return p


@dataclass(frozen=True)
class Trace:
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray


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
            if t < last or t < 0:
                problems.append(Problem(str(path), n, 1, "arrival_s", "must be >= 0 and non-decreasing", t, True))
            if pi < 1 or oi < 1:
                problems.append(Problem(str(path), n, 1, "", "token counts must be >= 1", (pi, oi), True))
            last = max(last, t)
            a.append(t)
            p.append(pi)
            o.append(oi)
    if problems:
        raise ConfigError(problems[:20])
    if not a:
        raise ConfigError([Problem(str(path), None, None, "", "trace has no rows")])
    return Trace(np.array(a), np.array(p, dtype=np.int64), np.array(o, dtype=np.int64))


def interarrivals(process: str, rate: float, cv: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """Gaps between arrivals: exponential (poisson), gamma with the given CV, or constant."""
    if process == "poisson":
        return rng.exponential(1.0 / rate, n)
    if process == "gamma":
        shape = 1.0 / cv ** 2
        return rng.gamma(shape, 1.0 / (rate * shape), n)
    return np.full(n, 1.0 / rate)
