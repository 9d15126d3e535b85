"""Agent tasks (sessions): the calls each task makes, how a service profile times them, and
the task-level metrics with their time breakdown.

A task is a sequence of turns. Turn t appends tokens to the context (the task's prompt on
the first turn, a tool's output after), prefills them, decodes a reply, and (but for the
last turn) runs a tool call on a CPU (a pool of ``cpus``, or as many as needed). Every call
first pays a fixed client/orchestration overhead (building the request, the API service's
path), outside the model. When the context would pass
``compact_at`` x the window, a compaction call comes first: it reads the whole context plus a
"summarise" instruction and writes ``summary_tokens``; the context then restarts as the
summary plus ``reread_tokens`` of recent material, prefilled by the next turn.

The calls of every task are drawn up front from the seed (plan/agents.py: ``plan_calls``), so
the same tasks run on every configuration being compared. The discrete-event engine runs them
through replicas (engine.py: ``simulate``); a service profile times them in closed form
(plan/agents.py: ``service_times``).

Breakdown of a task's time (shares add up to the task time, checked on every run):
tool (a CPU running it), tool wait (waiting for a free CPU), overhead (the per-call client and
API overhead of turns), queueing (waiting for admission), prefill (admission to first token),
decode (first token to last), compaction (whole compaction calls, their overhead included), KV
transfer (offloaded KV coming back over the link, and any part of its trip out that outlasts
the tool call).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.sim.errors import InvariantError


TURN, COMPACTION = 0, 1
PARTS = ("tool", "tool_wait", "overhead", "queue", "prefill", "decode", "compaction", "kv_transfer")


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
    total = sum(times.parts.values())
    dur = times.end - times.start
    if (times.start < 0).any() or (times.end < times.start).any():
        raise InvariantError("a task did not finish, or finished before it started")
    bad = ~np.isclose(total, dur, rtol=1e-9, atol=1e-6)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvariantError(f"task {i}: its parts add up to {total[i]:.9g} s, its time is {dur[i]:.9g} s")


@dataclass(frozen=True)
class TaskStats:
    """Agent tasks' times and the share of their summed time in each part of PARTS."""

    tasks: int
    task_p50_s: float
    task_p90_s: float
    task_p99_s: float
    task_mean_s: float
    tasks_per_hour: float
    turns_per_task: float
    compactions_per_task: float
    share_tool: float
    share_tool_wait: float
    share_overhead: float
    share_queue: float
    share_prefill: float
    share_decode: float
    share_compaction: float
    share_kv_transfer: float

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def task_summary(times: TaskTimes, plan: CallPlan) -> TaskStats:
    dur = times.end - times.start
    total = float(dur.sum())
    span = float(times.end.max() - times.start.min())
    comp = np.bincount(plan.session, plan.kind == COMPACTION, plan.tasks)
    shares = {f"share_{p}": float(times.parts[p].sum() / total) if total > 0 else 0.0 for p in PARTS}
    return TaskStats(tasks=plan.tasks, task_p50_s=float(np.percentile(dur, 50)),
                     task_p90_s=float(np.percentile(dur, 90)), task_p99_s=float(np.percentile(dur, 99)),
                     task_mean_s=float(dur.mean()), tasks_per_hour=plan.tasks / span * 3600 if span > 0 else math.inf,
                     turns_per_task=float((plan.kind == TURN).sum() / plan.tasks),
                     compactions_per_task=float(comp.mean()), **shares)
