"""Agent tasks as SimPy processes: who runs them (agents taking tasks back to back, or tasks
arriving as a Poisson process), their tool calls on a pool of CPUs, and a service profile's
tasks when CPUs are scarce.

CPUs (``cpus``, ``cpu_scope``, ``cpu_speed``): a tool call is one event on a pool of ``cpus``
CPUs (a ``simpy.Resource``, first come first served): it waits for a free CPU (``tool_wait``)
and holds it for ``tool_s / cpu_speed`` (``tool``). A pool per replica serves the tasks whose
calls that replica serves; one for the cluster serves every task. Without ``cpus`` every tool
call starts at once (as many CPUs as needed). Tool calls arriving as a Poisson stream on
exponential service times make the pool an M/M/c queue: its mean wait is Erlang C's
(tests/test_cpus.py).
"""
from __future__ import annotations

import numpy as np
import simpy

from planner.sim.sessions import COMPACTION, CallPlan, TaskTimes


class Tools:
    """Tool calls on CPUs: one pool for the cluster, one per replica, or none (unlimited)."""

    def __init__(self, env, times: TaskTimes, cpus: int | None, scope: str = "cluster", speed: float = 1.0):
        self.env, self.times, self.cpus, self.scope, self.speed = env, times, cpus, scope, speed
        self.pools: dict[int, simpy.Resource] = {}

    def call(self, s: int, seconds: float, where: int = 0):
        """Task ``s``'s tool call of ``seconds`` (at speed 1), on the pool of replica ``where``."""
        env, run = self.env, seconds / self.speed
        if self.cpus is None:
            yield env.timeout(run)
        else:
            key = where if self.scope == "replica" else 0
            pool = self.pools.get(key) or self.pools.setdefault(key, simpy.Resource(env, self.cpus))
            t0 = env.now
            with pool.request() as req:
                yield req
                self.times.parts["tool_wait"][s] += env.now - t0
                yield env.timeout(run)
        self.times.parts["tool"][s] += run


def drive(env, tasks: int, agents: int | None, rate_per_s: float | None, gaps, task) -> None:
    """Start ``task(s)`` for every task: ``agents`` agents take them back to back, or (with a
    rate) each starts after its gap in ``gaps`` from the previous one."""
    if rate_per_s is not None:
        def source():
            for s in range(tasks):
                yield env.timeout(float(gaps[s]))
                env.process(task(s))
        env.process(source())
        return
    counter = iter(range(tasks))

    def agent():
        for s in counter:
            yield from task(s)
    for _ in range(min(agents or 1, tasks)):
        env.process(agent())


def service_tasks(plan: CallPlan, times: TaskTimes, call_s: np.ndarray, cpus: int, speed: float,
                  agents: int | None, rate_per_s: float | None, gaps) -> None:
    """A service profile's tasks with tool calls on ``cpus`` CPUs: every call takes its fixed
    ``call_s`` (the provider does not queue: its capacity is not ours), then its tool call
    waits for a CPU. Sets ``times``' start, end, tool and tool_wait."""
    env = simpy.Environment()
    tools = Tools(env, times, cpus, "cluster", speed)
    times.parts["tool"][:] = 0.0

    def task(s: int):
        times.start[s] = env.now
        for i in range(int(plan.first[s]), int(plan.first[s] + plan.count[s])):
            yield env.timeout(float(call_s[i]))
            if plan.tool_after[i] > 0 and plan.kind[i] != COMPACTION:
                yield from tools.call(s, float(plan.tool_after[i]))
        times.end[s] = env.now

    drive(env, plan.tasks, agents, rate_per_s, gaps, task)
    env.run()
