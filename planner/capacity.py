"""Capacity at the SLO: the highest load one replica carries while every SLO target holds.

The load is the number of closed-loop users (an integer) or an open arrival rate. The search:

1. an analytic guess: the largest batch whose closed-form per-user speed (and TPOT) still
   meet the SLO, capped by the sequences whose KV fits (closed loop: that many users; open:
   the request rate that batch serves);
2. probe the guess with the engine; step up x1.5 (up to the ceiling) while probes pass, or
   down x0.5 (down to the floor) while they fail, which brackets the capacity;
3. bisect the bracket [highest pass, lowest fail] until it is within ``tolerance`` of its
   lower end (closed loops: one user).

It assumes more load never improves the SLO verdict. Simulated percentiles carry noise, so
the answer is the highest *passing* probe: never a load that was seen to fail.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

from .analytic import RENAMED, Config, estimate
from .config.schema import SLO

GROW, MAX_GROW, SHRINK, FLOOR_STEP = 1.5, 4.0, 0.5, 0.1
# open arrivals: a probe whose replicas clear requests this much slower than they arrive is
# overloaded (its queue grows without bound; a finite run would otherwise hide it)
STABLE = 0.95


def slo_misses(slo: SLO, row: dict, simulated: bool = True) -> list[str]:
    """Names of the SLO targets ``row`` misses (simulated percentiles, else the analytic figures)."""
    checks = [("ttft_p99_s", slo.ttft_p99_s, row.get("ttft_p99_s" if simulated else "ttft_analytic_s"), 1),
              ("tpot_p99_s", slo.tpot_p99_s, row.get("tpot_p99_s" if simulated else "tpot_analytic_s"), 1),
              ("decode_tok_s_per_user_p50", slo.decode_tok_s_per_user_p50,
               row.get("decode_tok_s_per_user_p50" if simulated else "decode_tok_s_per_user_analytic"), -1)]
    return [name for name, target, value, sign in checks
            if target is not None and value is not None and not (sign * value <= sign * target)]


def excess(slo: SLO, summary: dict, open_loop: bool) -> float:
    """How far a simulated run is from its SLO: the largest measured/target ratio (target/measured
    for speeds; requests arrived/cleared for an open queue). Above 1: a miss."""
    ratios = [1.0 / max(summary.get("served_to_offered", 1.0), 1e-9) / STABLE] if open_loop else []
    for name, target, sign in (("ttft_p99_s", slo.ttft_p99_s, 1), ("tpot_p99_s", slo.tpot_p99_s, 1),
                               ("decode_tok_s_per_user_p50", slo.decode_tok_s_per_user_p50, -1)):
        value = summary.get(name)
        if target is not None and value is not None and value > 0:
            ratios.append((value / target) ** sign)
    return max(ratios, default=0.0)


def has_targets(slo: SLO) -> bool:
    return any(v is not None for v in (slo.ttft_p99_s, slo.tpot_p99_s, slo.decode_tok_s_per_user_p50))


def analytic_batch(cfg: Config, slo: SLO, max_batch: int) -> int:
    """Largest batch <= max_batch whose analytic per-user speed and TPOT meet the SLO (0: none).

    Per-user speed falls as the batch grows, so an integer bisection needs ~log2(max_batch)
    closed-form estimates (about 2 ms each)."""
    def ok(b: int) -> bool:
        r = estimate(dataclasses.replace(cfg, batch=b))
        r = {RENAMED.get(k, k): v for k, v in r.items()}
        return r["fits"] and not [m for m in slo_misses(slo, r, simulated=False) if m != "ttft_p99_s"]

    if max_batch < 1 or not ok(1):
        return 0
    lo, hi = 1, max_batch
    if ok(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


@dataclass
class Probe:
    load: float
    passed: bool
    misses: list[str]
    result: object  # whatever the probe function returned (a simulation summary)


@dataclass
class Found:
    load: float  # highest passing load; 0 when even the floor fails
    best: Probe | None  # the probe at that load (None when nothing passed)
    probes: list[Probe]
    limit: str  # what stopped it: the SLO target(s) missed just above, the ceiling's name, or "floor"

    @property
    def lowest(self) -> Probe:
        return min(self.probes, key=lambda p: p.load)


def search(probe: Callable[[float], tuple[list[str], object]], guess: float, floor: float, ceiling: float,
           integer: bool, tolerance: float = 0.05, max_probes: int = 12, ceiling_name: str = "ceiling",
           excess: Callable[[object], float] | None = None) -> Found:
    """Bracket then narrow down the highest load in [floor, ceiling] whose probe misses no target.

    ``probe(load) -> (misses, result)``; an empty ``misses`` is a pass. ``excess(result)``
    (optional; above 1 on a miss, e.g. measured p99 / target) speeds it up, since latency grows
    about in proportion to load: a failing probe steps down by 1/excess (x0.1 to x0.5) instead
    of x0.5, a passing one up by 1/excess (x1.5 to x4) instead of x1.5; inside the bracket the
    next load is interpolated where excess would be 1, nudged by half the tolerance past the
    end that last held, so a good estimate closes the bracket in two probes (a midpoint after
    two probes on the same side, so a curved excess cannot stall it).

    The limit reported is the target(s) missed by the lowest failing probe above the answer,
    ``ceiling_name`` when the ceiling itself passed, or "floor" when nothing did."""
    if integer:
        floor, ceiling = max(1, math.ceil(floor)), max(1, math.floor(ceiling))
    ceiling = max(ceiling, floor)
    snap = (lambda x: int(min(max(round(x), floor), ceiling))) if integer else (lambda x: min(max(x, floor), ceiling))
    probes: list[Probe] = []
    seen: dict[float, Probe] = {}

    def run(x) -> Probe:
        if x not in seen:
            misses, res = probe(x)
            seen[x] = Probe(x, not misses, misses, res)
            probes.append(seen[x])
        return seen[x]

    def result(limit: str) -> Found:
        ok = [p for p in probes if p.passed]
        best = max(ok, key=lambda p: p.load) if ok else None
        if limit == "":
            above = [p for p in probes if not p.passed and (best is None or p.load > best.load)]
            limit = "+".join(min(above, key=lambda p: p.load).misses) if above else ceiling_name
        return Found(best.load if best else 0, best, probes, limit)

    x = snap(guess if guess > 0 else floor)
    p = run(x)
    lo = hi = None
    while len(probes) < max_probes:  # bracket
        if p.passed:
            lo = p.load
            if lo >= ceiling:
                return result(ceiling_name)
            if hi is not None:
                break
            up = GROW if excess is None else min(MAX_GROW, max(GROW, 1 / max(excess(p.result), 1e-9)))
            p = run(snap(lo * up) if snap(lo * up) > lo else snap(lo + 1))
        else:
            hi = p.load
            if hi <= floor:
                return result("floor")
            if lo is not None:
                break
            factor = SHRINK if excess is None else min(SHRINK, max(FLOOR_STEP, 1 / max(excess(p.result), 1e-9)))
            p = run(snap(hi * factor))
    sides: list[bool] = []
    while lo is not None and hi is not None and len(probes) < max_probes:  # narrow down
        if hi - lo <= max(tolerance * lo, 1 if integer else 0):
            break
        x = (lo + hi) / 2
        if excess is not None and sides[-2:] not in ([True, True], [False, False]):
            e_lo, e_hi = excess(seen[lo].result), excess(seen[hi].result)
            if e_lo < 1 < e_hi:
                x = lo + (1 - e_lo) / (e_hi - e_lo) * (hi - lo)
                if sides:  # aim just past the estimate, on the side that would close the bracket
                    x *= 1 - tolerance / 2 if not sides[-1] else 1 + tolerance / 2
        x = snap(x)
        if x in (lo, hi):
            x = snap((lo + hi) / 2)
            if x in (lo, hi):
                break
        p = run(x)
        sides.append(p.passed)
        lo, hi = (x, hi) if p.passed else (lo, x)
    return result("")
