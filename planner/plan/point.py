"""Plan one sweep point: physics once -> analytic estimate -> users/replicas -> simulation
(once, or a capacity search) -> costs -> SLO verdict, as one immutable :class:`PointResult`.

Every stage returns its own typed result and nothing downstream writes into an upstream one;
``sweep/tables.py`` alone turns a PointResult into a row of results.csv.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from planner.config.schema import Demand, Economics, Scenario
from planner.physics.hardware import Device, Infeasible
from planner.physics.point import Built, Config, build_point, memory_limit
from planner.plan.agents import service_figures
from planner.plan.capacity import Capacity, analytic_batch, analytic_values, capacity_search, slo_misses
from planner.plan.economics import Costs, PowerCap, costs, power_cap
from planner.plan.estimate import Estimate, estimate
from planner.plan.frontier import FrontierPoint, frontier
from planner.plan.pools import Pools
from planner.plan.scenario import Loaded, Point
from planner.plan.simulate import arrival_of, closed_users, rounds_for, run_sim
from planner.sim.engine import SimResult, Summary
from planner.sim.errors import TooLarge
from planner.sim.sessions import TaskStats


@dataclass(frozen=True)
class Sizing:
    """Users -> replicas, analytically: how many replicas of how many sequences, and what the
    deployment serves by the closed-form model."""

    replicas: int
    batch_per_replica: int
    concurrent_users: float
    devices_per_replica: int
    devices: int
    capacity_tok_s_analytic: float  # output tok/s the deployment serves at the largest batch that fits
    aggregate_tok_s_analytic: float  # ... at the operating batch
    input_tok_s_analytic: float  # fresh (prefilled) input
    cached_input_tok_s_analytic: float  # input served from a cached prefix
    capacity_req_s: float  # the first as requests/s (sets a default open arrival rate)


@dataclass(frozen=True)
class Bands:
    """Low/high figures from the hardware's speed band (and the capex range for cost)."""

    decode_tok_s_per_user_low: float
    decode_tok_s_per_user_high: float
    throughput_out_tok_s_low: float
    throughput_out_tok_s_high: float
    cost_usd_per_mtok_out_low: float
    cost_usd_per_mtok_out_high: float


@dataclass(frozen=True)
class Load:
    """What each replica carried: the deployment's rates over its replicas, and its users (closed
    loops: the users it serves, thinking ones included; open arrivals: the requests in it, by
    Little's law the rate x time in the system)."""

    req_s: float
    out_tok_s: float
    in_tok_s: float  # fresh (prefilled) input
    cached_in_tok_s: float
    users: float


@dataclass(frozen=True)
class Service:
    """A service profile's agent tasks, timed in closed form (no hardware of ours)."""

    model: str
    tasks: TaskStats
    cost_usd_per_task: float
    decode_tok_s_per_user_p50: float
    ttft_p50_s: float


@dataclass(frozen=True)
class PointResult:
    """Everything known about one sweep point; ``sweep.tables.row`` flattens it."""

    point: Point
    feasible: bool
    reason: str = ""
    bottleneck: str | None = None
    slo_pass: bool = False
    estimate: Estimate | None = None
    sizing: Sizing | None = None
    sim: Summary | None = None
    capacity: Capacity | None = None
    throughput_source: str | None = None  # analytic | sim | service
    throughput_out_tok_s: float | None = None  # deployment
    throughput_in_tok_s: float | None = None  # fresh (prefilled) input
    throughput_cached_in_tok_s: float | None = None  # input served from a cached prefix
    throughput_req_s: float | None = None
    costs: Costs | None = None
    bands: Bands | None = None
    cost_usd_per_task: float | None = None
    service: Service | None = None
    frontier: tuple[FrontierPoint, ...] = ()  # the configuration's cost-vs-speed curve (analytic)
    cap: PowerCap | None = None  # the replicas a facility power cap holds (economics.facility_power_cap)
    pools: Pools | None = None  # a disaggregated deployment's two pools (plan/disagg.py)
    load: Load | None = None  # per replica
    error: str | None = None  # "Type: message" when evaluating the point raised


