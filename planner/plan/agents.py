"""Agent tasks from a scenario: the calls every task makes (drawn up front from the seed, so
the same tasks run on every configuration compared), and a service profile's closed-form
timing of them (no hardware of ours, no queueing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from planner.config.schema import MAX_REQUESTS, Agentic, Scenario, Service
from planner.plan.inputs import sampler
from planner.sim.errors import TooLarge
from planner.sim.sessions import (COMPACTION, TURN, CallPlan, TaskStats, TaskTimes, check_tasks,
                                  task_summary)
from planner.sim.tasks import service_tasks


def service_figures(sc: Scenario, base_dir: Path) -> tuple[TaskStats, dict]:
    """(task statistics, {cost_usd_per_task, decode_tok_s_per_user_p50, ttft_p50_s})."""
    svc, ag = sc.service, sc.workload.agentic
    plan = plan_calls(ag, ag.context_window or svc.context_window, sc.seed, base_dir, ag.plan_factor * svc.plan_factor)
    times, extra = service_times(plan, svc, ag, sc.seed)
    check_tasks(times)
    return task_summary(times, plan), extra


def plan_calls(ag: Agentic, window: int, seed: int, base_dir: Path | None = None, plan_factor: float = 1.0) -> CallPlan:
    """Draw every task's turns and lay out its calls, compactions included. ``plan_factor``
    scales each task's turns (rounded, at least one): a model that needs more turns or retries
    for the same task makes more calls, each like the others (tool output, reply, tool call)."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 7]).spawn(5)]
    turns = sampler(ag.turns, base_dir).draw(streams[0], ag.tasks)
    if plan_factor != 1.0:
        turns = np.maximum(1, np.rint(turns * plan_factor)).astype(turns.dtype)
    first = sampler(ag.first_prompt_tokens, base_dir).draw(streams[1], ag.tasks)
    total = int(turns.sum())
    if total > MAX_REQUESTS:
        raise TooLarge(f"{ag.tasks:,} agent tasks make {total:,} calls, above the simulator's cap of "
                       f"{MAX_REQUESTS:,} (fewer tasks or turns)")
    append = sampler(ag.append_tokens, base_dir).draw(streams[2], total)
    reply = sampler(ag.reply_tokens, base_dir).draw(streams[3], total)
    tool = sampler(ag.tool_s, base_dir).draw(streams[4], total)
    limit = ag.compact_at * window
    cols: dict[str, list] = {k: [] for k in ("session", "kind", "ctx_before", "new", "output", "tool_after",
                                              "cache_after")}
    starts, counts = [], []

    def add(s, kind, ctx, new, out, tool_s, cache):
        for k, v in zip(cols, (s, kind, ctx, new, out, tool_s, cache)):
            cols[k].append(v)

    j = 0
    for s in range(ag.tasks):
        starts.append(len(cols["session"]))
        ctx = 0
        for t in range(int(turns[s])):
            new = int(first[s]) if t == 0 else int(append[j])
            out = int(reply[j])
            if ctx > 0 and ctx + new > limit:  # compact first; the turn then prefills summary + re-read + new
                add(s, COMPACTION, ctx, ag.compaction_prompt_tokens, ag.summary_tokens, 0.0, False)
                ctx, new = 0, ag.summary_tokens + ag.reread_tokens + new
            new = max(1, min(new, window - ctx - out))  # a call never outgrows the window
            last = t == int(turns[s]) - 1
            add(s, TURN, ctx, new, out, 0.0 if last else float(tool[j]), not last)
            ctx += new + out
            j += 1
        counts.append(len(cols["session"]) - starts[-1])
    arr = {k: np.asarray(v) for k, v in cols.items()}
    return CallPlan(arr["session"].astype(np.int64), arr["kind"].astype(np.int8),
                    arr["ctx_before"].astype(np.int64), arr["new"].astype(np.int64), arr["output"].astype(np.int64),
                    arr["tool_after"].astype(float), arr["cache_after"].astype(bool),
                    np.asarray(starts, np.int64), np.asarray(counts, np.int64))


def service_times(plan: CallPlan, svc: Service, ag: Agentic, seed: int) -> tuple[TaskTimes, dict]:
    """A service profile: no queueing for the model (the provider's capacity is not ours to
    model); a call takes the per-call overhead + ttft + uncached input / prefill speed + reply /
    decode speed. The provider caches the conversation's prefix between calls (what a
    compaction discards is prefilled again). Tool calls take ``tool_s / cpu_speed``; with
    ``cpus`` they queue for the client's CPUs (sim/tasks.py), else the times are closed form."""
    cached, uncached = plan.ctx_before, plan.new
    prefill = np.broadcast_to(svc.ttft_s + (uncached / svc.prefill_tok_s if svc.prefill_tok_s else 0.0),
                              uncached.shape)
    decode = plan.output / svc.decode_tok_s
    comp = plan.kind == COMPACTION
    times = TaskTimes.empty(plan.tasks)
    call_s = svc.call_overhead_s + prefill + decode
    n = plan.tasks
    if svc.call_overhead_s:
        times.parts["overhead"] = np.bincount(plan.session[~comp], np.full(int((~comp).sum()), svc.call_overhead_s), n)
    times.parts["prefill"] = np.bincount(plan.session[~comp], prefill[~comp], n)
    times.parts["decode"] = np.bincount(plan.session[~comp], decode[~comp], n)
    times.parts["compaction"] = np.bincount(plan.session[comp], call_s[comp], n)
    times.parts["tool"] = np.bincount(plan.session, plan.tool_after / ag.cpu_speed, n)
    gaps = None
    if ag.rate_per_s is not None:  # independent tasks: arrivals do not queue behind each other
        gaps = np.random.default_rng(np.random.SeedSequence([seed, 11])).exponential(1 / ag.rate_per_s, n)
    if ag.cpus is not None:  # tool calls wait for the client's CPUs: simulated
        service_tasks(plan, times, call_s, ag.cpus, ag.cpu_speed, ag.agents, ag.rate_per_s, gaps)
    else:
        dur = sum(times.parts.values())
        # each agent runs its tasks back to back, taking the next task when it is free
        times.start = np.cumsum(gaps) if gaps is not None else _agents_start(dur, ag.agents or 1)
        times.end = times.start + dur
    cached_in = np.bincount(plan.session, cached, n)
    price_cached = svc.usd_per_mtok_cached_in if svc.usd_per_mtok_cached_in is not None else svc.usd_per_mtok_in
    usd = (np.bincount(plan.session, uncached, n) * svc.usd_per_mtok_in + cached_in * price_cached
           + np.bincount(plan.session, plan.output, n) * svc.usd_per_mtok_out) / 1e6
    return times, {"cost_usd_per_task": float(usd.mean()), "decode_tok_s_per_user_p50": svc.decode_tok_s,
                   "ttft_p50_s": float(np.median(prefill))}


def _agents_start(dur: np.ndarray, agents: int) -> np.ndarray:
    free = np.zeros(agents)
    start = np.empty(len(dur))
    for s, d in enumerate(dur):
        k = int(np.argmin(free))
        start[s] = free[k]
        free[k] += d
    return start
