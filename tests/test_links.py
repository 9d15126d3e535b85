"""Links as shared resources (planner/sim/links.py): processor sharing against closed forms."""
import math

import pytest
import simpy
from hypothesis import given, settings, strategies as st

from planner.sim.links import Link, Network, max_min

EXACT = dict(rel=1e-12, abs=1e-12)


def finish_times(starts, sizes, capacity=10.0, caps=None):
    """Start flows of ``sizes`` bytes at ``starts`` on one link; their finish times."""
    env = simpy.Environment()
    net, link = Network(env), Link(capacity, "l")
    out = [None] * len(sizes)

    def one(i):
        yield env.timeout(starts[i])
        f = net.start(sizes[i], link, caps[i] if caps else math.inf)
        yield f.done
        out[i] = env.now

    for i in range(len(sizes)):
        env.process(one(i))
    env.run()
    return out, link


def test_one_flow_takes_bytes_over_capacity():
    t, link = finish_times([0.0], [25.0])
    assert t[0] == pytest.approx(2.5, **EXACT) and link.carried == pytest.approx(25.0, **EXACT)


@pytest.mark.parametrize("n", [1, 2, 3, 8, 50])
def test_n_concurrent_transfers_each_take_n_times_one(n):
    """The issue's oracle: N agent KV trips started together each take N x one trip's time."""
    t, _ = finish_times([0.0] * n, [7.0] * n)
    assert t == pytest.approx([n * 0.7] * n, **EXACT)


def test_staggered_flows_follow_processor_sharing():
    """A (10 B) at 0, B (10 B) at 0.5 s, link 10 B/s: A alone moves 5 B; then 5 B/s each, A's
    last 5 B take 1 s (A done at 1.5); B has 5 B left, alone again: 0.5 s (B done at 2)."""
    t, _ = finish_times([0.0, 0.5], [10.0, 10.0])
    assert t == pytest.approx([1.5, 2.0], **EXACT)


def test_a_capped_flow_leaves_the_rest_to_the_others():
    """cap 2.5 B/s beside an uncapped flow on 10 B/s: the other gets 7.5 B/s (max-min fair)."""
    t, _ = finish_times([0.0, 0.0], [5.0, 15.0], caps=[2.5, math.inf])
    assert t == pytest.approx([2.0, 2.0], **EXACT)


def test_a_path_is_as_fast_as_its_busiest_link():
    """Two wafers' links (10 B/s each) share one tier port (10 B/s): 5 B/s each; a third flow
    on wafer 1's link alone gets 5 B/s too (link 1 is then full); wafer 2's flow takes what
    the port has left when wafer 1's flows are capped elsewhere."""
    a, b, port = Link(10, "a"), Link(10, "b"), Link(10, "port")
    flows = [type("F", (), {"path": p, "cap": c})() for p, c in
             (((a, port), math.inf), ((b, port), math.inf), ((a,), math.inf))]
    assert max_min(flows) == pytest.approx([5, 5, 5])
    flows[0].cap = 1.0
    assert max_min(flows) == pytest.approx([1, 9, 9])


def test_a_stream_is_capped_changed_and_stopped():
    env = simpy.Environment()
    net, link = Network(env), Link(10.0)
    stream = net.start(math.inf, link, cap=4.0)
    got = {}

    def other():
        f = net.start(30.0, link)
        assert f.rate == pytest.approx(6.0)
        yield env.timeout(1.0)  # 6 B moved
        net.set_cap(stream, 8.0)  # fair share now 5 each
        assert f.rate == pytest.approx(5.0)
        yield env.timeout(1.0)  # 11 B moved
        net.stop(stream)
        yield f.done  # 19 B at 10 B/s
        got["t"] = env.now

    env.process(other())
    env.run(until=100)
    assert got["t"] == pytest.approx(3.9, **EXACT)
    assert net.rate_for(link) == pytest.approx(10.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0.1, 50)), min_size=1, max_size=12))
def test_work_is_conserved_and_the_link_never_idles_with_work_left(jobs):
    """Whatever the arrivals: every byte crosses, and a work-conserving single link finishes
    the last flow exactly when a FIFO server of the same capacity would (same busy periods)."""
    starts, sizes = [s for s, _ in jobs], [b for _, b in jobs]
    t, link = finish_times(starts, sizes)
    assert link.carried == pytest.approx(sum(sizes), rel=1e-9)
    free = 0.0
    for s, b in sorted(jobs):
        free = max(free, s) + b / 10.0
    assert max(t) == pytest.approx(free, rel=1e-9)