def evaluate(loaded: Loaded, pt: Point, simulate: bool | None = None) -> PointResult:
    """The point's result; a point that raises becomes a result saying so (one bad point never
    loses the others)."""
    try:
        return run_point(loaded, pt, simulate)[0]
    except Exception as e:  # noqa: BLE001 - reported in the row, the sweep goes on
        return failed(pt, e)


def failed(pt: Point, e: BaseException) -> PointResult:
    return PointResult(pt, feasible=False, reason=f"error: {type(e).__name__}: {e}", bottleneck="error",
                       error=f"{type(e).__name__}: {e}")


def demand_batch(cfg: Config, built: Built, demand: Demand, est: Estimate, fixed: int | None) -> tuple[int, int, str]:
    """(replicas, batch per replica, reason the demand is not carried or ""), analytically:
    replicas = ceil(demand / the demand's tokens/s of a replica at the largest batch that fits),
    then the smallest batch whose closed-form rate carries demand / replicas (a bisection: the
    aggregate rate grows with the batch)."""
    def rate(e: Estimate) -> float:
        return demand.of(e.aggregate_tok_s, e.input_tok_s, e.cached_input_tok_s)

    per, top = est.max_concurrent_sequences, rate(est)
    replicas = fixed or max(1, math.ceil(demand.value / top - 1e-9))
    if replicas * top < demand.value * (1 - 1e-9):
        return replicas, per, (f"{replicas} replicas carry {replicas * top:,.0f} {demand.unit} at most (closed form); "
                               f"the demand is {demand.value:,.0f}")
    need, lo, hi = demand.value / replicas, 1, per
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if rate(estimate(dataclasses.replace(cfg, batch=mid), built)) >= need else (mid + 1, hi)
    return replicas, lo, ""


def size(cfg: Config, built: Built | None, sc: Scenario, simulated: bool = False) -> tuple[Config, Estimate,
                                                                                         Sizing | None, str]:
    """(Config at the operating batch, its Estimate, Sizing, reason it cannot hold the users or "").

    With ``count`` unset the pipeline was sized to hold all users (weights stored once);
    otherwise as many replicas as the users need (or the configured number). With a configured
    number and the simulator to run, users past what SRAM holds are a fixed load for it (they
    queue for room, or go beyond it with offload, swap or preempt), not a reason; the analytic
    figures stay at the batch SRAM holds. Without the simulator, a capacity search takes the
    largest batch whose closed-form speed meets the SLO per replica. A demand in tokens/s
    (``workload.demand``) is sized by demand_batch."""
    est = estimate(cfg, built)
    if not est.fits:
        return cfg, est, None, ""
    users, fixed, demand = sc.workload.concurrent_users, sc.deployment.replicas, sc.workload.demand
    per, capacity, why = est.max_concurrent_sequences, est.aggregate_tok_s, ""
    if demand is not None:
        replicas, batch, why = demand_batch(cfg, built, demand, est, fixed)
    elif users is None:
        replicas, batch = fixed or 1, per
    else:
        if not simulated and sc.capacity.search and fixed is None:  # no engine to find the capacity:
            per = analytic_batch(cfg, built, sc.slo, per) or per  # the closed form's (capacity.py, step 1)
        replicas = fixed or math.ceil(users / per)
        batch = math.ceil(users / replicas)
        if users > replicas * per and fixed is not None and simulated:
            batch = per
        elif users > replicas * per:
            why = f"{users} users need {math.ceil(users / per)} replicas of {per} sequences; {replicas} configured"
    cfg = dataclasses.replace(cfg, batch=batch)
    if not why and batch != est.batch:
        est = estimate(cfg, built)
    sizing = Sizing(replicas=replicas, batch_per_replica=batch,
                    concurrent_users=batch * replicas if users is None else users,
                    devices_per_replica=est.devices, devices=est.devices * replicas,
                    capacity_tok_s_analytic=capacity * replicas,
                    aggregate_tok_s_analytic=est.aggregate_tok_s * replicas,
                    input_tok_s_analytic=est.input_tok_s * replicas,
                    cached_input_tok_s_analytic=est.cached_input_tok_s * replicas,
                    capacity_req_s=capacity * replicas / max(cfg.output, 1))
    return cfg, est, sizing, why


