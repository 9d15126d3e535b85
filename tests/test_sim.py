"""The discrete-event engine against queueing theory, conservation laws and the analytic model."""
import math

import numpy as np
import pytest
from scipy import stats

from planner import catalog
from planner.physics.point import Config, build_point
from planner.plan.estimate import estimate
from planner.config.errors import ConfigError
from planner.config.schema import LengthDist
from planner.sim import engine
from planner.sim.engine import InvariantError, SimSpec, check_invariants, simulate
from planner.sim.rounds import ConstantRounds, StepRounds
from planner.plan.inputs import read_trace
from planner.sim.workload import Sampler, interarrivals

TAU = 0.001  # seconds per round in the oracle replicas


def fixed(v):
    return Sampler(LengthDist(dist="fixed", value=v))


def geometric(mean):
    return Sampler(LengthDist(dist="exponential", mean=mean))


def mean_waits(spec_kw, rounds, reps=4):
    waits = []
    for seed in range(reps):
        res = simulate(SimSpec(seed=seed, warmup_fraction=0.1, prompt=fixed(1), **spec_kw), rounds)
        waits.append(res.summary.mean_wait_s)
    return np.mean(waits), np.std(waits, ddof=1) / math.sqrt(reps)


def assert_close(sim, se, theory, rel=0.03):
    assert abs(sim - theory) <= 3 * se + rel * theory, (sim, se, theory)


# ------------------------------------------------------------------ queueing oracles
def test_md1_pollaczek_khinchine():
    """max_batch 1, fixed output of 100 tokens at 1 ms/round: deterministic service S = 0.1 s."""
    lam, S = 7.0, 100 * TAU
    rho = lam * S
    sim, se = mean_waits(dict(requests=20000, rate_per_s=lam, output=fixed(100), max_batch=1), ConstantRounds(TAU))
    assert_close(sim, se, rho * S / (2 * (1 - rho)))


def test_mg1_geometric_service_pollaczek_khinchine():
    """Geometric token counts (mean 100): E[S^2] = tau^2 (2 - p) / p^2 exactly; M/M/1 is its continuum limit."""
    lam, m = 7.0, 100
    p = 1 / m
    es, es2 = TAU * m, TAU ** 2 * (2 - p) / p ** 2
    rho = lam * es
    sim, se = mean_waits(dict(requests=20000, rate_per_s=lam, output=geometric(m), max_batch=1), ConstantRounds(TAU))
    theory = lam * es2 / (2 * (1 - rho))
    assert_close(sim, se, theory)
    mm1 = rho / (1 / es - lam)
    assert abs(theory / mm1 - 1) < 0.01  # and the M/M/1 figure is within 1% of it


def erlang_c_wait(lam, mu, c):
    a = lam / mu
    rho = a / c
    top = a ** c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def test_mmc_erlang_c():
    """One replica with max_batch c and a batch-independent round time is c servers on one FIFO queue."""
    c, m = 3, 400
    mu = 1 / (m * TAU)
    lam = 0.75 * c * mu
    sim, se = mean_waits(dict(requests=20000, rate_per_s=lam, output=geometric(m), max_batch=c), ConstantRounds(TAU))
    assert_close(sim, se, erlang_c_wait(lam, mu, c), rel=0.05)
    # the scipy route to Erlang C agrees with the closed form above
    a = lam / mu
    pw = stats.poisson.pmf(c, a) / (stats.poisson.pmf(c, a) + (1 - a / c) * stats.poisson.cdf(c - 1, a))
    assert pw / (c * mu - lam) == pytest.approx(erlang_c_wait(lam, mu, c))


# ------------------------------------------------------------------ real hardware
def llama(count=4, context=1280, prompt=1024, output=256, **kw):
    cfg = Config(catalog.load_model("llama-3.1-70b"), catalog.load_hardware("cs3"), count=count, context=context,
                 prompt=prompt, output=output, **kw)
    return cfg, StepRounds(build_point(cfg))


def test_low_load_matches_analytic():
    cfg, rounds = llama(batch=1)
    est = estimate(cfg)
    res = simulate(SimSpec(requests=50, process="closed", users=1, prompt=fixed(1024), output=fixed(256)), rounds)
    s = res.summary
    assert s.ttft_p50_s == pytest.approx(est.ttft_s, rel=1e-6)
    assert s.decode_tok_s_per_user_p50 == pytest.approx(est.decode_tok_s_per_user, rel=0.01)
    assert s.queue_max_s == 0.0


def test_one_users_throughput_pays_its_own_prefill():
    """A closed loop of one user alternates its prompt's prefill and its decode: the analytic
    throughput (steady_round's replica time) is output / (TTFT + decode time), as simulated.
    An 8K prompt on 4 x CS-3 takes two fifths of each request's time (the decode speed alone: +68%)."""
    cfg, rounds = llama(context=8192 + 256, prompt=8192, output=256, batch=1)
    est = estimate(cfg)
    res = simulate(SimSpec(requests=60, process="closed", users=1, prompt=fixed(8192), output=fixed(256)), rounds)
    s = res.summary
    assert est.ttft_s / (est.ttft_s + 256 / est.decode_tok_s_per_user) > 0.2  # the prefill matters here
    assert s.throughput_out_tok_s == pytest.approx(est.aggregate_tok_s, rel=0.02)
    assert est.aggregate_tok_s < 0.85 * est.decode_tok_s_per_user  # not the decode speed alone


