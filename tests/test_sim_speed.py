"""The simulator's shortcuts against the plain per-round plan they replace: prefill spans summed
in closed form give the same rounds and the same times as round by round."""
import dataclasses
import math
import random

import numpy as np
import pytest

from planner import catalog
from planner.config.schema import LengthDist
from planner.physics.point import Config, build_point
from planner.plan.estimate import estimate
from planner.sim.batch import floor_sum, head_rounds, next_bucket
from planner.sim import engine
from planner.sim.engine import SimSpec, simulate
from planner.sim.replica import Replica
from planner.sim.rounds import StepRounds
from planner.sim.workload import Sampler


def fixed(v):
    return Sampler(LengthDist(dist="fixed", value=v))


@pytest.fixture(scope="module")
def wafer():
    """DeepSeek-V3 FP8 on CS-3 wafers at 8K: a deep pipeline prefilling in bubble-sized pieces."""
    cfg = Config(catalog.load_model("deepseek-v3"), catalog.load_hardware("cs3"), weights="fp8", context=8192,
                 prompt=7168, output=1024, min_sequences=64)
    return cfg, StepRounds(build_point(cfg))


def test_floor_sum():
    rng = random.Random(3)
    for _ in range(2000):
        n, m, a, b = rng.randint(0, 80), rng.randint(1, 3000), rng.randint(0, 10000), rng.randint(0, 200000)
        assert floor_sum(n, m, a, b) == sum((a * j + b) // m for j in range(n))


def test_next_bucket_is_the_first_round_in_a_later_context_bucket():
    rng = random.Random(1)
    for _ in range(500):
        b, a, q = rng.randint(1, 300), rng.choice([1.0, 1.7, 3.0]), rng.choice([16.0, 128.0, 144.5])
        s0, r = rng.uniform(0, 8000) * b, rng.randint(0, 5000)
        nxt = next_bucket(s0, a * b, b, r, q)
        bucket = [int((s0 + a * b * x) / b / q) for x in range(r, nxt + 1)]
        assert all(k == bucket[0] for k in bucket[:-1]) and bucket[-1] > bucket[0]


@pytest.fixture(scope="module")
def long_wafer():
    """DeepSeek-V3 FP4 on 16 CS-3 at 128K: prefill rounds turn from bubble-filling to stretching
    the round part-way through a prompt (a kink in round time against position)."""
    cfg = Config(catalog.load_model("deepseek-v3"), catalog.load_hardware("cs3"), weights="fp4", kv="fp8",
                 context=131072, prompt=130048, output=1024, count=16)
    return cfg, StepRounds(build_point(cfg))


@pytest.mark.parametrize("point,ctx,pos", [("wafer", 7000, 6000), ("long_wafer", 30000, 60000)])
def test_head_rounds_in_closed_form_equal_the_round_by_round_sum(point, ctx, pos, request):
    _, m = request.getfixturevalue(point)
    rng = random.Random(2)
    seen = 0
    for _ in range(300):
        b = rng.randint(0, 200)
        s0 = rng.uniform(1000, ctx) * b - m.accepted * b * 50
        hp = rng.randint(0, pos)
        args = (m, b, s0, m.accepted * b, 50, hp, hp + rng.randint(1, 8 * pos), rng.randint(1, 64), 8192)
        fast_busy, exact_busy = {}, {}
        fast, exact = head_rounds(*args, fast_busy), head_rounds(*args, exact_busy, exact=True)
        assert fast[:2] == exact[:2]
        if fast[0]:
            seen += 1
            assert math.isclose(fast[2], exact[2], rel_tol=1e-9)
            busy = [sum(n * v for v, n in parts.values()) for parts in (fast_busy, exact_busy)]
            np.testing.assert_allclose(busy[0], busy[1], rtol=1e-8)
            assert math.isclose(fast[3], exact[3], rel_tol=1e-9, abs_tol=1e-300)
    assert seen > 100


def test_a_run_with_closed_form_prefill_spans_matches_the_per_round_plan(wafer, monkeypatch):
    cfg, m = wafer
    rate = 0.8 * estimate(dataclasses.replace(cfg, batch=None)).aggregate_tok_s / 1024
    spec = SimSpec(requests=600, rate_per_s=rate, prompt=fixed(7168), output=fixed(1024), seed=3)
    fast = simulate(spec, m).summary
    class Exact(Replica):  # (a subclass: a compiled Replica's class attributes are read-only)
        exact_prefill = True
    monkeypatch.setattr(engine, "Replica", Exact)
    exact = simulate(spec, m).summary
    assert fast.events == exact.events
    for name in ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "throughput_out_tok_s", "stage_util_max", "sim_time_s"):
        assert math.isclose(getattr(fast, name), getattr(exact, name), rel_tol=1e-9), name


def test_the_router_heap_picks_what_a_scan_would(wafer, monkeypatch):
    """least_outstanding from the replicas' heap (sim/router.py) = min over (outstanding, index)."""
    cfg, m = wafer
    checked = []
    route = engine._route

    def both(replicas, how, rid):
        r = route(replicas, how, rid)
        assert r is min(replicas, key=lambda x: (x.outstanding(), x.index))
        assert all(x.n_out == x.outstanding() for x in replicas)
        checked.append(rid)
        return r

    monkeypatch.setattr(engine, "_route", both)
    rate = 0.9 * 8 * estimate(dataclasses.replace(cfg, batch=None)).aggregate_tok_s / 1024
    simulate(SimSpec(requests=1500, rate_per_s=rate, prompt=fixed(7168), output=fixed(1024), seed=5, replicas=8,
                     router="least_outstanding"), m)
    assert len(checked) == 1500


def test_rounds_within_is_the_largest_k_whose_span_time_fits():
    """The closed-form root, checked, equals a search over span_time (growing and flat spans,
    elapsed on and between round boundaries, at 0 and past the span)."""
    from planner.sim.batch import largest, rounds_within, span_time
    rng = random.Random(5)
    for _ in range(5000):
        n = rng.randint(1, 400)
        t0 = rng.uniform(1e-4, 0.1)
        t1 = t0 * rng.choice([1.0, rng.uniform(1.0, 3.0), rng.uniform(0.5, 1.0)])
        k = rng.randint(0, n)
        elapsed = rng.choice([span_time(k, n, t0, t1), span_time(k, n, t0, t1) * rng.uniform(0.9, 1.1),
                              rng.uniform(0, 2 * span_time(n, n, t0, t1)), 0.0])
        assert rounds_within(elapsed, n, t0, t1) == largest(0, n, lambda j: span_time(j, n, t0, t1) <= elapsed)
