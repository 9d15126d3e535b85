"""Fit the step-time model's named parameters to published measurements, and say how well
the fit predicts points it never saw.

Data: ``hardware_specs/calibration.csv``, one row per published figure (date, source,
configuration, metric, value) with a ``role``:
- ``calibrate``: the fit may use it;
- ``validate``: never fitted: predicted with the full fit and reported as held out;
- ``reference``: shown, not predicted (an undisclosed model, a figure without a shape).

Rows are fitted per *family*: hardware that shares silicon and software stack shares the
parameters (H100 and H200; B200 and GB200 NVL72), written to the family head's spec file,
which the others extend. Each family has a fixed list of named parameters (``FAMILIES``);
a fit is scipy's least_squares on log(predicted / measured) in log-parameter space; the full
fit tries several starts (``FULL_FIT_STARTS``: least squares is local, and a family can have more
than one basin).

Held out (run.py): every calibrate row is also predicted by a fit that did not see it: leave-one-out
when a family has at most ``LOO_MAX`` calibrate rows, else ``FOLDS``-fold cross-validation
(rows assigned to folds by a fixed rule, so the report is reproducible). Validate rows
count as held out too. The spread of held-out measured/predicted ratios per family gives
the uncertainty band written to the spec (``uncertainty``).
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from planner import catalog
from planner.config.errors import ConfigError, Problem
from planner.physics.point import Config, build_point
from planner.config.schema import HardwareSpec
from planner.physics.hardware import Infeasible, resolve
from planner.calibration.data import (ENGINE_CHUNK, PARAMS, TTFT_METRICS, Family,
                                      Point, current_value, offline_batch, with_params)

# ---------------------------------------------------------------- prediction
@dataclass
class _Prepared:
    """One point's shape, placement and batch, built once: fitted parameters move none of them."""

    point: Point
    cfg: Config
    built: object
    batch: int  # the stated batch, or the one an offline maximum ran at (offline_batch)


def _config(p: Point, spec: HardwareSpec) -> Config:
    # a stated attention_parallel sets the model's kind of attention (the other field is unread);
    # blank keeps Config's defaults
    par = {"mla_attention": p.attention_parallel, "gqa_attention": p.attention_parallel} \
        if p.attention_parallel else {}
    return Config(catalog.load_model(p.model), spec, count=p.count, weights=p.precision, kv=p.kv_precision,
                  context=p.context, prompt=p.prompt, output=p.output, batch=p.batch or 1, software=p.software,
                  spec_decode=p.spec, prefill_chunk=max(p.prompt, 1), **par)


def prepare(p: Point, spec: HardwareSpec) -> _Prepared:
    """The row's placement, or ConfigError at its file and row (a data mistake: exit 2)."""
    cfg = _config(p, spec)
    try:
        built = build_point(cfg)
    except Infeasible as e:
        raise _row_error(p, f"{p.hardware} {p.model} does not fit: {e}") from None
    if p.batch is not None and p.batch > built.placement.max_concurrent:
        raise _row_error(p, f"batch {p.batch} > {built.placement.max_concurrent} "
                         f"sequences that fit on {built.placement.devices} x {p.hardware}")
    batch = p.batch if p.batch is not None else \
        offline_batch(p, built.placement.max_concurrent, built.steps.shape, built.placement.devices)
    return _Prepared(p, cfg, built, batch)


def _row_error(p: Point, message: str) -> ConfigError:
    return ConfigError([Problem(p.file or "calibration", p.row, 1, "", f"calibration row: {message}")])


