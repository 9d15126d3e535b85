"""Capacity search: the bisection itself, a queueing closed form, and sweep rows built on it."""
import dataclasses
import math
from types import SimpleNamespace

import pytest
from scipy import optimize

from planner.plan.capacity import analytic_values, search, slo_misses
from planner.config.errors import ConfigError
from planner.config.schema import SLO, LengthDist
from planner.plan.scenario import expand, load
from planner.sim.engine import SimSpec, simulate
from planner.sim.rounds import ConstantRounds
from planner.sim.workload import Sampler
from planner.plan.point import run_point as run_result
from planner.sweeps.tables import row as result_row


def threshold(x_star):
    calls = []

    def probe(x):
        calls.append(x)
        return ([] if x <= x_star else ["ttft_p99_s"]), {"x": x}
    return probe, calls


@pytest.mark.parametrize("x_star,guess", [(37.3, 10.0), (37.3, 90.0), (37.3, 37.3), (0.9, 500.0)])
def test_search_brackets_and_bisects_a_threshold(x_star, guess):
    """Probes: the steps to bracket (x1.5 up or x0.5 down) plus log2(bracket / tolerance)."""
    probe, calls = threshold(x_star)
    f = search(probe, guess, floor=0.5, ceiling=1000.0, integer=False, tolerance=0.02, max_probes=30)
    assert f.best is not None and f.load <= x_star  # never a load that was seen to fail
    assert x_star - f.load <= 0.02 * f.load + 1e-12
    assert f.limit == "ttft_p99_s"
    assert len(calls) == len(set(calls)) == len(f.probes)  # no load probed twice
    steps = math.ceil(abs(math.log(guess / x_star)) / math.log(1.5)) + 1
    assert len(calls) <= steps + math.ceil(math.log2(0.5 / 0.02)) + 1


def test_search_integer_loads_stop_within_tolerance_or_one_user():
    probe, calls = threshold(417)
    f = search(probe, 300, floor=1, ceiling=2000, integer=True)
    assert 0 <= 417 - f.load <= 0.05 * f.load and all(isinstance(x, int) for x in calls)
    probe, calls = threshold(417)
    assert search(probe, 300, floor=1, ceiling=2000, integer=True, tolerance=1e-6, max_probes=40).load == 417


@pytest.mark.parametrize("guess", [400, 20, 58])
def test_excess_guided_search_needs_few_probes_on_a_linear_latency(guess):
    """p99 TTFT = 0.1 + 0.05 x (s) against a 3 s target: capacity 58 users. Plain bisection from
    400 takes about 9 probes; interpolating on the measured excess takes at most 5."""
    def probe(x):
        ttft = 0.1 + 0.05 * x
        return ([] if ttft <= 3.0 else ["ttft_p99_s"]), ttft
    f = search(probe, guess, floor=1, ceiling=1000, integer=True, excess=lambda t: t / 3.0)
    assert 58 - f.load <= max(1, 0.05 * f.load) and f.load <= 58
    assert len(f.probes) <= 5, [p.load for p in f.probes]
    plain = search(probe, guess, floor=1, ceiling=1000, integer=True)
    assert plain.load <= 58 and len(f.probes) <= len(plain.probes)


def test_search_ceiling_floor_and_probe_budget():
    probe, _ = threshold(1e9)
    f = search(probe, 10, floor=1, ceiling=64, integer=True, ceiling_name="kv_capacity")
    assert (f.load, f.limit) == (64, "kv_capacity")
    probe, calls = threshold(0.1)
    f = search(probe, 10, floor=1, ceiling=64, integer=True)
    assert (f.load, f.best, f.limit) == (0, None, "floor") and calls[-1] == 1
    probe, calls = threshold(33.3)
    f = search(probe, 1, floor=1, ceiling=1e6, integer=False, tolerance=1e-9, max_probes=5)
    assert len(calls) == 5 and f.load <= 33.3


def test_search_answer_is_a_passing_probe_even_when_noise_breaks_monotony():
    def probe(x):  # passes below 50 except a spurious failure at 25
        return ([] if x < 50 and x != 25 else ["tpot_p99_s"]), None
    f = search(probe, 100, floor=1, ceiling=200, integer=True, tolerance=0.01)
    assert f.best.passed and f.load < 50


def test_slo_misses_reads_simulated_or_analytic_figures():
    slo = SLO(ttft_p99_s=1.0, decode_tok_s_per_user_p50=50)
    assert slo_misses(slo, {"ttft_p99_s": 1.2, "decode_tok_s_per_user_p50": 60}) == ["ttft_p99_s"]
    est = SimpleNamespace(ttft_s=0.5, tpot_s=0.025, decode_tok_s_per_user=40)  # an Estimate's figures
    assert slo_misses(slo, analytic_values(est)) == ["decode_tok_s_per_user_p50"]
    assert slo_misses(slo, {"ttft_p99_s": None, "decode_tok_s_per_user_p50": 50}) == []  # unmeasured, at target
    assert slo_misses(SLO(), {"ttft_p99_s": 99}) == []


