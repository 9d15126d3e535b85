"""Evaluate one sweep point into one flat row (a dict of SI figures, units in the names).

Data flow per point: Config -> analytic estimate -> users/replicas -> simulation (once, or a
capacity search) -> economics -> SLO verdict. The row's column order is tables.py's business.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from .analytic import RENAMED, estimate, memory_limit
from .capacity import STABLE, analytic_batch, excess, search, slo_misses
from .economics import costs
from .hardware import Infeasible, resolve
from .scenario import Loaded, Point, pt_loc, to_config
from .sim.engine import simulate
from .sim.run import arrival_of, rounds_for, run_sim, sim_spec
from .sim.sessions import check_tasks, plan_calls, service_times, task_summary
from .tables import LEAD, RESULT_ORDER, TAIL, TASK_ORDER

RESULT_NAMES = set(LEAD + RESULT_ORDER + TASK_ORDER + TAIL)

# closed loops with a TTFT target: search up to this many times the larger of the sequences
# that fit and the target users (the stop_at_target cap applies first)
CLOSED_CEILING = 4

# kept out of results.csv: lists, and wall-clock figures (files must not depend on the machine)
SIM_DROP = {"stage_utilisation", "stage_kv_occupancy_peak", "stage_kv_occupancy_avg", "sim_measured_requests", "mean_wait_s",
            "mean_sojourn_s", "mean_in_system", "events", "served_to_offered", "sim_requests_per_wall_s", "wall_s"}


def plan_point(loaded: Loaded, pt: Point) -> tuple:
    """Analytic pass for one point: (Config at the operating batch, row, capacity in requests/s).

    Users -> replicas: with ``count`` unset the pipeline is sized to hold all users (weights
    stored once); otherwise as many replicas as the users need (or the configured number)."""
    sc = pt.scenario
    cfg = to_config(loaded, sc, pt_loc(loaded, pt))
    users, fixed_replicas = sc.workload.concurrent_users, sc.deployment.replicas
    if users is not None and cfg.count is None:
        cfg = dataclasses.replace(cfg, min_sequences=math.ceil(users / (fixed_replicas or 1)))
    row = {"point": pt.index, "group": pt.group, **axis_columns(pt.values)}
    est = estimate(cfg)
    row.update(est)
    row["feasible"] = bool(row.pop("fits"))
    capacity = 0.0
    if row["feasible"]:
        per = est["max_concurrent_sequences"]
        capacity = est["aggregate_tok_s"]
        if users is None:
            replicas, batch = fixed_replicas or 1, per
        else:
            replicas = fixed_replicas or math.ceil(users / per)
            if users > replicas * per:
                row.update(feasible=False, bottleneck=memory_limit(cfg.hardware),
                           reason=f"{users} users need {math.ceil(users / per)} replicas of {per} sequences; "
                                  f"{replicas} configured")
            batch = math.ceil(users / replicas)
        cfg = dataclasses.replace(cfg, batch=batch)
        if row["feasible"] and batch != est["batch"]:
            est = estimate(cfg)
            row.update({k: v for k, v in est.items() if k != "fits"})
        row.update(devices_per_replica=est.get("devices"), replicas=replicas, batch_per_replica=batch,
                   concurrent_users=batch * replicas if users is None else users,
                   capacity_tok_s_analytic=capacity * replicas)
        row.update(devices=row["devices_per_replica"] * replicas, aggregate_tok_s=est["aggregate_tok_s"] * replicas,
                   input_tok_s=est["input_tok_s"] * replicas)
    for old, new in RENAMED.items():
        if old in row:
            row[new] = row.pop(old)
    return cfg, row, capacity * row.get("replicas", 1) / max(cfg.output, 1)


def evaluate(loaded: Loaded, pt: Point, simulate: bool | None = None) -> dict:
    """One row for one point (see :func:`run_point`). A point that fails with an error becomes
    a row saying so: one bad point never loses the others."""
    try:
        return run_point(loaded, pt, simulate)[0]
    except Exception as e:  # noqa: BLE001 - reported in the row, the sweep goes on
        return error_row(pt, e)


def error_row(pt: Point, e: BaseException) -> dict:
    return {"point": pt.index, "group": pt.group, **axis_columns(pt.values), "feasible": False,
            "reason": f"error: {type(e).__name__}: {e}", "bottleneck": "error", "slo_pass": False,
            "config_hash": pt.config_hash, "seed": pt.scenario.seed}


def run_point(loaded: Loaded, pt: Point, simulate: bool | None = None):
    """(row, SimResult or None): analytic pass, then (if enabled) the discrete-event engine
    (once, or as a capacity search), then costs at the simulated (else analytic) throughput,
    and the SLO verdict."""
    sc = pt.scenario
    if sc.service is not None:
        return service_row(loaded, pt), None
    cfg, row, capacity_req_s = plan_point(loaded, pt)
    sim = sc.workload.simulate if simulate is None else simulate
    res = None
    if row["feasible"]:
        row.update(throughput_source="analytic", throughput_out_tok_s=row["aggregate_tok_s_analytic"],
                   throughput_in_tok_s=row["input_tok_s_analytic"])
        try:
            if sim and sc.capacity.search:
                res = _capacity(cfg, sc, loaded.base_dir, row, capacity_req_s)
            elif sim:
                res = run_sim(cfg, sc, loaded.base_dir, row["replicas"], capacity_req_s)
                row.update({k: v for k, v in res.summary.items() if k not in SIM_DROP}, throughput_source="sim")
        except ValueError as e:
            row.update(feasible=False, reason=str(e), bottleneck=memory_limit(cfg.hardware))
    if row["feasible"]:
        dev = resolve(cfg.hardware, cfg.bonded, cfg.bonded_layers, cfg.software)
        try:
            row.update(costs(dev, row["devices"], sc.economics, row["throughput_out_tok_s"],
                             row["throughput_in_tok_s"], row["prefill_share"]))
        except Infeasible as e:
            row.update(feasible=False, reason=str(e), bottleneck="unsupported")
    if row["feasible"] and "usd_per_h" in row:
        row.update(bands(dev, row, sc.economics))
    if row["feasible"] and row.get("tasks_per_hour"):
        row["cost_usd_per_task"] = row["usd_per_h"] / row["tasks_per_hour"]
    if "slo_pass" not in row or not row["feasible"]:
        misses = slo_misses(sc.slo, row, row.get("throughput_source") == "sim")
        row["slo_pass"] = row["feasible"] and not misses
    row["config_hash"], row["seed"] = pt.config_hash, sc.seed
    return row, res


def bands(dev, row: dict, econ) -> dict:
    """Low/high per-user speed, throughput and $/M output tokens: the speed band of the
    hardware's calibration (held-out spread x clock range) and, for cost, the capex range
    (cheap capex with the fast end, dear capex with the slow end)."""
    lo, hi = row["speed_band_low"], row["speed_band_high"]
    speed = row.get("decode_tok_s_per_user_p50", row.get("decode_tok_s_per_user_analytic"))
    thr, inp = row["throughput_out_tok_s"], row["throughput_in_tok_s"]
    out = {"decode_tok_s_per_user_low": speed * lo, "decode_tok_s_per_user_high": speed * hi,
           "throughput_out_tok_s_low": thr * lo, "throughput_out_tok_s_high": thr * hi}
    cheap = econ if econ.capex == "rental" else econ.model_copy(update={"capex": "low"})
    dear = econ if econ.capex == "rental" else econ.model_copy(update={"capex": "high"})
    out["cost_usd_per_mtok_out_low"] = costs(dev, row["devices"], cheap, thr * hi, inp * hi,
                                             row["prefill_share"])["cost_usd_per_mtok_out"]
    out["cost_usd_per_mtok_out_high"] = costs(dev, row["devices"], dear, thr * lo, inp * lo,
                                              row["prefill_share"])["cost_usd_per_mtok_out"]
    return out


def _capacity(cfg, sc, base_dir: Path, row: dict, capacity_req_s: float):
    """Capacity search on one replica, then the replicas the target load needs at the SLO;
    returns the simulation at capacity (or at the lowest load tried, when none passed).

    Replicas share nothing but the router, so R replicas carry R x one replica's capacity (the
    pooling gain of a shared queue is left out: a conservative figure)."""
    arr = arrival_of(sc)
    closed = arr.process == "closed"
    target = (arr.users or sc.workload.concurrent_users) if closed else arr.rate_per_s
    per_seq = row["max_concurrent_sequences"]
    rounds = rounds_for(cfg, sc)
    b = analytic_batch(cfg, sc.slo, per_seq)
    sat_req_s = capacity_req_s / row["replicas"]
    if closed and sc.slo.ttft_p99_s is None:  # users beyond what fits would only wait, unseen by the SLO
        guess, floor, ceiling, top = b, 1, per_seq, "kv_capacity"
    elif closed:  # users queue (or spill KV off-chip); the TTFT target says how many is too many
        guess, floor, ceiling, top = b, 1, max(per_seq, target or 0) * CLOSED_CEILING, "search_ceiling"
    else:
        guess = estimate(dataclasses.replace(cfg, batch=b))["aggregate_tok_s"] / max(cfg.output, 1) if b else 0.0
        floor, ceiling, top = sat_req_s / 100, sat_req_s, "saturation"
    if sc.capacity.stop_at_target and target and target < ceiling:
        ceiling, top = target, "target"

    def probe(load):
        res = simulate(sim_spec(sc, base_dir, 1, sat_req_s, load), rounds)
        misses = slo_misses(sc.slo, res.summary)
        if not closed and res.summary["served_to_offered"] < STABLE:
            misses.append("unstable")
        return misses, res

    found = search(probe, guess, floor, ceiling, closed, sc.capacity.tolerance, sc.capacity.max_probes, top,
                   lambda res: excess(sc.slo, res.summary, not closed))
    at = found.best or found.lowest
    summary = at.result.summary
    row.update({k: v for k, v in summary.items() if k not in SIM_DROP}, throughput_source="sim")
    per_req_s = summary["throughput_req_s"] if found.best else 0.0
    if closed:
        per_users = found.load
    else:  # Little's law: users in flight = rate x time in system
        per_users = per_req_s * summary["mean_sojourn_s"]
    per = per_users if closed else per_req_s
    replicas = sc.deployment.replicas or (math.ceil(target / per) if target and per > 0 else row["replicas"])
    row.update(capacity_probes=len(found.probes), capacity_limit=found.limit,
               capacity_users_per_replica=per_users, capacity_req_s_per_replica=per_req_s,
               capacity_users=per_users * replicas, capacity_req_s=per_req_s * replicas,
               capacity_target=target, replicas=replicas, devices=row["devices_per_replica"] * replicas,
               batch_per_replica=summary["mean_in_system"],
               throughput_out_tok_s=summary["throughput_out_tok_s"] * replicas,
               throughput_in_tok_s=summary["throughput_in_tok_s"] * replicas)
    if not closed:
        row["concurrent_users"] = row["capacity_users"]
    if not found.best:
        misses = ", ".join(_miss_text(sc.slo, summary, m) for m in at.misses)
        row.update(slo_pass=False, reason=f"SLO missed even at the lowest load "
                                          f"({_load_text(at.load, closed)}): {misses}")
    elif sc.deployment.replicas and target and per * replicas < target:
        row.update(slo_pass=False, reason=f"{replicas} replicas carry {_load_text(per * replicas, closed)} "
                                          f"within the SLO; the target is {_load_text(target, closed)}")
    else:
        row["slo_pass"] = True
    return at.result


def service_row(loaded: Loaded, pt: Point) -> dict:
    """A service profile's agent tasks, timed in closed form (sessions.service_times)."""
    sc, svc, ag = pt.scenario, pt.scenario.service, pt.scenario.workload.agentic
    plan = plan_calls(ag, ag.context_window or svc.context_window, sc.seed, loaded.base_dir)
    times, extra = service_times(plan, svc, ag, sc.seed)
    check_tasks(times)
    row = {"point": pt.index, "group": pt.group, **axis_columns(pt.values), "feasible": True, "reason": "",
           "bottleneck": "service", "model": svc.name, "hardware": "service", "throughput_source": "service",
           **task_summary(times, plan), **extra}
    misses = slo_misses(sc.slo, row)
    row.update(slo_pass=not misses, config_hash=pt.config_hash, seed=sc.seed)
    return row


def _load_text(x: float, closed: bool) -> str:
    return f"{x:,.0f} users" if closed else f"{x:,.3g} req/s"


def _miss_text(slo, summary: dict, name: str) -> str:
    if name == "unstable":
        return f"unstable (requests cleared at {summary['served_to_offered']:.0%} of the rate they arrived)"
    return f"{name} {summary.get(name, math.nan):.3g} vs target {getattr(slo, name)}"


def axis_columns(values: dict) -> dict:
    """Swept values as columns; a mapping value (e.g. a precision pair) becomes one column per key.
    An axis spelled like a result column (``model``) is named ``sweep.model``."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(axis_columns({f"{k}.{kk}": vv for kk, vv in v.items()}))
        else:
            out[f"sweep.{k}" if k in RESULT_NAMES else k] = v
    return out