def run_point(loaded: Loaded, pt: Point, simulate: bool | None = None) -> tuple[PointResult, SimResult | None]:
    """(PointResult, the simulation or None): analytic pass, then (if enabled) the engine (once,
    or as a capacity search), then costs at the simulated (else analytic) throughput, and the
    SLO verdict."""
    sc = pt.scenario
    if sc.service is not None:
        return service_point(loaded, pt), None
    if pt.prefill is not None:  # prefill and decode pools (a module of this layer built on this one)
        from planner.plan.disagg import run_disagg
        return run_disagg(loaded, pt, simulate)
    cfg = pt.config
    users = sc.workload.concurrent_users
    if users is not None and cfg.count is None:
        cfg = dataclasses.replace(cfg, min_sequences=math.ceil(users / (sc.deployment.replicas or 1)))
    try:
        built = build_point(cfg)
    except Infeasible:
        built = None  # estimate says why
    run = sc.workload.simulate if simulate is None else simulate
    cfg, est, sizing, why = size(cfg, built, sc, run)
    short = why and sc.workload.demand is None  # users beyond the KV (a demand short: what limits speed)
    result = PointResult(pt, feasible=est.fits and not why, reason=why or est.reason,
                         bottleneck=memory_limit(cfg.hardware) if short else est.bottleneck, estimate=est,
                         sizing=sizing)
    if not result.feasible:
        return verdict(result, sc), None
    result = dataclasses.replace(result, throughput_source="analytic",
                                 throughput_out_tok_s=sizing.aggregate_tok_s_analytic,
                                 throughput_in_tok_s=sizing.input_tok_s_analytic,
                                 throughput_cached_in_tok_s=sizing.cached_input_tok_s_analytic,
                                 throughput_req_s=sizing.aggregate_tok_s_analytic / max(cfg.output, 1))
    res = None
    if run:
        try:
            rounds = rounds_for(built, cfg, sc)
            if sc.capacity.search:
                cap = capacity_search(cfg, built, sc, loaded.base_dir, rounds, est, sizing)
                res = cap.result
                result = dataclasses.replace(result, sim=res.summary, capacity=cap, throughput_source="sim",
                                             throughput_out_tok_s=cap.throughput_out_tok_s,
                                             throughput_in_tok_s=cap.throughput_in_tok_s,
                                             throughput_cached_in_tok_s=cap.throughput_cached_in_tok_s,
                                             throughput_req_s=cap.throughput_req_s)
            else:
                res = run_sim(cfg, sc, loaded.base_dir, sizing.replicas, sizing.capacity_req_s, rounds)
                result = dataclasses.replace(result, sim=res.summary, throughput_source="sim",
                                             throughput_out_tok_s=res.summary.throughput_out_tok_s,
                                             throughput_in_tok_s=res.summary.throughput_in_tok_s,
                                             throughput_cached_in_tok_s=res.summary.throughput_cached_in_tok_s,
                                             throughput_req_s=res.summary.throughput_req_s)
        except Infeasible as e:
            return verdict(dataclasses.replace(result, feasible=False, reason=str(e), bottleneck="unsupported"),
                           sc), None
        except TooLarge as e:  # a request whose KV outgrows the replica, or too many requests
            return verdict(dataclasses.replace(result, feasible=False, reason=str(e),
                                               bottleneck=memory_limit(cfg.hardware) if e.kv else "unsupported"),
                           sc), None
    found = result.capacity
    devices, replicas = (found.devices, found.replicas) if found else (sizing.devices, sizing.replicas)
    # power activity: integrated by the engine over the run where it ran, else the steady round's
    u = built.steps.activity(result.sim.stage_activity) if result.sim else est.activity
    rates = (result.throughput_out_tok_s, result.throughput_in_tok_s, result.throughput_req_s,
             result.throughput_cached_in_tok_s)
    try:
        c = costs(built.device, devices, sc.economics, *rates, activity=u)
    except Infeasible as e:
        return verdict(dataclasses.replace(result, feasible=False, reason=str(e), bottleneck="unsupported"), sc), res
    speed = result.sim.decode_tok_s_per_user_p50 if result.sim else est.decode_tok_s_per_user
    b = bands(built.device, devices, sc.economics, est, speed, *rates, activity=u)
    tasks = result.sim.tasks if result.sim else None
    per_task = c.usd_per_h / tasks.tasks_per_hour if tasks and tasks.tasks_per_hour else None
    curve = frontier(cfg, built, sc.economics, est.max_concurrent_sequences)
    held = power_cap(built.device, sizing.devices_per_replica, sc.economics,
                     result.throughput_out_tok_s / replicas, u, lower_bound=bool(found and found.limit == "target"))
    return verdict(dataclasses.replace(result, costs=c, bands=b, cost_usd_per_task=per_task, frontier=curve,
                                       cap=held, load=carried(result, sc)), sc), res


