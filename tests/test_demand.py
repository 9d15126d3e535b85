"""Demand as work (workload.demand: tokens/s) and the load each replica carried, against hand
arithmetic, Little's law and the interactive response-time law users = X (R + Z)."""
import dataclasses
import math

import pytest

from planner.config.errors import ConfigError
from planner.plan.estimate import estimate
from planner.plan.point import run_point
from planner.plan.scenario import expand, load
from planner.sweeps.tables import row as result_row

from tests.test_capacity import SCENARIO

# the capacity tests' Llama-70B on 4 x CS-3, its arrival line replaced by the workload under test
BASE = SCENARIO.replace("  arrival: ARRIVAL\n", "WORKLOAD\n").replace("capacity: {search: true, tolerance: 0.05}\n", "")


def evaluate(write, extra: str, tail: str = ""):
    p = write("d.yaml", BASE.replace("WORKLOAD", extra) + tail)
    loaded = load(p)
    pt = expand(loaded)[0]
    result, res = run_point(loaded, pt)
    return result_row(result), res, pt


def per_replica_adds_up(row):
    n = row["replicas"]
    for kind in ("req_s", "out_tok_s", "in_tok_s", "cached_in_tok_s"):
        assert row[f"throughput_{kind}_per_replica"] * n == pytest.approx(row[f"throughput_{kind}"], rel=1e-12)


def test_closed_loop_with_think_time_sized_for_output_tokens(write):
    """The search finds the users one replica carries within the SLO; the demand then sets the
    replicas: ceil(demand / output tok/s of a replica at capacity). A replica's users are its
    requests/s x (response time + think time) (the interactive response-time law)."""
    row, res, _ = evaluate(write, "  arrival: {process: closed, think_s: 0.5}\n  demand: {out_tok_s: 200000}",
                           "capacity: {search: true}\n")
    assert row["feasible"] and row["slo_pass"], row["reason"]
    per = row["throughput_out_tok_s_per_replica"]
    assert row["capacity_target"] == 200000 and row["capacity_target_unit"] == "out tok/s"
    assert row["demand_tok_s"] == 200000 and row["demand_unit"] == "out tok/s"
    assert row["replicas"] == math.ceil(200000 / per) and row["throughput_out_tok_s"] >= 200000
    assert row["devices"] == 4 * row["replicas"]
    per_replica_adds_up(row)
    assert row["users_per_replica"] == row["capacity_users_per_replica"]
    assert row["concurrent_users"] == pytest.approx(row["users_per_replica"] * row["replicas"])
    r = res.requests[res.requests.arrival_s >= res.requests.arrival_s.quantile(0.3)]
    law = row["throughput_req_s_per_replica"] * (r.e2e_s.mean() + 0.5)
    assert row["users_per_replica"] == pytest.approx(law, rel=0.05)


def test_open_loop_demand_sets_the_arrival_rate(write):
    """Poisson arrivals at demand / output tokens per request: the replica serves what arrives
    (throughput = the demand within Poisson noise), and holds rate x time in system requests."""
    row, res, pt = evaluate(write, "  demand: {out_tok_s: 6000}")
    assert row["feasible"] and row["stable"] and row["replicas"] == 1
    assert row["throughput_out_tok_s"] == pytest.approx(6000, rel=0.06)
    assert row["throughput_req_s"] == pytest.approx(6000 / 256, rel=0.06)
    per_replica_adds_up(row)
    s = res.summary
    assert row["users_per_replica"] == pytest.approx(s.mean_in_system)
    assert s.mean_in_system == pytest.approx(s.throughput_req_s * s.mean_sojourn_s, rel=0.1)  # Little
    assert "capacity_target" not in row and row["demand_tok_s"] == 6000  # no search here


def test_analytic_sizing_for_a_demand_in_tokens(write):
    """Without the engine: replicas = ceil(demand / a replica's closed-form rate at the largest
    batch that fits), then the smallest batch whose rate carries demand / replicas."""
    row, _, pt = evaluate(write, "  simulate: false\n  demand: {tok_s: 3.0e6}")
    cfg = pt.config
    full = estimate(cfg)
    top = full.aggregate_tok_s + full.input_tok_s + full.cached_input_tok_s
    n = math.ceil(3.0e6 / top)
    assert row["replicas"] == n and n > 1
    b = row["batch_per_replica"]
    rate = [(e.aggregate_tok_s + e.input_tok_s) for e in
            (estimate(dataclasses.replace(cfg, batch=x)) for x in (b - 1, b))]
    assert rate[0] < 3.0e6 / n <= rate[1]
    total = row["throughput_out_tok_s"] + row["throughput_in_tok_s"] + row["throughput_cached_in_tok_s"]
    assert total == pytest.approx(n * rate[1]) and total >= 3.0e6
    assert row["users_per_replica"] == b
    per_replica_adds_up(row)
    # a fixed replica count short of the demand says so
    p = write("d.yaml", BASE.replace("WORKLOAD", "  simulate: false\n  demand: {tok_s: 3.0e6}")
              .replace("count: 4,", "count: 4, replicas: 1,"))
    loaded = load(p)
    r = result_row(run_point(loaded, expand(loaded)[0])[0])
    assert not r["feasible"] and "1 replicas carry" in r["reason"] and "the demand is 3,000,000" in r["reason"]


def test_demand_schema_errors(write):
    cases = (("  concurrent_users: 10\n  demand: {out_tok_s: 1000}", "not both"),
             ("  arrival: {process: poisson, rate_per_s: 5}\n  demand: {out_tok_s: 1000}", "leave arrival.rate_per_s"),
             ("  demand: {out_tok_s: 1000, tok_s: 2000}", "exactly one of out_tok_s or tok_s"),
             ("  demand: {out_tok_s: 0}", "greater than 0"),
             ("  arrival: {process: closed}\n  demand: {out_tok_s: 1000}", "needs capacity.search"),
             ("  arrival: {process: poisson}", "need one of arrival.rate_per_s"))
    for extra, msg in cases:
        p = write("d.yaml", BASE.replace("WORKLOAD", extra))
        with pytest.raises(ConfigError) as e:
            load(p)
        assert msg in str(e.value) and "d.yaml:" in str(e.value), (extra, str(e.value))