def test_saturation_throughput_approaches_analytic_capacity():
    """Every KV slot busy: the simulated throughput never beats the analytic steady state and
    reaches at least half of it. The steady state assumes the slots' prefills spread out in
    time and costs KV only while decoding; the simulator also holds a slot's KV while its prompt
    is prefilled and lands, and a closed loop of identical requests runs in lockstep, its
    prompts queueing behind each other on the wafer's layer pipeline (here about 40% lower)."""
    cfg, rounds = llama()
    cap = estimate(cfg).aggregate_tok_s
    res = simulate(SimSpec(requests=4000, process="closed", users=200, prompt=fixed(1024), output=fixed(256)), rounds)
    assert 0.5 * cap <= res.summary.throughput_out_tok_s <= 1.05 * cap


def test_events_per_request_do_not_grow_with_output_length():
    _, rounds = llama(context=8192)
    per = []
    for out in (128, 2048):
        res = simulate(SimSpec(requests=1500, rate_per_s=20.0, prompt=fixed(1024), output=fixed(out)), rounds)
        per.append(res.summary.events_per_request)
    assert per[1] < 1.5 * per[0] and per[1] < 8


@pytest.mark.parametrize("policy", ["wait", "preempt", "swap", "offload"])
def test_kv_policies_keep_invariants(policy):
    """KV for ~2 sequences of 8K; 6 users with lognormal outputs push every policy to its limit."""
    cfg, _ = llama(context=8192)
    ext = catalog.load_hardware("cs3").external_memory
    rounds = StepRounds(build_point(cfg), ext.capacity, ext.bandwidth)
    out = Sampler(LengthDist(dist="lognormal", median=1500, sigma=0.8, max=7000))
    res = simulate(SimSpec(requests=300, process="closed", users=60, prompt=fixed(1024), output=out,
                           policy=policy, block_tokens=256), rounds)  # invariants are checked inside
    s = res.summary
    if policy == "preempt":
        assert s.preemptions > 0
    if policy == "swap":
        assert s.swaps > 0 and s.offchip_transfer_util > 0
    if policy == "offload":
        assert s.offchip_transfer_util > 0
    if policy in ("wait", "preempt", "swap"):
        assert s.kv_occupancy_peak <= 1 + 1e-9


def test_offload_reads_cross_every_wafers_link_in_parallel():
    """DeepSeek-V3 BF16, 32K context: its KV (2.3 GB) takes ~15 ms across one wafer's 150 GB/s
    link (DOMAIN.md), but a pipeline spreads it over its wafers, each reading its share on its
    own link at once: the replica's path is as fast as the busiest stage's link allows (the old
    model read all of it over one link in series, up to S times too slow)."""
    cfg = Config(catalog.load_model("deepseek-v3"), catalog.load_hardware("cs3"), count=40, context=32768)
    ext = catalog.load_hardware("cs3").external_memory
    rounds = StepRounds(build_point(cfg), ext.capacity, ext.bandwidth)
    kv = rounds.kv_bytes(32768)
    assert kv == pytest.approx(2.3e9, rel=0.01) and kv / 150e9 == pytest.approx(0.0154, rel=0.01)
    devs = np.array([s.devices for s in build_point(cfg).placement.stages])
    assert rounds.link_bytes_per_s == pytest.approx(150e9 / np.max(rounds.share / devs))
    # 40 stages, the first holding 6.3% of the KV (the others 2.4%): 15.9 links' worth, not one
    assert rounds.link_bytes_per_s / 150e9 == pytest.approx(15.93, rel=1e-3)


def test_replicas_and_routers_spread_load():
    _, rounds = llama()
    for router in ("round_robin", "least_outstanding", "most_free_kv"):
        res = simulate(SimSpec(requests=900, rate_per_s=300, prompt=fixed(1024), output=fixed(256), replicas=3,
                               router=router), rounds)
        counts = np.bincount(res.requests["replica"], minlength=3)
        assert counts.min() > 150, (router, counts)


def test_same_seed_same_records_and_other_seed_differs():
    _, rounds = llama()
    kw = dict(requests=500, rate_per_s=200, prompt=geometric(800), output=geometric(200))
    a = simulate(SimSpec(seed=3, **kw), rounds).requests
    b = simulate(SimSpec(seed=3, **kw), rounds).requests
    c = simulate(SimSpec(seed=4, **kw), rounds).requests
    assert a.equals(b) and not a.equals(c)


