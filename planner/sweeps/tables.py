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

LEAD = ["point", "group"]
RESULT_ORDER = [
    "feasible", "reason", "bottleneck", "slo_pass", "pareto", "model", "hardware", "device", "hypothetical",
    "weights_precision",
    "kv_precision", "compute_mode", "context_tokens", "prompt_tokens", "output_tokens",
    "devices_per_replica", "replicas", "devices", "systems", "stages", "tp", "layers_per_stage",
    "layers_split", "concurrent_users", "batch_per_replica", "max_concurrent_sequences",
    "weight_bytes", "kv_bytes_per_token", "kv_bytes_per_seq", "capacity_bytes_per_device",
    # simulated (discrete-event engine)
    "throughput_source", "capacity_users", "capacity_req_s", "capacity_users_per_replica",
    "capacity_req_s_per_replica", "capacity_target", "capacity_limit", "capacity_probes", "throughput_out_tok_s", "throughput_in_tok_s", "throughput_req_s",
    "served_to_offered", "stable",
    "decode_tok_s_per_user_p10", "decode_tok_s_per_user_p50", "decode_tok_s_per_user_mean",
    "decode_tok_s_per_user_low", "decode_tok_s_per_user_high", "throughput_out_tok_s_low", "throughput_out_tok_s_high",
    "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "ttft_max_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "tpot_max_s",
    "e2e_p50_s", "e2e_p90_s", "e2e_p99_s", "e2e_max_s", "queue_p50_s", "queue_p90_s", "queue_p99_s", "queue_max_s",
    "slo_attainment", "goodput_req_s", "goodput_out_tok_s", "stage_util_max", "stage_util_mean",
    "kv_occupancy_avg", "kv_occupancy_peak", "link_util_max", "offchip_transfer_util", "preemptions", "swaps",
    "sim_requests", "sim_time_s", "events_per_request",
    # analytic (closed-form pre-pass)
    "decode_tok_s_per_user_analytic", "single_stream_tok_s", "tpot_analytic_s", "ttft_analytic_s",
    "aggregate_tok_s_analytic", "capacity_tok_s_analytic", "input_tok_s_analytic", "accepted_tokens_per_step",
    "prefill_share", "round_s", "token_latency_s", "cycle_s",
    "time_pipeline_latency_s", "time_io_link_s", "time_compute_s", "time_memory_bw_s", "time_prefill_s",
    # money and power
    "capex_usd", "capex_usd_low", "capex_usd_high", "capex_usd_per_h", "power_kw", "facility_power_kw", "usd_per_h", "cost_usd_per_mtok_out",
    "cost_usd_per_mtok_out_low", "cost_usd_per_mtok_out_high", "cost_usd_per_mtok_in", "cost_usd_per_mtok_total", "tok_s_per_mw",
    # how sure: calibration spread x clock range (multipliers on speed), and where it comes from
    "speed_band_low", "speed_band_high", "speed_band_source",
]
TAIL = ["config_hash", "seed"]

# Pareto objectives, each with the sense that is better
PARETO = {"cost_usd_per_mtok_out": "min", "decode_tok_s_per_user_p50": "max", "throughput_out_tok_s": "max"}


# agent tasks (sweeps with workload.agentic only), after throughput_source
TASK_ORDER = ["tasks", "task_p50_s", "task_p90_s", "task_p99_s", "task_mean_s", "tasks_per_hour", "turns_per_task",
              "compactions_per_task", "share_tool", "share_queue", "share_prefill", "share_decode",
              "share_compaction", "share_kv_transfer", "kv_evictions", "cost_usd_per_task"]


RESULT_NAMES = set(LEAD + RESULT_ORDER + TASK_ORDER + TAIL)

# the Estimate's per-replica figures that a results row names as analytic (the simulated ones
# take the plain names); its aggregate and input rates give way to the deployment's (Sizing)
ANALYTIC_NAMES = {"decode_tok_s_per_user": "decode_tok_s_per_user_analytic", "tpot_s": "tpot_analytic_s",
                  "ttft_s": "ttft_analytic_s", "aggregate_tok_s": None, "input_tok_s": None, "fits": None}


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
                   aggregate_tok_s_analytic=s.aggregate_tok_s_analytic, input_tok_s_analytic=s.input_tok_s_analytic)
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
                   capacity_target=c.target, replicas=c.replicas, devices=c.devices,
                   batch_per_replica=c.batch_per_replica)
        if not c.closed:
            out["concurrent_users"] = c.users
    if r.throughput_source is not None:
        out["throughput_source"] = r.throughput_source
    if r.throughput_out_tok_s is not None:
        out.update(throughput_out_tok_s=r.throughput_out_tok_s, throughput_in_tok_s=r.throughput_in_tok_s)
    for part in (r.costs, r.bands):
        if part is not None:
            out.update(dataclasses.asdict(part))
    if r.cost_usd_per_task is not None:
        out["cost_usd_per_task"] = r.cost_usd_per_task
    out.update(feasible=r.feasible, reason=r.reason, bottleneck=r.bottleneck, slo_pass=r.slo_pass)
    out.update(config_hash=pt.config_hash, seed=pt.scenario.seed)
    return out


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


def frame(rows: list[dict], axes: list[str]) -> pd.DataFrame:
    """Rows -> DataFrame with a stable column order (unknown extra keys go before the tail)."""
    axes = list(dict.fromkeys(axes))
    order = RESULT_ORDER
    if any("tasks" in r for r in rows):
        i = order.index("throughput_source") + 1
        order = order[:i] + TASK_ORDER + order[i:]
    cols = LEAD + axes + order
    extra = sorted({k for r in rows for k in r} - set(cols) - set(TAIL))
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


def best(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, hardware): the cheapest SLO-meeting point per output token (fewer devices on a tie)."""
    ok = df[ranked(df)]
    if ok.empty:
        return df.iloc[0:0]
    ok = ok.sort_values(["cost_usd_per_mtok_out", "devices", "point"], kind="stable")
    return ok.groupby(["model", "hardware"], sort=True, dropna=False).head(1).sort_values(
        ["model", "cost_usd_per_mtok_out", "point"], kind="stable")


SPEEDUP_COLUMNS = ["decode_tok_s_per_user_p50", "task_p50_s", "decode_speedup", "task_speedup", "share_tool",
                   "share_queue", "share_prefill", "share_decode", "share_compaction", "share_kv_transfer",
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
