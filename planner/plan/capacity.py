"""Capacity at the SLO: the highest load one replica carries while every SLO target holds.

The load is the number of closed-loop users (an integer) or an open arrival rate. The search:

1. an analytic guess: the largest batch whose closed-form per-user speed (and TPOT) still
   meet the SLO, capped by the sequences whose KV fits (closed loop: that many users; open:
   the request rate that batch serves), and, with a TTFT target, by the load at which prefill
   queues to it (probe.prefill_guess);
2. probe the guess with the engine; step up x1.5 (up to the ceiling) while probes pass, or
   down x0.5 (down to the floor) while they fail, which brackets the capacity;
3. bisect the bracket [highest pass, lowest fail] until it is within ``tolerance`` of its
   lower end (closed loops: one user).

Each probe runs as many requests as the SLO's percentiles need and stops as soon as a miss
is certain (probe.py: ``run_probe``); a stopped probe that must be reported is run in full.
It assumes more load never improves the SLO verdict. Simulated percentiles carry noise, so
the answer is the highest *passing* probe: never a load that was seen to fail.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from planner.config.schema import SLO, SLO_TARGETS, Scenario
from planner.physics.point import Built, Config
from planner.plan.estimate import Estimate, estimate
from planner.plan.probe import Stopped, Watch, prefill_guess, shorten
from planner.plan.simulate import arrival_of, demand_req_s, sim_spec
from planner.sim.engine import simulate
from planner.sim.records import STABLE  # open arrivals: below it a probe is overloaded
from planner.sim.watch import Settled, watching

GROW, MAX_GROW, SHRINK, FLOOR_STEP = 1.5, 4.0, 0.5, 0.1
AIM = 0.3  # a predicted limit is probed this many tolerances past, so two such probes close the bracket
ABOVE, BELOW = 1.1, 0.9  # first probe against prefill_guess: closed loops past it, open ones below


def slo_misses(slo: SLO, values: Mapping[str, float | None]) -> list[str]:
    """Names of the SLO targets missed by ``values`` (figures by target name; None: not measured)."""
    return [name for name, target, sense, _ in slo.targets()
            if values.get(name) is not None and not (sense * values[name] <= sense * target)]


def analytic_values(est: Estimate) -> dict[str, float | None]:
    """The analytic estimate's figures under the SLO targets' names."""
    return {name: getattr(est, analytic) for name, _, analytic in SLO_TARGETS}


def excess(slo: SLO, summary, open_loop: bool) -> float:
    """How far a simulated run is from its SLO: the largest measured/target ratio (target/measured
    for speeds; requests arrived/cleared for an open queue). Above 1: a miss."""
    ratios = [1.0 / max(summary.served_to_offered, 1e-9) / STABLE] if open_loop else []
    for name, target, sense, _ in slo.targets():
        value = summary.get(name)
        if value is not None and value > 0:
            ratios.append((value / target) ** sense)
    return max(ratios, default=0.0)


def analytic_batch(cfg: Config, built: Built, slo: SLO, max_batch: int, figures=estimate) -> int:
    """Largest batch <= max_batch whose analytic per-user speed and TPOT meet the SLO (0: none).
    ``figures(cfg, built)``: the Estimate at ``cfg.batch`` (a decode pool's without prefill:
    plan/disagg.decode_only).

    Per-user speed falls as the batch grows, so an integer bisection needs ~log2(max_batch)
    closed-form estimates (about 2 ms each)."""
    def ok(b: int) -> bool:
        est = figures(dataclasses.replace(cfg, batch=b), built)
        return est.fits and not [m for m in slo_misses(slo, analytic_values(est)) if m != "ttft_p99_s"]

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
           excess: Callable[[object], float] | None = None,
           predict: Callable[[Probe], float | None] | None = None) -> Found:
    """Bracket then narrow down the highest load in [floor, ceiling] whose probe misses no target.

    ``probe(load) -> (misses, result)``; an empty ``misses`` is a pass. ``excess(result)``
    (optional; above 1 on a miss, e.g. measured p99 / target) speeds it up, since latency grows
    about in proportion to load: a failing probe steps down by 1/excess (x0.1 to x0.5) instead
    of x0.5, a passing one up by 1/excess (x1.5 to x4) instead of x1.5; inside the bracket the
    next load is interpolated where excess would be 1, nudged by half the tolerance past the
    end that last held, so a good estimate closes the bracket in two probes (a midpoint after
    two probes on the same side, so a curved excess cannot stall it). ``predict(probe)``
    (optional; None when it cannot tell) is the load a probe's own figures put the limit at:
    when it has one, the next probe goes just past it (``AIM`` x tolerance below after a miss,
    above after a pass), so one passing probe near the limit between two cheap misses can
    close the bracket.

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

    def aimed(p: Probe, lo, hi):
        """The next load by ``predict``, if it has one strictly inside (lo, hi)."""
        at = predict(p) if predict is not None else None
        if at is None or not at > 0:
            return None
        x = snap(at * (1 + AIM * tolerance if p.passed else 1 - AIM * tolerance))
        if integer and x == (lo if p.passed else hi):  # rounded onto the end that held: the user past it
            x += 1 if p.passed else -1
        return x if (lo is None or x > lo) and (hi is None or x < hi) and x not in seen else None

    def secant(p: Probe) -> float:
        """Step up to where the line through this pass and the previous one reaches excess 1
        (excess grows slower than load where per-user speed binds: 1/excess alone crawls)."""
        below = [q for q in probes if q.passed and q.load < p.load]
        if excess is None or not below:
            return 0.0
        q = max(below, key=lambda q: q.load)
        e0, e1 = excess(q.result), excess(p.result)
        return (p.load + (1 - e1) * (p.load - q.load) / (e1 - e0)) / p.load if e0 < e1 < 1 else 0.0

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
            up = GROW if excess is None else min(MAX_GROW, max(GROW, 1 / max(excess(p.result), 1e-9),
                                                               secant(p)))
            x = aimed(p, lo, None)
            p = run(x if x is not None else snap(lo * up) if snap(lo * up) > lo else snap(lo + 1))
        else:
            hi = p.load
            if hi <= floor:
                return result("floor")
            if lo is not None:
                break
            factor = SHRINK if excess is None else min(SHRINK, max(FLOOR_STEP, 1 / max(excess(p.result), 1e-9)))
            x = aimed(p, None, hi)
            p = run(x if x is not None else snap(hi * factor))
    sides: list[bool] = []
    while lo is not None and hi is not None and len(probes) < max_probes:  # narrow down
        if hi - lo <= max(tolerance * lo, 1 if integer else 0):
            break
        x = (lo + hi) / 2
        same_side = sides[-2:] in ([True, True], [False, False])
        by_prediction = None if same_side else aimed(p, lo, hi)
        if by_prediction is not None:
            x = by_prediction
        elif excess is not None and not same_side:
            e_lo, e_hi = excess(seen[lo].result), excess(seen[hi].result)
            if e_lo < 1 < e_hi:
                x = lo + (1 - e_lo) / (e_hi - e_lo) * (hi - lo)
                if sides:  # aim just past the estimate, on the side that would close the bracket
                    x *= 1 - tolerance / 2 if not sides[-1] else 1 + tolerance / 2
        x = snap(x)
        if integer and x in (lo, hi) and hi - lo > 2 and by_prediction is None and not same_side:
            x = lo + 1 if x == lo else hi - 1  # an estimate rounded onto an end: the user next to it
        if x in (lo, hi):
            x = snap((lo + hi) / 2)
            if x in (lo, hi):
                break
        p = run(x)
        sides.append(p.passed)
        lo, hi = (x, hi) if p.passed else (lo, x)
    return result("")


