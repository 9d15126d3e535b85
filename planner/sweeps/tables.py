"""Sweep rows -> tables: results (stable column order), the Pareto front, the best per family.

Pareto: among points that meet the SLO (an overloaded simulation never does), those no other point beats on all three of cost per
output token (lower), per-user speed and deployment throughput at capacity (higher).
Best: per model and hardware, the cheapest point per output token that meets the SLO.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from planner.plan.point import PointResult
from planner.sweeps.columns import AXIS_SHOWN_AS, DETAIL, HEAD, POOLS, TAIL, TASKS

# the column order comes from the one documented list (sweeps/columns.py): the answer first,
# then the swept values, then agent-task figures (agentic sweeps), the detail and provenance
RESULT_ORDER = HEAD + DETAIL
TASK_ORDER = TASKS

# Pareto objectives, each with the sense that is better
PARETO = {"cost_usd_per_mtok_out": "min", "decode_tok_s_per_user_p50": "max", "throughput_out_tok_s": "max"}


RESULT_NAMES = set(RESULT_ORDER + TASK_ORDER + POOLS + TAIL)

# the Estimate's per-replica figures that a results row names as analytic (the simulated ones
# take the plain names); its aggregate and input rates give way to the deployment's (Sizing)
ANALYTIC_NAMES = {"decode_tok_s_per_user": "decode_tok_s_per_user_analytic", "tpot_s": "tpot_analytic_s",
                  "ttft_s": "ttft_analytic_s", "aggregate_tok_s": None, "input_tok_s": None,
                  "cached_input_tok_s": None, "fits": None, "activity": "activity_analytic"}


def row(r: PointResult) -> dict:
    """One results row from one point's result: the only place the two meet. Later parts win
    where names repeat (the capacity search's deployment over the analytic sizing)."""
    pt = r.point
    out = {"point": pt.index, "group": pt.group, **axis_columns(pt.values)}
    if r.estimate is not None:
        for k, v in r.estimate.as_dict().items():
            name = ANALYTIC_NAMES.get(k, k)
            if name is not None:
                out[name] = v
    if r.sizing is not None:
        s = r.sizing
        out.update(devices_per_replica=s.devices_per_replica, replicas=s.replicas,
                   batch_per_replica=s.batch_per_replica, concurrent_users=s.concurrent_users,
                   capacity_tok_s_analytic=s.capacity_tok_s_analytic, devices=s.devices,
                   aggregate_tok_s_analytic=s.aggregate_tok_s_analytic, input_tok_s_analytic=s.input_tok_s_analytic,
                   cached_input_tok_s_analytic=s.cached_input_tok_s_analytic)
    if r.pools is not None:  # a disaggregated deployment: both pools (hardware says prefill+decode)
        out.update(r.pools.as_dict())
    if r.service is not None:
        out.update(model=r.service.model, hardware="service", **r.service.tasks.as_dict(),
                   cost_usd_per_task=r.service.cost_usd_per_task,
                   decode_tok_s_per_user_p50=r.service.decode_tok_s_per_user_p50, ttft_p50_s=r.service.ttft_p50_s)
    if r.sim is not None:
        out.update(r.sim.columns())
    if r.capacity is not None:
        c = r.capacity
        out.update(capacity_probes=c.probes, capacity_limit=c.limit, capacity_users_per_replica=c.users_per_replica,
                   capacity_req_s_per_replica=c.req_s_per_replica, capacity_users=c.users, capacity_req_s=c.req_s,
                   capacity_target=c.target, capacity_target_unit=c.target_unit, replicas=c.replicas,
                   devices=c.devices,
                   batch_per_replica=c.batch_per_replica, goodput_req_s=c.goodput_req_s,
                   goodput_out_tok_s=c.goodput_out_tok_s)
        if c.target_unit != "users":  # the users the search found (the target was a rate or a demand)
            out["concurrent_users"] = c.users
    if r.throughput_source is not None:
        out["throughput_source"] = r.throughput_source
    if r.throughput_out_tok_s is not None:  # the deployment's, whichever model gave them
        out.update(throughput_out_tok_s=r.throughput_out_tok_s, throughput_in_tok_s=r.throughput_in_tok_s,
                   throughput_cached_in_tok_s=r.throughput_cached_in_tok_s, throughput_req_s=r.throughput_req_s)
    for part in (r.costs, r.bands, r.cap):
        if part is not None:
            out.update(dataclasses.asdict(part))
    if r.cost_usd_per_task is not None:
        out["cost_usd_per_task"] = r.cost_usd_per_task
    out.update(feasible=r.feasible, reason=r.reason, bottleneck=r.bottleneck, slo_pass=r.slo_pass)
    out.update(config_hash=pt.config_hash, seed=pt.scenario.seed)
    if r.throughput_out_tok_s is not None and out.get("devices"):
        out["throughput_out_tok_s_per_device"] = r.throughput_out_tok_s / out["devices"]
    if r.load is not None:  # what each replica carried
        out.update(throughput_req_s_per_replica=r.load.req_s, throughput_out_tok_s_per_replica=r.load.out_tok_s,
                   throughput_in_tok_s_per_replica=r.load.in_tok_s,
                   throughput_cached_in_tok_s_per_replica=r.load.cached_in_tok_s, users_per_replica=r.load.users)
    demand = pt.scenario.workload.demand
    if demand is not None:
        out.update(demand_tok_s=demand.value, demand_unit=demand.unit)
    out.update({k: v for k, v in _identity(pt).items() if out.get(k) is None})
    return out


def _identity(pt) -> dict:
    """What a row is about, known from its configuration even when evaluating it failed, so every
    row says which model, hardware and precision it is and whether the hardware is hypothetical."""
    cfg = pt.config
    if cfg is None:  # a service profile: no hardware of ours
        return {"hypothetical": False}
    return {"model": cfg.model.name, "hardware": cfg.hardware.name, "weights_precision": cfg.weights,
            "kv_precision": cfg.kv_precision, "context_tokens": cfg.context,
            "hypothetical": bool(cfg.hardware.hypothetical or cfg.bonded_layers)}


def axis_columns(values: dict) -> dict:
    """Swept values as columns; a mapping value (e.g. a precision pair) becomes one column per key.
    An axis spelled like a result column (``model``) is named ``sweep.model``; one whose value a
    result column shows resolved (``deployment.hardware`` as ``hardware``) is left out."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(axis_columns({f"{k}.{kk}": vv for kk, vv in v.items()}))
        elif k not in AXIS_SHOWN_AS:
            out[f"sweep.{k}" if k in RESULT_NAMES else k] = v
    return out


def frame(rows: list[dict], axes: list[str]) -> pd.DataFrame:
    """Rows -> DataFrame with a stable column order (unknown extra keys go before the tail)."""
    axes = list(dict.fromkeys(axes))
    tasks = TASK_ORDER if any("tasks" in r for r in rows) else []
    pools = POOLS if any(r.get("disaggregated") for r in rows) else []  # a prefill pool's columns
    cols = HEAD + axes + tasks + pools + DETAIL
    extra = sorted({k for r in rows for k in r if not k.startswith("_")} - set(cols) - set(TAIL))
    df = pd.DataFrame(rows, columns=cols + extra + TAIL)
    df["pareto"] = pareto_mask(df)
    return df


def _speed(df: pd.DataFrame) -> pd.Series:
    """Simulated per-user speed where the engine ran, else the analytic figure."""
    sim = df.get("decode_tok_s_per_user_p50", pd.Series(np.nan, index=df.index))
    return sim.fillna(df.get("decode_tok_s_per_user_analytic", pd.Series(np.nan, index=df.index)))


def ranked(df: pd.DataFrame) -> pd.Series:
    """Rows that may be ranked: meeting the SLO and not an overloaded (unstable) simulation."""
    stable = df["stable"] if "stable" in df else pd.Series(None, index=df.index, dtype=object)
    return df["slo_pass"].fillna(False).astype(bool) & (stable.astype(object) != False)  # noqa: E712


def pareto_mask(df: pd.DataFrame) -> pd.Series:
    """True for SLO-meeting points not dominated on the PARETO objectives (ties keep both)."""
    mask = pd.Series(False, index=df.index)
    if df.empty:
        return mask
    ok = ranked(df) & np.isfinite(pd.to_numeric(df["cost_usd_per_mtok_out"],
                                                                               errors="coerce"))
    if not ok.any():
        return mask
    cand = pd.DataFrame({"cost": df["cost_usd_per_mtok_out"], "speed": _speed(df),
                         "thr": df["throughput_out_tok_s"]})[ok].astype(float)
    # higher is better on every column, so one point dominates another when >= everywhere and > somewhere
    v = np.column_stack([-cand["cost"].to_numpy(), cand["speed"].to_numpy(), cand["thr"].to_numpy()])
    v = np.nan_to_num(v, nan=-np.inf)
    keep = np.ones(len(v), bool)
    for i in range(len(v)):
        ge = (v >= v[i]).all(axis=1)
        gt = (v > v[i]).any(axis=1)
        keep[i] = not (ge & gt).any()
    mask[cand.index[keep]] = True
    return mask


def pareto(df: pd.DataFrame) -> pd.DataFrame:
    """The Pareto rows, cheapest first."""
    return df[df["pareto"]].sort_values(["cost_usd_per_mtok_out", "point"], kind="stable")


BEST_BY = ["model", "context_tokens", "hardware", "hypothetical"]


def best(df: pd.DataFrame) -> pd.DataFrame:
    """Per model, context, hardware and real/hypothetical option (bonded SRAM on a real wafer is
    hypothetical): the cheapest SLO-meeting point per output token (fewer devices on a tie).
    Real hardware first within each model and context."""
    ok = df[ranked(df)]
    if ok.empty:
        return df.iloc[0:0]
    ok = ok.sort_values(["cost_usd_per_mtok_out", "devices", "point"], kind="stable")
    by = [c for c in BEST_BY if c in ok]
    top = ok.groupby(by, sort=True, dropna=False).head(1)
    order = [c for c in ("model", "context_tokens", "hypothetical") if c in top] + ["cost_usd_per_mtok_out", "point"]
    return top.sort_values(order, kind="stable")


SPEEDUP_COLUMNS = ["decode_tok_s_per_user_p50", "task_p50_s", "decode_speedup", "task_speedup", "share_tool",
                   "share_tool_wait", "share_overhead", "share_queue", "share_prefill", "share_decode", "share_compaction", "share_kv_transfer",
                   "compactions_per_task", "cost_usd_per_task"]


def speedup(df: pd.DataFrame, reference: int) -> pd.DataFrame:
    """Agent tasks: each point's decode-speed ratio next to its task-time ratio against the
    reference point ("15x faster decode, 4.8x faster tasks" is one row)."""
    if "task_p50_s" not in df or reference not in set(df["point"]):
        return df.iloc[0:0]
    ref = df[df["point"] == reference].iloc[0]
    out = df[[c for c in df.columns if c in ("point", "group", "model", "hardware") or "." in c]].copy()
    out["reference_point"] = reference
    for c in SPEEDUP_COLUMNS:
        out[c] = df[c] if c in df else np.nan
    out["decode_speedup"] = df["decode_tok_s_per_user_p50"] / ref["decode_tok_s_per_user_p50"]
    out["task_speedup"] = ref["task_p50_s"] / df["task_p50_s"]
    return out