def predict_prepared(pp: _Prepared, spec: HardwareSpec, devices: dict | None = None) -> float:
    """The row's metric under ``spec`` (fitted values applied), reusing the placement and its
    step model's layout (StepModel.with_device). ``devices``: resolved specs by (hardware,
    software), shared by the rows of one evaluation."""
    p, cfg, b, batch = pp.point, pp.cfg, pp.built, pp.batch
    key = (p.hardware, p.software, p.routing)
    dev = devices.get(key) if devices is not None else None
    if dev is None:
        dev = resolve(spec, None, 0, p.software)
        if p.routing == "balanced":  # a synthetic router that loads every expert alike
            dev = dataclasses.replace(dev, ep_imbalance=1.0)
        if devices is not None:
            devices[key] = dev
    sm = b.steps.with_device(dev)
    if p.metric in TTFT_METRICS:
        if batch > 1:  # several prompts prefilled together (e.g. one per attention data-parallel rank)
            engine = sm.prefill_round(p.prompt, 0, batch)[1]
        else:
            engine = sm.ttft_s(p.prompt, 0, cfg.prefill_chunk)
        # a benchmark client also waits on the serving stack around the engine
        return engine + (spec.latency.client_ttft_overhead if p.metric == "client_ttft_s" else 0.0)
    mean_ctx = min(p.context, p.prompt + p.output / 2)
    if p.metric == "tpot_s":  # a static batch of pure decode steps (AIConfigurator's TPOT)
        r = sm.decode_round(batch, mean_ctx)
        return r.round_s / r.accepted_tokens
    if p.metric == "single_stream_tok_s":
        r = sm.decode_round(1, mean_ctx)
        return r.accepted_tokens / r.round_s
    # serving: the others' prefills interleave, in the engines' usual 8,192-token chunks
    if p.metric == "decode_tok_s_per_user":
        _, mixed, _ = sm.steady_round(batch, mean_ctx, p.prompt, p.output, ENGINE_CHUNK)
        return mixed.accepted_tokens / mixed.round_s
    if not p.requests:
        return _aggregate(sm, batch, mean_ctx, p)
    # a finite run of equal requests queued at once: full waves of ``batch``, then the rest
    full, rest = divmod(p.requests, batch)
    seconds = full * batch / _aggregate(sm, batch, mean_ctx, p) if full else 0.0
    if rest:
        seconds += rest / _aggregate(sm, rest, mean_ctx, p)
    return p.requests / seconds


def _aggregate(sm, batch: int, mean_ctx: float, p: Point) -> float:
    """Output tokens per second of ``batch`` sequences decoding while the ones that finish are
    replaced (every replacement's prefill in the replica's time)."""
    _, mixed, serving_s = sm.steady_round(batch, mean_ctx, p.prompt, p.output, ENGINE_CHUNK)
    return batch * mixed.accepted_tokens / serving_s


def predict(p: Point, spec: HardwareSpec) -> float:
    return predict_prepared(prepare(p, spec), spec)


# ---------------------------------------------------------------- fitting
@dataclass
class Prediction:
    point: Point
    shipped: float  # with the spec files as they are
    fitted: float  # with this fit's parameters (in sample for calibrate rows)
    held_out: float | None  # by a fit that did not see the row (validate rows: = fitted)

    @property
    def error(self) -> float:
        return self.fitted / self.point.value - 1

    @property
    def held_out_error(self) -> float | None:
        return None if self.held_out is None else self.held_out / self.point.value - 1

    def cells(self) -> dict[str, str]:
        """The row as the reports print it (terminal table and Markdown)."""
        p = self.point
        return {"ref": p.ref, "date": p.date, "role": p.role, "model": p.model, "precision": p.precision,
                "hardware": p.hardware, "devices": f"{p.hardware}{' x' + str(p.count) if p.count else ''}",
                "metric": p.metric, "batch": "max" if p.batch is None else str(p.batch),
                "measured": f"{p.value:.4g}", "predicted": f"{self.fitted:.4g}", "error": f"{self.error:+.0%}",
                "held_out": "-" if self.held_out is None else f"{self.held_out_error:+.0%}"}


@dataclass
class FamilyFit:
    family: Family
    params: dict[str, tuple[float, float]]  # name -> (shipped, fitted)
    predictions: list[Prediction] = field(default_factory=list)
    cv: str = ""  # "leave-one-out" or "10-fold"

    @property
    def calibrate_points(self) -> int:
        return sum(1 for x in self.predictions if x.point.role == "calibrate")

    @property
    def dof(self) -> int:
        return self.calibrate_points - len(self.params)

    @property
    def band(self) -> tuple[float, float]:
        """(10th, 90th) percentile of held-out measured / predicted *speed* (a TPOT ratio is
        inverted; TTFT rows are left out): multipliers on predicted per-user speed."""
        r = [(x.held_out / x.point.value) if x.point.metric == "tpot_s" else (x.point.value / x.held_out)
             for x in self.predictions if x.held_out is not None and x.point.metric not in TTFT_METRICS]
        if not r:
            return 1.0, 1.0
        return min(1.0, float(np.quantile(r, 0.1))), max(1.0, float(np.quantile(r, 0.9)))


# the full fit (the one written back) tries this many starts; each held-out refit starts from the
# shipped values only (a fold's optimum lies near the full one: 10 x the starts would cost minutes)
FULL_FIT_STARTS = 4
START_SPREAD = 0.5  # log-space sigma of the scattered starts (x/ 1.65)
# a scattered start replaces the shipped one's fit only when its cost is lower by this share: another
# basin, not the last digits of the same flat one (which would move every --write a little)
BETTER_BASIN = 1e-3


def _bounds(family: Family) -> tuple[np.ndarray, np.ndarray]:
    """Each parameter's (low, high) in log space."""
    names = [n.partition("@")[0] for n in family.params]
    return np.log([PARAMS[n][1][0] for n in names]), np.log([PARAMS[n][1][1] for n in names])


