"""Request streams: token-length samplers, arrival processes, traces (as arrays: files are
read by plan/inputs.py).

Randomness comes from numpy Generators handed in by the engine (one per stream, spawned
from the scenario seed), so a run is reproducible whatever else runs in the process.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.config.schema import MAX_TOKENS, LengthDist, TimeDist


class Sampler:
    """Draws token counts (ints >= 1) from a :class:`LengthDist`, or seconds (floats >= 0) from
    a :class:`TimeDist`."""

    def __init__(self, d: LengthDist | TimeDist, values: np.ndarray | None = None):
        self.d = d
        self.integer = isinstance(d, LengthDist)
        if d.dist == "empirical" and values is None:
            raise ValueError("an empirical distribution needs its values (plan.inputs.sampler reads them)")
        self.values = values

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
        return int(min(MAX_TOKENS, {"fixed": lambda: d.value, "uniform": lambda: d.high,
                                    "lognormal": lambda: d.median * np.exp(3 * d.sigma),
                                    "exponential": lambda: d.mean * 7, "empirical": lambda: max(self.values)}[d.dist]()))

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
        # (a lognormal's far tail would overflow int64: clipped at MAX_TOKENS before the cast)
        x = np.maximum(np.minimum(x, MAX_TOKENS).astype(np.int64), 1) if whole else np.maximum(np.asarray(x, float), 0.0)
        return np.minimum(x, d.max) if d.max else x


@dataclass(frozen=True)
class Trace:
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray


def interarrivals(process: str, rate: float, cv: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """Gaps between arrivals: exponential (poisson), gamma with the given CV, or constant."""
    if process == "poisson":
        return rng.exponential(1.0 / rate, n)
    if process == "gamma":
        shape = 1.0 / cv ** 2
        return rng.gamma(shape, 1.0 / (rate * shape), n)
    return np.full(n, 1.0 / rate)


def cached_prefix(prompts: np.ndarray, tokens: int, share: float, shared: int) -> tuple[np.ndarray, np.ndarray]:
    """(prompts, cached tokens of each): prefix caching. ``shared`` > 0: a prefix of that many
    tokens begins every prompt (a shorter draw is lengthened to ``shared + 1``) and is cached for
    all; else each request finds ``tokens`` (or ``share`` of its prompt, rounded down) cached.
    At least one token of every prompt is prefilled: its last position gives the first output."""
    if shared:
        prompts = np.maximum(prompts, shared + 1)
        return prompts, np.full(len(prompts), shared, np.int64)
    c = np.full(len(prompts), tokens, np.int64) if tokens else np.floor(share * prompts).astype(np.int64)
    return prompts, np.clip(c, 0, prompts - 1)

