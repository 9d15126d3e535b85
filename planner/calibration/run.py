"""A calibration run: every family's fits as independent tasks (the full fit from each start,
each held-out refit), run in this process or on a pool of ``jobs`` processes, then put
together into FamilyFits.

Why tasks: a run is ~50 least-squares fits of seconds each, and none needs another's result
(the held-out refits start from the shipped values, not from the full fit), so they spread
over cores. Each fit is deterministic given its rows and start, and the scattered starts are
drawn in the parent, so the report is the same whatever the number of workers. Workers are
sent the points and rebuild their placements once (a fraction of a second), never the
parent's objects."""
from __future__ import annotations

from concurrent.futures import as_completed
from dataclasses import dataclass

import numpy as np

from planner import catalog
from planner.calibration.data import FAMILIES, FOLDS, LOO_MAX, Family, Point, current_value, with_params
from planner.calibration.fit import (FULL_FIT_STARTS, FamilyFit, Prediction, fit_starts, best_start, fit_from,
                                     predict_prepared, prepare)


@dataclass(frozen=True)
class FitTask:
    head: str  # the family
    start: np.ndarray  # log-values the least squares starts from
    fold: tuple[int, ...]  # calibrate rows (indices) left out; () for the full fit


# below this many (task x calibrate row) pairs a run takes ~2 s in one process, less than spawning
# workers that import the planner and prepare their rows (~3 s): the Groq and CS-3 families alone
POOL_MIN_ROW_FITS = 500

_FAMILIES: dict = {}  # in a pool worker: family head -> (family, specs, its calibrate rows prepared)


def _family_rows(fam: Family, points: list[Point]) -> tuple[list[Point], list[Point], dict]:
    """A family's evaluable rows, its calibrate rows (in file order: the folds index them) and
    its specs."""
    rows = [p for p in points if p.hardware in fam.members and p.evaluable]
    specs = {h: catalog.load_hardware(h) for h in fam.members}
    return rows, [p for p in rows if p.role == "calibrate"], specs


def _folds(n: int) -> list[list[int]]:
    """Held-out folds over n calibrate rows: one row each up to ``LOO_MAX``, else ``FOLDS`` folds
    by a fixed rule (row i in fold i mod FOLDS), so the report is reproducible."""
    if n <= LOO_MAX:
        return [[i] for i in range(n)]
    return [list(range(k, n, FOLDS)) for k in range(FOLDS)]


def _init(points: list[Point], families: list[Family]) -> None:
    for fam in families:  # a worker fits on the calibrate rows only
        _, cal, specs = _family_rows(fam, points)
        _FAMILIES[fam.head] = (fam, specs, [prepare(p, specs[p.hardware]) for p in cal])


def _run(task: FitTask, families: dict | None = None) -> tuple[np.ndarray, float]:
    fam, specs, cal = (families or _FAMILIES)[task.head]
    train = [pp for i, pp in enumerate(cal) if i not in task.fold]
    return fit_from(fam, specs, train, task.start)


def run_fits(tasks: list[FitTask], points: list[Point], local: dict, jobs: int = 1,
             progress=None) -> list[tuple[np.ndarray, float]]:
    """Each task's (log-values, cost), in task order. ``local``: family head -> (family, specs,
    calibrate rows prepared), used in this process; ``jobs`` > 1: a spawned process pool (each
    worker prepares the rows again from ``points``; ended at once on Ctrl-C or an error), unless
    the run is too small to gain from one (``POOL_MIN_ROW_FITS``)."""
    out: list = [None] * len(tasks)
    if jobs <= 1 or len(tasks) <= 1 or sum(len(local[t.head][2]) for t in tasks) < POOL_MIN_ROW_FITS:
        for i, t in enumerate(tasks):
            out[i] = _run(t, local)
            if progress is not None:
                progress.step()
        return out
    from planner.pool import start_pool, stop_pool
    pool = start_pool(min(jobs, len(tasks)), _init, (points, [v[0] for v in local.values()]))
    try:
        # the largest families' fits first, so no worker is left with a long one at the end
        order = sorted(range(len(tasks)), key=lambda i: -len(local[tasks[i].head][2]))
        futures = {pool.submit(_run, tasks[i]): i for i in order}
        for fut in as_completed(futures):
            out[futures[fut]] = fut.result()
            if progress is not None:
                progress.step()
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return out


def fit(points: list[Point], families=FAMILIES, cross_validate: bool = True, jobs: int = 1,
        progress=None) -> list[FamilyFit]:
    """Every family's full fit (``FULL_FIT_STARTS`` starts, the lowest cost kept) and, with
    ``cross_validate``, its held-out refits: leave-one-out up to ``LOO_MAX`` calibrate rows,
    else ``FOLDS``-fold. ``jobs``: processes; ``progress(total)``: makes an object told step()
    per fit done and done() at the end (sweeps.progress.Progress)."""
    plans, tasks = [], []
    for fam in families:
        rows, cal, specs = _family_rows(fam, points)
        if not cal:
            continue
        prep = {p.ref: prepare(p, specs[p.hardware]) for p in rows}
        folds = _folds(len(cal)) if cross_validate and len(cal) > len(fam.params) else []
        starts = fit_starts(fam, specs, FULL_FIT_STARTS)
        plans.append((fam, rows, cal, specs, prep, folds))
        tasks += [FitTask(fam.head, x, ()) for x in starts] + [FitTask(fam.head, starts[0], tuple(f)) for f in folds]
    local = {fam.head: (fam, specs, [prep[p.ref] for p in cal]) for fam, _, cal, specs, prep, _ in plans}
    bar = progress(len(tasks)) if progress is not None else None
    try:
        done = run_fits(tasks, points, local, jobs, bar)
    finally:
        if bar is not None:
            bar.done()
    out = []
    for fam, rows, cal, specs, prep, folds in plans:
        mine = [d for t, d in zip(tasks, done) if t.head == fam.head]
        vals = dict(zip(fam.params, np.exp(best_start(mine[:FULL_FIT_STARTS]))))
        fitted = {h: with_params(s, vals) for h, s in specs.items()}
        held: dict[int, float] = {}
        for fold, (xf, _) in zip(folds, mine[FULL_FIT_STARTS:]):
            fs = {h: with_params(s, dict(zip(fam.params, np.exp(xf)))) for h, s in specs.items()}
            for i in fold:
                held[cal[i].ref] = predict_prepared(prep[cal[i].ref], fs[cal[i].hardware])
        ff = FamilyFit(fam, {n: (current_value(specs[fam.head], n), float(v)) for n, v in vals.items()},
                       cv=("leave-one-out" if len(cal) <= LOO_MAX else f"{FOLDS}-fold") if held else "none")
        for p in rows:
            f_val = predict_prepared(prep[p.ref], fitted[p.hardware])
            ho = held.get(p.ref) if p.role == "calibrate" else f_val
            ff.predictions.append(Prediction(p, predict_prepared(prep[p.ref], specs[p.hardware]), f_val, ho))
        out.append(ff)
    return out