def run_probe(sc: Scenario, base_dir: Path, rounds, sat_req_s: float, load: float, early: bool = True):
    """One replica at ``load``: (SLO targets missed, SimResult or Stopped). As many requests as
    the SLO's percentiles need (probe.shorten); ``early``: stopped once a miss is certain."""
    closed = arrival_of(sc).process == "closed"
    spec = sim_spec(sc, base_dir, 1, sat_req_s, load)
    if sc.workload.requests is None:  # as many as the percentiles need (a set number is kept)
        spec = shorten(spec, sc.slo, spec.users if closed else None)
    try:
        with watching(Watch(sc.slo, spec.warmup_fraction) if early and spec.plan is None else None):
            res = simulate(spec, rounds)
    except Settled as e:  # a miss for sure: the rest of the run cannot change the verdict
        return list(e.misses), Stopped(spec, e.figures)
    misses = slo_misses(sc.slo, {name: res.summary.get(name) for name, *_ in sc.slo.targets()})
    if not closed and res.summary.served_to_offered < STABLE:
        misses.append("unstable")
    return misses, res


def ttft_limit(slo: SLO, p: Probe, think_s: float) -> float | None:
    """Closed loop whose TTFT binds: the users at which p99 TTFT meets its target, by the
    probe's own figures. Once prefill is saturated the loop cycles at the prefill rate mu, every
    user waiting about alike: users = mu (TTFT + decode + think). A miss stopped early measured
    mu (prompts prefilled per second) and the decode time; a full run gives mu = users / cycle.
    None when TTFT is not what binds."""
    target, r = slo.ttft_p99_s, p.result
    if target is None:
        return None
    if isinstance(r, Stopped):
        mu, decode = r.figures.get("first_token_rate"), r.figures.get("decode_s")
        return mu * (target + decode + think_s) if "ttft_p99_s" in p.misses and mu and decode else None
    s = r.summary
    ratios = {name: (s.get(name) / t) ** sense for name, t, sense, _ in slo.targets() if s.get(name)}
    if not ratios or max(ratios, key=ratios.get) != "ttft_p99_s":
        return None
    decode = max(s.e2e_p50_s - s.ttft_p50_s, 0.0)
    return p.load * (target + decode + think_s) / (s.ttft_p99_s + decode + think_s)