def test_capacity_of_an_mm1_queue_under_a_p99_wait_target():
    """One server, geometric service of mean 100 rounds x 1 ms (M/M/1 within 1%, see test_sim),
    SLO on the p99 time to first token. M/M/1: P(W > t) = rho exp(-(mu - lambda) t), so the highest
    rate meeting p99(W) <= T solves rho exp(-(mu - lambda) T) = 0.01 (W excludes the ~1 ms first round)."""
    tau, mean, target = 0.001, 100, 1.5
    mu = 1 / (tau * mean)
    lam_star = optimize.brentq(lambda lam: lam / mu * math.exp(-(mu - lam) * (target - tau)) - 0.01, 1, mu - 1e-6)
    slo = SLO(ttft_p99_s=target)
    rounds = ConstantRounds(tau)

    def probe(lam):
        runs = [simulate(SimSpec(requests=10000, rate_per_s=lam, max_batch=1, seed=s, slo=slo,
                                 prompt=Sampler(LengthDist(dist="fixed", value=1)),
                                 output=Sampler(LengthDist(dist="exponential", mean=mean))), rounds).summary
                for s in range(2)]
        p99 = sum(r.ttft_p99_s for r in runs) / len(runs)
        return slo_misses(slo, {"ttft_p99_s": p99}), p99

    f = search(probe, guess=5.0, floor=0.5, ceiling=mu, integer=False, tolerance=0.01)
    assert abs(f.load / lam_star - 1) < 0.03, (f.load, lam_star)


SCENARIO = """
name: cap
model: llama-3.1-70b
deployment: {hardware: cs3, count: 4, precision: {weights: bf16, kv: bf16}}
workload:
  context_tokens: 1280
  prompt_tokens: 1024
  output_tokens: 256
  arrival: ARRIVAL
  requests: 1500
slo: {ttft_p99_s: 0.5, decode_tok_s_per_user_p50: 100}
capacity: {search: true, tolerance: 0.05}
"""


def run_point(loaded, pt):
    result, res = run_result(loaded, pt)
    return result_row(result), res


def _point(tmp_path, arrival):
    p = tmp_path / "s.yaml"
    p.write_text(SCENARIO.replace("ARRIVAL", arrival))
    loaded = load(p)
    return loaded, expand(loaded)[0]


def test_closed_loop_capacity_sizes_replicas_for_the_target(tmp_path):
    loaded, pt = _point(tmp_path, "{process: closed, users: 500}")
    row, _ = run_point(loaded, pt)
    per = row["capacity_users_per_replica"]
    assert row["slo_pass"] and row["feasible"] and per >= 1
    if per > row["max_concurrent_sequences"]:  # users beyond what fits wait for a slot, within the TTFT target
        assert row["queue_p99_s"] > 0
    assert row["replicas"] == math.ceil(500 / per) and row["devices"] == 4 * row["replicas"]
    assert row["capacity_users"] == per * row["replicas"] >= 500
    assert row["ttft_p99_s"] <= 0.5 and row["decode_tok_s_per_user_p50"] >= 100  # the probe at capacity
    assert 1 <= row["capacity_probes"] <= 12
    # costs are at the capacity throughput of the whole deployment
    out_h, in_h = row["throughput_out_tok_s"] * 3600, row["throughput_in_tok_s"] * 3600
    assert (out_h * row["cost_usd_per_mtok_out"] + in_h * row["cost_usd_per_mtok_in"]) / 1e6 == \
        pytest.approx(row["usd_per_h"], rel=1e-9)


def test_open_loop_capacity_is_a_rate_and_fixed_replicas_can_fall_short(tmp_path):
    loaded, pt = _point(tmp_path, "{process: poisson, rate_per_s: 2000}")
    row, _ = run_point(loaded, pt)
    assert row["replicas"] == math.ceil(2000 / row["capacity_req_s_per_replica"])
    assert row["capacity_users"] == pytest.approx(row["capacity_req_s"] * row["e2e_p50_s"], rel=0.3)  # Little
    sc = pt.scenario.model_copy(update={"deployment": pt.scenario.deployment.model_copy(update={"replicas": 1})})
    row, _ = run_point(loaded, dataclasses.replace(pt, scenario=sc))
    assert not row["slo_pass"] and "replicas carry" in row["reason"] and row["replicas"] == 1


def test_slo_out_of_reach_says_so(tmp_path):
    loaded, pt = _point(tmp_path, "{process: closed, users: 10}")
    sc = pt.scenario.model_copy(update={"slo": SLO(decode_tok_s_per_user_p50=1e6)})
    row, _ = run_point(loaded, dataclasses.replace(pt, scenario=sc))
    assert row["feasible"] and not row["slo_pass"] and row["capacity_users"] == 0
    assert row["reason"].startswith("SLO missed even at the lowest load (1 users): decode_tok_s_per_user_p50")


def test_capacity_search_needs_a_target_and_no_trace(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(SCENARIO.replace("ARRIVAL", "{process: closed, users: 5}").replace(
        "slo: {ttft_p99_s: 0.5, decode_tok_s_per_user_p50: 100}", "slo: {}"))
    with pytest.raises(ConfigError) as e:
        load(p)
    assert "capacity.search" in str(e.value) and ":12:20:" in str(e.value) and "slo target" in str(e.value)
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,10,10\n")
    p.write_text(SCENARIO.replace("ARRIVAL", "{process: trace, trace: t.csv}"))
    with pytest.raises(ConfigError, match="a trace has neither"):
        load(p)