def test_invariant_checker_catches_broken_records():
    env_spec = SimSpec(requests=50, rate_per_s=5, prompt=fixed(1), output=fixed(10), max_batch=1)
    captured = {}
    real = engine.check_invariants

    def grab(rec, reps):
        captured["rec"], captured["reps"] = rec, reps
        real(rec, reps)
    engine.check_invariants = grab
    try:
        simulate(env_spec, ConstantRounds(TAU))
    finally:
        engine.check_invariants = real
    rec, reps = captured["rec"], captured["reps"]
    rec.generated[7] -= 1
    with pytest.raises(InvariantError, match="generated"):
        check_invariants(rec, reps)
    rec.generated[7] += 1
    area = rec.area
    rec.area *= 1.01
    with pytest.raises(InvariantError, match="bookkeeping"):
        check_invariants(rec, reps)
    rec.area = area
    rec.held_area *= 1.01
    with pytest.raises(InvariantError, match="Little's law"):
        check_invariants(rec, reps)


# ------------------------------------------------------------------ workload inputs
def test_gamma_interarrivals_have_the_requested_cv():
    rng = np.random.default_rng(0)
    g = interarrivals("gamma", 10.0, 2.5, rng, 200_000)
    assert g.mean() == pytest.approx(0.1, rel=0.02) and g.std() / g.mean() == pytest.approx(2.5, rel=0.03)


def test_trace_replay_and_row_errors(tmp_path):
    good = tmp_path / "t.csv"
    good.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,10\n0.5,200,20\n0.5,300,5\n")
    tr = read_trace(str(good))
    res = simulate(SimSpec(requests=10, process="trace", trace=tr), ConstantRounds(TAU))
    assert list(res.requests["arrival_s"]) == [0.0, 0.5, 0.5] and list(res.requests["output_tokens"]) == [10, 20, 5]
    bad = tmp_path / "b.csv"
    bad.write_text("arrival_s,prompt_tokens,output_tokens\n1.0,100,10\n0.5,x,20\n0.7,10,0\n")
    with pytest.raises(ConfigError) as e:
        read_trace(str(bad))
    lines = str(e.value).splitlines()
    assert lines[0].startswith(f"{bad}:3:1:") and lines[1].startswith(f"{bad}:4:1:")
    nohdr = tmp_path / "n.csv"
    nohdr.write_text("0.0,1,1\n")
    with pytest.raises(ConfigError, match="header must have"):
        read_trace(str(nohdr))


def test_length_samplers():
    rng = np.random.default_rng(1)
    ln = Sampler(LengthDist(dist="lognormal", median=500, sigma=0.5)).draw(rng, 100_000)
    assert np.median(ln) == pytest.approx(500, rel=0.02)
    u = Sampler(LengthDist(dist="uniform", low=10, high=20)).draw(rng, 10_000)
    assert u.min() == 10 and u.max() == 20
    clipped = Sampler(LengthDist(dist="exponential", mean=100, max=150)).draw(rng, 10_000)
    assert clipped.max() == 150 and clipped.min() >= 1


def test_request_larger_than_replica_is_refused():
    with pytest.raises(ValueError, match="more than a replica holds"):
        simulate(SimSpec(requests=5, rate_per_s=1, prompt=fixed(100), output=fixed(100)),
                 ConstantRounds(TAU, kv_budget=1000, kv_per_token=10))


# ------------------------------------------------------------------ property-based: invariants hold for any workload
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ROUNDS = {}


def _real_rounds():
    if "r" not in _ROUNDS:
        cfg, _ = llama(context=8192)
        ext = catalog.load_hardware("cs3").external_memory
        _ROUNDS["r"] = StepRounds(build_point(cfg), ext.capacity, ext.bandwidth)
    return _ROUNDS["r"]


@settings(max_examples=int(__import__("os").environ.get("SIM_EXAMPLES", 25)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(["wait", "preempt", "swap", "offload", "offload together"]),
       router=st.sampled_from(["round_robin", "least_outstanding", "most_free_kv"]),
       process=st.sampled_from(["poisson", "gamma", "constant", "closed"]),
       replicas=st.integers(1, 3), users=st.integers(1, 40), rate=st.floats(5, 400),
       prompt=st.integers(16, 4000), out_median=st.integers(2, 2000), chunk=st.sampled_from([64, 512, 8192]),
       max_batch=st.one_of(st.none(), st.integers(1, 16)), seed=st.integers(0, 10 ** 6),
       cached=st.sampled_from([0.0, 0.0, 0.5, 0.9]))
def test_invariants_hold_for_random_workloads(policy, router, process, replicas, users, rate, prompt, out_median,
                                              chunk, max_batch, seed, cached):
    out = Sampler(LengthDist(dist="lognormal", median=out_median, sigma=0.7, max=8192 - 4000))
    spec = SimSpec(requests=150, process=process, rate_per_s=rate, cv=2.0, users=users,
                   prompt=Sampler(LengthDist(dist="uniform", low=max(1, prompt // 2), high=prompt)), output=out,
                   replicas=replicas, router=router, policy=policy.split()[0], max_batch=max_batch, chunk=chunk,
                   seed=seed, offload_batching="together" if "together" in policy else "separate", cached_share=cached)
    res = simulate(spec, _real_rounds())  # raises InvariantError on any broken law
    r = res.requests
    assert (r.ttft_s >= 0).all() and (r.e2e_s >= r.ttft_s - 1e-12).all()
    assert res.summary.mean_in_system * res.summary.sim_time_s == pytest.approx(r.e2e_s.sum(), rel=1e-9)