# closed loops with a TTFT target: search up to this many times the larger of the sequences
# that fit and the target users (the stop_at_target cap applies first)
CLOSED_CEILING = 4


@dataclass(frozen=True)
class Capacity:
    """The highest load one replica carries within the SLO, and the deployment that carries
    the target load at that rate (replicas share nothing but the router, so R replicas carry R
    x one replica's capacity: the pooling gain of a shared queue is left out, conservatively)."""

    probes: int
    limit: str  # what stopped the search (see search())
    users_per_replica: float
    req_s_per_replica: float
    target: float | None
    target_unit: str  # users, req/s, or the demand's: out tok/s or tok/s
    replicas: int
    devices: int
    batch_per_replica: float  # mean requests in the system at capacity
    throughput_out_tok_s: float  # deployment, simulated at capacity
    throughput_in_tok_s: float  # fresh (prefilled) input
    throughput_cached_in_tok_s: float  # input served from a cached prefix
    throughput_req_s: float
    goodput_req_s: float  # deployment: requests/s that met every SLO target
    goodput_out_tok_s: float
    closed: bool
    slo_pass: bool
    reason: str
    result: object = dataclasses.field(repr=False, compare=False)  # the SimResult at capacity (or lowest load)

    @property
    def users(self) -> float:
        return self.users_per_replica * self.replicas

    @property
    def req_s(self) -> float:
        return self.req_s_per_replica * self.replicas