def carried(result: PointResult, sc: Scenario) -> Load:
    """The load each replica carried (see Load)."""
    cap, s = result.capacity, result.sizing
    replicas = cap.replicas if cap else s.replicas
    if cap is not None:
        users = cap.users_per_replica
    elif result.sim is not None:
        users = closed_users(sc) / replicas if arrival_of(sc).process == "closed" else \
            result.sim.mean_in_system / replicas
    else:
        users = s.concurrent_users / replicas
    return Load(req_s=result.throughput_req_s / replicas, out_tok_s=result.throughput_out_tok_s / replicas,
                in_tok_s=result.throughput_in_tok_s / replicas,
                cached_in_tok_s=result.throughput_cached_in_tok_s / replicas, users=users)


def verdict(result: PointResult, sc: Scenario) -> PointResult:
    """The SLO verdict: the capacity search's own when it ran on a feasible point, else every
    target checked against the simulated percentiles (or the analytic figures)."""
    if result.capacity is not None and result.feasible:
        return dataclasses.replace(result, slo_pass=result.capacity.slo_pass,
                                   reason=result.capacity.reason or result.reason)
    if result.throughput_source == "sim":
        values = {name: result.sim.get(name) for name, *_ in sc.slo.targets()}
        if not result.sim.stable:  # an open queue that grows without bound meets no SLO
            why = (f"unstable: requests cleared at {result.sim.served_to_offered:.0%} of the rate they "
                   "arrived (throughput is the saturation rate)")
            return dataclasses.replace(result, slo_pass=False, reason=result.reason or why)
    elif result.estimate is not None:
        values = analytic_values(result.estimate)
    else:
        values = {}
    return dataclasses.replace(result, slo_pass=result.feasible and not slo_misses(sc.slo, values))


def bands(dev: Device, devices: int, econ: Economics, est: Estimate, speed: float, thr: float, inp: float,
          req: float, cached: float = 0.0, *, activity: float, also: tuple = ()) -> Bands:
    """Low/high per-user speed, throughput and $/M output tokens: the speed band of the
    hardware's calibration (held-out spread x clock range) and, for cost, the capex range
    (cheap capex with the fast end, dear capex with the slow end); ``also``: further pools."""
    lo, hi = est.speed_band_low, est.speed_band_high
    cheap = econ if econ.capex == "rental" else econ.model_copy(update={"capex": "low"})
    dear = econ if econ.capex == "rental" else econ.model_copy(update={"capex": "high"})
    return Bands(decode_tok_s_per_user_low=speed * lo, decode_tok_s_per_user_high=speed * hi,
                 throughput_out_tok_s_low=thr * lo, throughput_out_tok_s_high=thr * hi,
                 cost_usd_per_mtok_out_low=costs(dev, devices, cheap, thr * hi, inp * hi, req * hi, cached * hi,
                                                 activity=activity, also=also).cost_usd_per_mtok_out,
                 cost_usd_per_mtok_out_high=costs(dev, devices, dear, thr * lo, inp * lo, req * lo, cached * lo,
                                                  activity=activity, also=also).cost_usd_per_mtok_out)


def service_point(loaded: Loaded, pt: Point) -> PointResult:
    """A service profile's agent tasks, timed in closed form (agents.service_figures)."""
    sc = pt.scenario
    tasks, extra = service_figures(sc, loaded.base_dir)
    svc = Service(model=sc.service.name, tasks=tasks, **extra)
    values = {"decode_tok_s_per_user_p50": svc.decode_tok_s_per_user_p50}
    return PointResult(pt, feasible=True, reason="", bottleneck="service", throughput_source="service",
                       service=svc, slo_pass=not slo_misses(sc.slo, values))