def _shipped(family: Family, specs: dict[str, HardwareSpec]) -> np.ndarray:
    """The shipped values in log space, inside the bounds (an unset, zero one mid-range)."""
    lo, hi = _bounds(family)
    cur = np.array([current_value(specs[family.head], n) for n in family.params])
    x0 = np.clip(np.log(np.where(cur > 0, cur, 1.0)), lo + 1e-9, hi - 1e-9)
    return np.where(cur > 0, x0, (lo + hi) / 2)


def fit_starts(family: Family, specs: dict[str, HardwareSpec], n: int) -> list[np.ndarray]:
    """Where a fit starts (log-values): the shipped values, then n - 1 points scattered about
    them (log-normal, sigma ``START_SPREAD``, seeded by the family: the same data gives the same
    fit)."""
    lo, hi = _bounds(family)
    x0 = _shipped(family, specs)
    rng = np.random.default_rng(zlib.crc32(family.head.encode()))
    return [x0] + [np.clip(x0 + rng.normal(0.0, START_SPREAD, len(x0)), lo + 1e-9, hi - 1e-9) for _ in range(n - 1)]


def fit_from(family: Family, specs: dict[str, HardwareSpec], prepared: list[_Prepared],
             start: np.ndarray) -> tuple[np.ndarray, float]:
    """One least-squares fit of the family's parameters on ``prepared`` from ``start``:
    (log-values, cost). A weak pull towards the shipped values keeps parameters the data
    cannot see where they were."""
    names = family.params
    lo, hi = _bounds(family)
    x0 = _shipped(family, specs)

    def resid(x):
        vals = dict(zip(names, np.exp(x)))
        fitted, devices = {h: with_params(s, vals) for h, s in specs.items()}, {}
        return [math.log(predict_prepared(pp, fitted[pp.point.hardware], devices) / pp.point.value)
                for pp in prepared]

    def objective(x):
        return np.concatenate([resid(x), 1e-3 * (x - x0)])

    r = least_squares(objective, start, bounds=(lo, hi), diff_step=1e-3, xtol=1e-6, ftol=1e-6)
    return r.x, float(r.cost)


def best_start(results: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Of fits from several starts, taken in start order (the shipped values first): a later one
    replaces the best so far only when its cost is lower by more than ``BETTER_BASIN``."""
    best = results[0]
    for r in results[1:]:
        if r[1] < best[1] * (1 - BETTER_BASIN):
            best = r
    return best[0]


def _fit_values(family: Family, specs: dict[str, HardwareSpec], prepared: list[_Prepared],
                starts: int = 1) -> np.ndarray:
    """The fit (log-values) from ``starts`` starts, in this process. Least squares is local:
    a family can have more than one basin."""
    return best_start([fit_from(family, specs, prepared, x) for x in fit_starts(family, specs, starts)])


def summary(fits: list[FamilyFit]) -> list[dict]:
    """Per reporting group and overall: points, parameters, median/max |error| in and out of sample."""
    groups: dict[str, list[FamilyFit]] = {}
    for f in fits:
        groups.setdefault(f.family.group, []).append(f)
    rows = []
    for name, fs in [*groups.items(), ("overall", fits)]:
        preds = [x for f in fs for x in f.predictions]
        ins = [abs(x.error) for x in preds if x.point.role == "calibrate"]
        out = [abs(x.held_out_error) for x in preds if x.held_out is not None]
        rows.append({"group": name, "families": ", ".join(f.family.head for f in fs),
                     "calibrate_points": len(ins), "parameters": sum(len(f.params) for f in fs),
                     "held_out_points": len(out),
                     "models": len({x.point.model for x in preds if x.held_out is not None}),
                     "in_sample_median": float(np.median(ins)) if ins else math.nan,
                     "held_out_median": float(np.median(out)) if out else math.nan,
                     "held_out_max": float(np.max(out)) if out else math.nan})
    return rows


def markdown(fits: list[FamilyFit]) -> str:
    """Every predicted point as a Markdown table (the README's calibration table)."""
    out = ["| file:row | date | hardware | model | precision | metric | batch | measured | predicted | error | held out | role |",
           "|---:|---|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for f in fits:
        for x in f.predictions:
            c = x.cells()
            out.append(f"| {c['ref']} | {c['date']} | {c['devices']} | {c['model']} | {c['precision']} | "
                       f"{c['metric']} | {c['batch']} | {c['measured']} | {c['predicted']} | {c['error']} | "
                       f"{c['held_out']} | {'fit' if c['role'] == 'calibrate' else 'validation'} |")
    return "\n".join(out) + "\n"
