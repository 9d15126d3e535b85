"""Tool calls on a pool of CPUs (sim/tasks.py): Erlang C, hand traces, and the closed form
when CPUs are plentiful."""
import math

import numpy as np
import pytest

from planner.config.schema import Agentic, LengthDist, Service, TimeDist
from planner.plan.agents import plan_calls, service_times
from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import ConstantRounds
from tests.test_offchip import two_turn_tasks

FAST = Service(name="instant", decode_tok_s=1e9, context_window=1_000_000)


def erlang_c_wait(c: int, lam: float, mean_s: float) -> float:
    """Mean wait in queue of M/M/c (Erlang C)."""
    a = lam * mean_s
    top = a ** c / math.factorial(c) * c / (c - a)
    p_wait = top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c / mean_s - lam)


@pytest.mark.parametrize("c,lam,mean_s", [(1, 0.4, 2.0), (3, 1.0, 2.4), (8, 3.0, 2.0)])
def test_tool_calls_on_c_cpus_wait_as_erlang_c(c, lam, mean_s):
    """Tasks arrive as a Poisson process; each makes one tool call (two turns) of exponential
    length right after an instant first call (a fixed delay keeps arrivals Poisson): the CPU
    pool is M/M/c, and the mean wait matches Erlang C within 3 standard errors (+2%)."""
    waits = []
    for seed in range(5):
        ag = Agentic(tasks=20000, rate_per_s=lam, turns=LengthDist(dist="fixed", value=2),
                     first_prompt_tokens=LengthDist(dist="fixed", value=100),
                     append_tokens=LengthDist(dist="fixed", value=100), reply_tokens=LengthDist(dist="fixed", value=10),
                     tool_s=TimeDist(dist="exponential", mean=mean_s), cpus=c)
        plan = plan_calls(ag, FAST.context_window, seed)
        times, _ = service_times(plan, FAST, ag, seed)
        w = times.parts["tool_wait"]
        waits.append(w[len(w) // 10:].mean())  # without the warm-up from an empty pool
    sim, se = np.mean(waits), np.std(waits, ddof=1) / math.sqrt(len(waits))
    theory = erlang_c_wait(c, lam, mean_s)
    assert abs(sim - theory) <= 3 * se + 0.02 * theory, (sim, se, theory)


def test_enough_cpus_give_the_closed_form_and_speed_divides_tool_time():
    base = dict(tasks=40, agents=6, turns=LengthDist(dist="uniform", low=3, high=9),
                tool_s=TimeDist(dist="lognormal", median=2.0, sigma=0.5))
    svc = Service(name="s", decode_tok_s=100, ttft_s=0.3, call_overhead_s=0.2, context_window=200_000)
    free, _ = service_times(plan_calls(Agentic(**base), 200_000, 0), svc, Agentic(**base), 0)
    many = Agentic(**base, cpus=6)
    pooled, _ = service_times(plan_calls(many, 200_000, 0), svc, many, 0)
    assert pooled.end - pooled.start == pytest.approx(free.end - free.start, rel=1e-12)
    assert (pooled.parts["tool_wait"] == 0).all()
    fast = Agentic(**base, cpu_speed=2.0)
    quick, _ = service_times(plan_calls(fast, 200_000, 0), svc, fast, 0)
    assert quick.parts["tool"] == pytest.approx(free.parts["tool"] / 2, rel=1e-12)
    assert free.parts["overhead"].sum() > 0 and (free.parts["tool_wait"] == 0).all()


def test_fewer_cpus_than_agents_make_tool_calls_wait_on_the_engine():
    """Two agents whose first calls finish together (one prefill round, 1 s; 10 rounds of
    decode) and whose tools take 0.5 s: with one CPU the second waits 0.5 s; with a pool per
    replica and the two tasks on two replicas, nobody waits; unlimited, nobody waits."""
    rounds = ConstantRounds(1.0, kv_budget=1e9, kv_per_token=1.0)

    def run(**kw):
        spec = SimSpec(requests=4, plan=two_turn_tasks(2, tool=0.5), agents=2, chunk=10_000, kv_between_turns="drop",
                       **kw)
        return simulate(spec, rounds).tasks.parts["tool_wait"]

    assert sorted(run(cpus=1)) == pytest.approx([0.0, 0.5])
    assert list(run(cpus=1, cpu_scope="replica", replicas=2)) == [0.0, 0.0]
    assert list(run()) == [0.0, 0.0]


def test_per_call_overhead_on_the_engine_is_its_own_part():
    rounds = ConstantRounds(1.0, kv_budget=1e9, kv_per_token=1.0)
    plain = simulate(SimSpec(requests=4, plan=two_turn_tasks(2), agents=2, chunk=10_000), rounds).tasks
    over = simulate(SimSpec(requests=4, plan=two_turn_tasks(2), agents=2, chunk=10_000, call_overhead_s=0.25),
                    rounds).tasks
    assert over.parts["overhead"] == pytest.approx([0.5, 0.5])  # two calls each
    assert over.end - over.start == pytest.approx(plain.end - plain.start + 0.5)