def capacity_search(cfg: Config, built: Built, sc: Scenario, base_dir: Path, rounds, est: Estimate,
                    sizing) -> Capacity:
    """Capacity search on one replica, then the replicas the target load needs at the SLO: a
    target in users or requests/s over what one replica carries of it, or a demand in tokens/s
    (``workload.demand``) over the tokens/s of its kind one replica carried at capacity."""
    arr = arrival_of(sc)
    closed = arr.process == "closed"
    demand = sc.workload.demand
    if demand is not None:  # closed: the users it takes are not known before the search
        target = None if closed else demand_req_s(sc, base_dir)
    else:
        target = (arr.users or sc.workload.concurrent_users) if closed else arr.rate_per_s
    per_seq = est.max_concurrent_sequences
    b = analytic_batch(cfg, built, sc.slo, per_seq)
    sat_req_s = sizing.capacity_req_s / sizing.replicas
    if closed and sc.slo.ttft_p99_s is None:  # users beyond what fits would only wait, unseen by the SLO
        guess, floor, ceiling, top = b, 1, per_seq, "kv_capacity"
    elif closed:  # users queue (or spill KV off-chip); the TTFT target says how many is too many
        guess, floor, ceiling, top = b, 1, max(per_seq, target or 0) * CLOSED_CEILING, "search_ceiling"
    else:
        guess = estimate(dataclasses.replace(cfg, batch=b), built).aggregate_tok_s / max(cfg.output, 1) if b else 0.0
        floor, ceiling, top = sat_req_s / 100, sat_req_s, "saturation"
    w = sc.workload
    queued = prefill_guess(rounds, sc.slo, est.prompt_tokens, cfg.output, sc.deployment.prefill_chunk_tokens,
                           arr.think_s if closed else 0.0, max(b, 1), closed, est.cached_tokens) \
        if w.agentic is None else None
    if queued is not None and guess > 0:  # the TTFT target binds first when prefill queues sooner
        # closed: start just past it (a miss there is cheap, and its prefill rate puts the limit
        # within a few %); open: just below it (nothing predicts an open queue's limit)
        guess = min(guess, queued * (ABOVE if closed else BELOW))
    if sc.capacity.stop_at_target and target and target < ceiling:
        ceiling, top = target, "target"

    def probe(load):
        return run_probe(sc, base_dir, rounds, sat_req_s, load)

    found = search(probe, guess, floor, ceiling, closed, sc.capacity.tolerance, sc.capacity.max_probes, top,
                   lambda res: excess(sc.slo, res.summary, not closed),
                   (lambda p: ttft_limit(sc.slo, p, arr.think_s)) if closed else None)
    at = found.best or found.lowest
    if isinstance(at.result, Stopped):  # reported: run it to the end
        at = dataclasses.replace(at, result=simulate(at.result.spec, rounds))
    summary = at.result.summary
    per_req_s = summary.throughput_req_s if found.best else 0.0
    # closed: the users found; open: Little's law, users in flight = rate x time in system
    per_users = found.load if closed else per_req_s * summary.mean_sojourn_s
    per = per_users if closed else per_req_s
    unit = "users" if closed else "req/s"
    if demand is not None:  # the demand's tokens/s over what one replica carried of them at capacity
        per = demand.of(summary.throughput_out_tok_s, summary.throughput_in_tok_s,
                        summary.throughput_cached_in_tok_s) if found.best else 0.0
        target, unit = demand.value, demand.unit
    replicas = sc.deployment.replicas or (math.ceil(target / per - 1e-9) if target and per > 0 else sizing.replicas)
    slo_pass, reason = True, ""
    if not found.best:
        misses = ", ".join(_miss_text(sc.slo, summary, m) for m in at.misses)
        lowest = _load_text(at.load, "users" if closed else "req/s")
        slo_pass, reason = False, f"SLO missed even at the lowest load ({lowest}): {misses}"
    elif sc.deployment.replicas and target and per * replicas < target:
        slo_pass, reason = False, (f"{replicas} replicas carry {_load_text(per * replicas, unit)} within the "
                                   f"SLO; the target is {_load_text(target, unit)}")
    return Capacity(probes=len(found.probes), limit=found.limit, users_per_replica=per_users,
                    req_s_per_replica=per_req_s, target=target, target_unit=unit, replicas=replicas,
                    devices=sizing.devices_per_replica * replicas, batch_per_replica=summary.mean_in_system,
                    throughput_out_tok_s=summary.throughput_out_tok_s * replicas,
                    throughput_in_tok_s=summary.throughput_in_tok_s * replicas,
                    throughput_cached_in_tok_s=summary.throughput_cached_in_tok_s * replicas,
                    throughput_req_s=summary.throughput_req_s * replicas,
                    goodput_req_s=summary.goodput_req_s * replicas,
                    goodput_out_tok_s=summary.goodput_out_tok_s * replicas, closed=closed,
                    slo_pass=slo_pass, reason=reason, result=at.result)


def _load_text(x: float, unit: str) -> str:
    return f"{x:,.0f} users" if unit == "users" else f"{x:,.3g} {unit}"


def _miss_text(slo: SLO, summary, name: str) -> str:
    if name == "unstable":
        return f"unstable (requests cleared at {summary.served_to_offered:.0%} of the rate they arrived)"
    return f"{name} {summary.get(name, math.nan):.3g} vs target {getattr(slo, name)}"
