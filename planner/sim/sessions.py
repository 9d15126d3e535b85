"""Agent tasks (sessions): the calls each task makes, how a service profile times them, and
the task-level metrics with their time breakdown.

A task is a sequence of turns. Turn t appends tokens to the context (the task's prompt on
the first turn, a tool's output after), prefills them, decodes a reply, and (but for the
last turn) waits for a tool call that runs on a CPU. When the context would pass
``compact_at`` x the window, a compaction call comes first: it reads the whole context plus a
"summarise" instruction and writes ``summary_tokens``; the context then restarts as the
summary plus ``reread_tokens`` of recent material, prefilled by the next turn.

The calls of every task are drawn up front from the seed (``plan_calls``), so the same
tasks run on every configuration being compared. The discrete-event engine runs them through
replicas (engine.py: ``simulate``); a service profile times them in closed form here.

Breakdown of a task's time (shares add up to the task time, checked on every run):
tool (CPU), queueing (waiting for admission), prefill (admission to first token), decode
(first token to last), compaction (whole compaction calls), KV transfer (offloaded KV
coming back over the link, and any part of its trip out that outlasts the tool call).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.schema import Agentic, Service
from .workload import Sampler

TURN, COMPACTION = 0, 1
PARTS = ("tool", "queue", "prefill", "decode", "compaction", "kv_transfer")


@dataclass(frozen=True)
class CallPlan:
    """Every model call of every task, tasks one after another (arrays indexed by call id)."""

    session: np.ndarray  # task of each call
    kind: np.ndarray  # TURN or COMPACTION
    ctx_before: np.ndarray  # context tokens already in the conversation (a cacheable prefix)
    new: np.ndarray  # tokens this call adds before its reply
    output: np.ndarray  # reply tokens
    tool_after: np.ndarray  # seconds of tool work after the call (0 after a task's last turn)
    cache_after: np.ndarray  # the context's KV serves the next call (not after compaction or the last turn)
    first: np.ndarray  # per task: its first call id
    count: np.ndarray  # per task: its number of calls

    @property
    def tasks(self) -> int:
        return len(self.first)


def plan_calls(ag: Agentic, window: int, seed: int, base_dir: Path | None = None) -> CallPlan:
    """Draw every task's turns and lay out its calls, compactions included."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 7]).spawn(5)]
    turns = Sampler(ag.turns, base_dir).draw(streams[0], ag.tasks)
    first = Sampler(ag.first_prompt_tokens, base_dir).draw(streams[1], ag.tasks)
    total = int(turns.sum())
    append = Sampler(ag.append_tokens, base_dir).draw(streams[2], total)
    reply = Sampler(ag.reply_tokens, base_dir).draw(streams[3], total)
    tool = Sampler(ag.tool_s, base_dir).draw(streams[4], total)
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


@dataclass
class TaskTimes:
    """Per task: start, end, and the seconds spent in each part of PARTS."""

    start: np.ndarray
    end: np.ndarray
    parts: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n: int) -> "TaskTimes":
        return cls(np.full(n, -1.0), np.full(n, -1.0), {p: np.zeros(n) for p in PARTS})


def parts_from_calls(times: TaskTimes, plan: CallPlan, arrival, admit, first, finish) -> None:
    """Queue, prefill, decode and compaction seconds per task from the calls' records."""
    comp = plan.kind == COMPACTION
    turn = ~comp
    for name, span in (("queue", admit - arrival), ("prefill", first - admit), ("decode", finish - first)):
        times.parts[name] += np.bincount(plan.session[turn], span[turn], plan.tasks)
    times.parts["compaction"] += np.bincount(plan.session[comp], (finish - arrival)[comp], plan.tasks)


def check_tasks(times: TaskTimes) -> None:
    """Every second of a task is in exactly one part."""
    from .replica import InvariantError
    total = sum(times.parts.values())
    dur = times.end - times.start
    if (times.start < 0).any() or (times.end < times.start).any():
        raise InvariantError("a task did not finish, or finished before it started")
    bad = ~np.isclose(total, dur, rtol=1e-9, atol=1e-6)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvariantError(f"task {i}: its parts add up to {total[i]:.9g} s, its time is {dur[i]:.9g} s")


def service_times(plan: CallPlan, svc: Service, ag: Agentic, seed: int) -> tuple[TaskTimes, dict]:
    """A service profile: no queueing (the provider's capacity is not ours to model); a call
    takes ttft + uncached input / prefill speed + reply / decode speed. The provider caches the
    conversation's prefix between calls (what a compaction discards is prefilled again)."""
    cached, uncached = plan.ctx_before, plan.new
    prefill = np.broadcast_to(svc.ttft_s + (uncached / svc.prefill_tok_s if svc.prefill_tok_s else 0.0),
                              uncached.shape)
    decode = plan.output / svc.decode_tok_s
    comp = plan.kind == COMPACTION
    times = TaskTimes.empty(plan.tasks)
    call_s = prefill + decode
    n = plan.tasks
    times.parts["prefill"] = np.bincount(plan.session[~comp], prefill[~comp], n)
    times.parts["decode"] = np.bincount(plan.session[~comp], decode[~comp], n)
    times.parts["compaction"] = np.bincount(plan.session[comp], call_s[comp], n)
    times.parts["tool"] = np.bincount(plan.session, plan.tool_after, n)
    dur = sum(times.parts.values())
    if ag.rate_per_s is not None:  # independent tasks: arrivals do not queue behind each other
        gaps = np.random.default_rng(np.random.SeedSequence([seed, 11])).exponential(1 / ag.rate_per_s, n)
        times.start = np.cumsum(gaps)
    else:  # each agent runs its tasks back to back, taking the next task when it is free
        times.start = _agents_start(dur, ag.agents or 1)
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


def task_summary(times: TaskTimes, plan: CallPlan) -> dict:
    dur = times.end - times.start
    total = float(dur.sum())
    span = float(times.end.max() - times.start.min())
    comp = np.bincount(plan.session, plan.kind == COMPACTION, plan.tasks)
    out = {"tasks": plan.tasks, "task_p50_s": float(np.percentile(dur, 50)),
           "task_p90_s": float(np.percentile(dur, 90)), "task_p99_s": float(np.percentile(dur, 99)),
           "task_mean_s": float(dur.mean()), "tasks_per_hour": plan.tasks / span * 3600 if span > 0 else math.inf,
           "turns_per_task": float((plan.kind == TURN).sum() / plan.tasks),
           "compactions_per_task": float(comp.mean())}
    for p in PARTS:
        out[f"share_{p}"] = float(times.parts[p].sum() / total) if total > 0 else 0.0
    return out
