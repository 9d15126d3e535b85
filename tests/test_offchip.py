"""The off-chip links inside the simulator: agents' KV trips, swap and offload share each
replica's link (sim/links.py) and the external tier's port, against hand calculations."""
import numpy as np
import pytest

from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import ConstantRounds
from planner.sim.sessions import TURN, CallPlan

EXACT = dict(rel=1e-9, abs=1e-9)


def two_turn_tasks(n: int, prompt: int = 40, reply: int = 10, append: int = 5, tool: float = 0.5) -> CallPlan:
    """``n`` identical tasks of two turns: prompt -> reply -> tool -> append -> reply."""
    session = np.repeat(np.arange(n), 2)
    return CallPlan(session=session, kind=np.full(2 * n, TURN, np.int8),
                    ctx_before=np.tile([0, prompt + reply], n), new=np.tile([prompt, append], n),
                    output=np.full(2 * n, reply), tool_after=np.tile([tool, 0.0], n),
                    cache_after=np.tile([True, False], n), first=np.arange(0, 2 * n, 2), count=np.full(n, 2))


def trips(n: int, **rounds_kw):
    """n agents whose first calls finish together (one prefill round, same reply length)."""
    rounds = ConstantRounds(1.0, kv_budget=1e9, kv_per_token=1.0, external_bytes=1e9, link_bw=10.0, **rounds_kw)
    spec = SimSpec(requests=2 * n, plan=two_turn_tasks(n), agents=n, kv_between_turns="offload",
                   chunk=10_000, replicas=1)
    return simulate(spec, rounds)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_n_concurrent_agent_kv_trips_each_take_n_times_one(n):
    """Each first call holds 40 + 10 = 50 B of KV. n trips out start together on a 10 B/s link:
    each takes n x 5 s (the 0.5 s tool is hidden under it), then n trips back, n x 5 s again.
    Before links were shared every trip took 5 s whatever n."""
    res = trips(n)
    assert res.tasks.parts["kv_transfer"] == pytest.approx([2 * n * 5.0 - 0.5] * n, **EXACT)
    assert res.summary.tasks.share_kv_transfer > 0


def test_a_shared_tier_port_slows_trips_from_every_replica_it_serves():
    """Two replicas (one agent each) behind one tier port of 10 B/s, each with its own 10 B/s
    link: the two trips share the port (5 B/s each): 10 s each way, as two trips on one link."""
    rounds = ConstantRounds(1.0, kv_budget=1e9, kv_per_token=1.0, external_bytes=1e9, link_bw=10.0,
                            tier_bw=10.0, replicas_per_tier=2)
    spec = SimSpec(requests=4, plan=two_turn_tasks(2), agents=2, kv_between_turns="offload", chunk=10_000,
                   replicas=2)
    res = simulate(spec, rounds)
    assert sorted(res.requests["replica"].tolist()) == [0, 0, 1, 1]
    assert res.tasks.parts["kv_transfer"] == pytest.approx([2 * 10.0 - 0.5] * 2, **EXACT)
